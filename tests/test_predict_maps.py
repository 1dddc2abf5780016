"""predict.py on models that read several motion maps per sample (motion, motion_2, ...; --maps)."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import predict
from data.synthetic import write_motion_map_folder
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main
from models import ModelConfig, build_model
from tests.test_maps import FIVE, SIZE, _rows, add_maps
from utils.model_file import MODEL_FILE, model_record


@pytest.fixture(scope="module")
def run(tiny_release, tmp_path_factory) -> dict:
    """A four-map folder and a linear model trained on its maps 1, 2 and 4 (--maps 1,2,4)."""
    tmp = tmp_path_factory.mktemp("maps")
    folder = write_motion_map_folder(tiny_release, tmp / "maps", FIVE, img_size=SIZE)
    add_maps(folder, 4)
    args = loso_args(folder, tmp, "run", "--final-only", "--model", "linear", "--maps", "1,2,4", "--epochs", "1")
    args[args.index("--img-size") + 1] = str(SIZE)
    assert main("5class", FIVE_CLASS_DEFAULTS, args) == 0
    return {"tmp": tmp, "folder": folder, "model": tmp / "run" / MODEL_FILE, "row": _rows(folder)[0]}


def predict_rows(capsys, tmp: Path, *argv) -> tuple[int, list[dict], str]:
    table = tmp / "table.csv"
    table.unlink(missing_ok=True)
    code = predict.main([str(a) for a in [*argv, "--csv", table]])
    err = capsys.readouterr().err
    rows = list(csv.DictReader(open(table))) if code == 0 else []
    return code, rows, err


def error_line(capsys, *argv) -> str:
    assert predict.main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    last = err.splitlines()[-1]
    assert out == "" and last.startswith("error: ") and err.count("error") == 1, err   # after the model's line
    return last


def map_files(run: dict, columns: tuple[str, ...]) -> list[Path]:
    return [run["folder"] / run["row"][c] for c in columns]


def test_the_model_records_its_map_columns(run):
    record = torch.load(run["model"], weights_only=True)
    assert record["preprocessing"]["map_columns"] == [1, 2, 4] and record["config"]["maps"] == 3


def test_map_files_and_the_folder_give_the_same_probabilities(run, capsys, tmp_path):
    code, by_folder, err = predict_rows(capsys, tmp_path, "--model", run["model"], "--raf_path", run["folder"])
    assert code == 0, err
    face = run["folder"] / run["row"]["face"]
    code, by_files, err = predict_rows(capsys, tmp_path, "--model", run["model"], "--face", face, "--motion-map",
                                       *map_files(run, ("motion", "motion_2", "motion_4")))
    assert code == 0, err
    want = next(r for r in by_folder if r["sample"] == f"{run['row']['subject']}/{run['row']['sample']}")
    assert {k: v for k, v in by_files[0].items() if k.startswith("p_")} == \
        {k: v for k, v in want.items() if k.startswith("p_")}


def test_a_wrong_count_of_maps_is_one_line(run, capsys):
    err = error_line(capsys, "--model", run["model"], "--motion-map", *map_files(run, ("motion",)))
    assert "error: the model reads 3 maps per sample (motion, motion_2, motion_4); --motion-map gave 1" in err


def test_maps_of_different_sizes_are_one_line(run, capsys, tmp_path):
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((3, SIZE // 2, SIZE // 2), np.float32))
    paths = map_files(run, ("motion", "motion_2"))
    err = error_line(capsys, "--model", run["model"], "--face", run["folder"] / run["row"]["face"],
                     "--motion-map", *paths, small)
    assert "one size" in err and f"small.npy {SIZE // 2}x{SIZE // 2}" in err


def test_frames_are_refused_for_a_model_of_several_maps(run, capsys, tiny_release):
    frame = next(p for p in sorted(Path(tiny_release).rglob("*.jpg")))
    err = error_line(capsys, "--model", run["model"], "--onset", frame, "--apex", frame)
    assert "--onset: frames make one motion map, but the model reads 3 maps per sample" in err
    err = error_line(capsys, "--model", run["model"], "--raf_path", tiny_release)
    assert "--raf_path: frames make one motion map" in err


def test_explain_draws_one_panel_per_map(run, capsys, tmp_path):
    """An AM-GCN on three maps (random weights: the picture's layout is what is tested)."""
    record = torch.load(run["model"], weights_only=True)
    cfg = ModelConfig(num_classes=5, img_size=SIZE, width=0.0625, vit_depth=1, embed_dim=64, maps=3)
    model = build_model(cfg)
    amgcn = tmp_path / "amgcn.pt"
    torch.save(model_record(model.state_dict(), cfg, record["classes"], torch.eye(len(cfg.aus)),
                            torch.ones(9), record["flip_signs"], record["preprocessing"], record["training"]), amgcn)
    face = run["folder"] / run["row"]["face"]
    code, _, err = predict_rows(capsys, tmp_path, "--model", amgcn, "--face", face, "--explain", tmp_path / "why",
                                "--motion-map", *map_files(run, ("motion", "motion_2", "motion_4")))
    assert code == 0, err
    image = cv2.imread(str(next((tmp_path / "why").glob("*.png"))))
    assert image.shape[1] > 5 * image.shape[0]   # seven panels (face, three maps, Grad-CAM, AA, graph); one map: five
