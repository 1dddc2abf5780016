"""Motion inputs end to end: optical flow from frames, and precomputed motion-map folders."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from data.protocols import get_protocol
from data.synthetic import write_motion_map_folder
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main

FIVE = FIVE_CLASS_DEFAULTS


def run(raf_path: Path, tmp: Path, *extra: str) -> list[str]:
    return loso_args(raf_path, tmp, "run", *extra)


def test_flow_motion_trains_and_names_its_method(loso_release, tmp_path, capsys):
    assert main("5class", FIVE, run(loso_release, tmp_path, "--motion", "flow")) == 0
    err = capsys.readouterr().err
    assert "optical flow by" in err and ("TV-L1" in err or "Farneback" in err)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n"] == 24
    assert list((tmp_path / "cache" / "motion").glob("*.npy"))  # flow maps were cached


def test_motion_map_folder_trains_under_loso(loso_release, tmp_path, capsys):
    maps = write_motion_map_folder(loso_release, tmp_path / "maps", get_protocol("5class"), img_size=32,
                                   cache_dir=tmp_path / "cache")
    assert main("5class", FIVE, run(maps, tmp_path, "--dry-run")) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "dataset: 24 samples, 4 subjects, 5 classes, 4 folds"
    assert main("5class", FIVE, run(maps, tmp_path)) == 0
    with open(tmp_path / "run" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 24 and {r["subject"] for r in rows} == {"sub01", "sub02", "sub03", "sub04"}


def test_motion_maps_without_faces_or_aus_switch_those_parts_off(loso_release, tmp_path, capsys):
    maps = write_motion_map_folder(loso_release, tmp_path / "maps", get_protocol("5class"), img_size=32,
                                   cache_dir=tmp_path / "cache")
    index = maps / "index.csv"
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    with open(index, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["subject", "sample", "label", "motion", "face"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**{k: r[k] for k in ("subject", "sample", "label", "motion")}, "face": ""})
    assert main("5class", FIVE, run(maps, tmp_path)) == 0
    err = capsys.readouterr().err
    assert "no faces; the position branch is switched off" in err
    assert "no AU labels" in err and "AU loss is off" in err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model_config"]["use_pos"] is False and summary["model_config"]["au_loss_weight"] == 0.0


def test_bad_motion_map_folder_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "maps"
    folder.mkdir()
    (folder / "index.csv").write_text("subject,sample,motion\nsub01,a,a.png\n")
    assert main("5class", FIVE, run(folder, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "index.csv" in err and "label" in err
