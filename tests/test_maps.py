"""Several motion maps per sample: motion_2 ... motion_K columns, --maps, stacking, mirroring, STSTNet."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data import DataError, get_protocol
from data.arrays import fingerprint_settings, source_arrays
from data.motion_maps import load_motion_maps
from data.synthetic import write_motion_map_folder
from augment import mirror
from engine import DatasetTensors
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main
from models import ARCHS, ModelConfig, build_model, count_params
from models.ststnet import STSTNet

FIVE = get_protocol("5class")
SIZE = 16


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("AMGCN_CACHE", str(tmp_path / "cache"))


def _rows(folder: Path) -> list[dict]:
    with (folder / "index.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_rows(folder: Path, rows: list[dict], fields: list[str]) -> None:
    with (folder / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows({f: r.get(f, "") for f in fields} for r in rows)


def add_maps(folder: Path, count: int, size: int = SIZE, seed: int = 0) -> list[np.ndarray]:
    """Give every row maps motion_2 ... motion_<count> as .npy files of known random values;
    returns, per map column from motion_2 on, the (N, 3, size, size) values written."""
    rows = _rows(folder)
    rng = np.random.default_rng(seed)
    written = []
    for k in range(2, count + 1):
        values = rng.normal(size=(len(rows), 3, size, size)).astype(np.float32)
        for i, r in enumerate(rows):
            rel = f"{r['subject']}/{r['sample']}_map{k}.npy"
            np.save(folder / rel, values[i])
            r[f"motion_{k}"] = rel
        written.append(values)
    fields = ["subject", "sample", "label", "motion", *[f"motion_{k}" for k in range(2, count + 1)], "face", "aus"]
    _write_rows(folder, rows, fields)
    return written


@pytest.fixture
def folder(tiny_release, tmp_path):
    return write_motion_map_folder(tiny_release, tmp_path / "maps", FIVE, img_size=SIZE)


def test_maps_are_stacked_in_column_order(folder):
    single = load_motion_maps(folder, FIVE, img_size=SIZE)
    second, third = add_maps(folder, 3)
    data = load_motion_maps(folder, FIVE, img_size=SIZE)
    assert data.motion.shape == (len(single.names), 9, SIZE, SIZE)
    assert data.maps == (1, 2, 3) and data.map_count == 3
    np.testing.assert_array_equal(data.motion[:, 0:3], single.motion)
    np.testing.assert_array_equal(data.motion[:, 3:6], second)       # .npy at the map size: exact values
    np.testing.assert_array_equal(data.motion[:, 6:9], third)
    assert "maps per sample: 3 of 3 (motion, motion_2, motion_3)" in data.describe()


def test_maps_picks_columns_in_the_order_given(folder):
    single = load_motion_maps(folder, FIVE, img_size=SIZE)
    second, third = add_maps(folder, 3)
    picked = load_motion_maps(folder, FIVE, img_size=SIZE, maps=[3, 1])
    assert picked.motion.shape[1] == 6 and picked.maps == (3, 1)
    np.testing.assert_array_equal(picked.motion[:, 0:3], third)
    np.testing.assert_array_equal(picked.motion[:, 3:6], single.motion)
    only_second = load_motion_maps(folder, FIVE, img_size=SIZE, maps=[2])
    np.testing.assert_array_equal(only_second.motion, second)
    # one map: the fingerprint of a one-map folder; other maps: named in it
    assert fingerprint_settings(load_motion_maps(folder, FIVE, img_size=SIZE, maps=[1]), "diff") == \
        {"dataset": "motion maps"}
    assert fingerprint_settings(picked, "diff") == {"dataset": "motion maps", "maps": [3, 1]}
    with pytest.raises(DataError, match=r"--maps 4: .*index.csv has 3 map column\(s\) .*no map 4"):
        load_motion_maps(folder, FIVE, img_size=SIZE, maps=[4])


def test_mirroring_negates_u_in_every_map(folder):
    add_maps(folder, 2)
    arrays = source_arrays(load_motion_maps(folder, FIVE, img_size=SIZE), motion="flow", img_size=SIZE)
    assert arrays.flip_signs == (-1.0, 1.0, 1.0, -1.0, 1.0, 1.0)
    data = DatasetTensors.from_arrays(arrays.motion, None, arrays.labels, np.zeros((len(arrays.labels), 2)),
                                      arrays.subjects, arrays.names, torch.device("cpu"), 4,
                                      flip_signs=arrays.flip_signs)
    x = data.motion[:2]
    mirrored = mirror(x, data.flip_signs)
    for c in range(6):
        sign = -1.0 if c in (0, 3) else 1.0
        torch.testing.assert_close(mirrored[:, c], sign * x[:, c].flip(-1))
    diff = source_arrays(load_motion_maps(folder, FIVE, img_size=SIZE), motion="diff", img_size=SIZE)
    assert diff.flip_signs == (1.0,) * 6


def test_a_column_gap_is_refused(folder):
    add_maps(folder, 3)
    rows = _rows(folder)
    _write_rows(folder, rows, ["subject", "sample", "label", "motion", "motion_3", "face", "aus"])
    with pytest.raises(DataError, match=r"index.csv line 1: column 'motion_3' without 'motion_2'"):
        load_motion_maps(folder, FIVE, img_size=SIZE)


def test_a_blank_map_cell_is_refused_naming_the_row(folder):
    add_maps(folder, 2)
    rows = _rows(folder)
    rows[3]["motion_2"] = "  "
    _write_rows(folder, rows, list(rows[0]))
    with pytest.raises(DataError, match=r"index.csv line 5: blank 'motion_2'"):
        load_motion_maps(folder, FIVE, img_size=SIZE)
    assert load_motion_maps(folder, FIVE, img_size=SIZE, maps=[1]).motion.shape[1] == 3   # not read: no matter


def test_maps_of_different_sizes_are_refused(folder):
    add_maps(folder, 2)
    rows = _rows(folder)
    np.save(folder / rows[1]["motion_2"], np.zeros((3, SIZE + 4, SIZE + 4), np.float32))
    with pytest.raises(DataError, match=rf"line 3 .*'motion_2' map .* is {SIZE + 4}x{SIZE + 4} but 'motion' is "
                                        rf"{SIZE}x{SIZE}"):
        load_motion_maps(folder, FIVE, img_size=SIZE)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("maps", [1, 2, 4])
def test_every_model_reads_stacked_maps(arch, maps):
    cfg = ModelConfig(num_classes=3, img_size=28, arch=arch, maps=maps, width=0.25, vit_depth=1)
    model = build_model(cfg)
    motion = torch.randn(4, 3 * maps, 28, 28, requires_grad=True)
    out = model(motion, torch.randn(4, 3, cfg.grid, cfg.grid))
    assert out["logits"].shape == (4, 3)
    out["logits"].sum().backward()
    # every map reaches the logits
    assert all(motion.grad[:, 3 * k:3 * k + 3].abs().sum() > 0 for k in range(maps))
    with pytest.raises(RuntimeError):
        model(torch.randn(4, 3 * maps + 3, 28, 28), torch.randn(4, 3, cfg.grid, cfg.grid))


def test_ststnet_shapes_and_parameters():
    cfg = ModelConfig(num_classes=3, img_size=28, arch="ststnet")
    net = STSTNet(cfg)
    x = torch.randn(5, 3, 28, 28)
    streams = [s(x) for s in net.streams]
    assert [tuple(s.shape) for s in streams] == [(5, 3, 10, 10), (5, 5, 10, 10), (5, 8, 10, 10)]
    assert net.head.in_features == 400
    # conv (3*9 + 1) * 16 + batch norm 2 * 16 + dense 400 * 3 + 3
    assert count_params(net)["total"] == 28 * 16 + 32 + 1203 == 1683
    four = STSTNet(ModelConfig(num_classes=3, img_size=28, arch="ststnet", maps=4))
    assert count_params(four)["total"] == (12 * 9 + 1) * 16 + 32 + 1203
    assert not cfg.pos_on and not cfg.graph_on


def test_a_run_on_two_maps_trains_predicts_and_records_them(folder, tmp_path, capsys):
    add_maps(folder, 2)
    extra = ["--motion", "flow", "--model", "ststnet"]
    args = loso_args(folder, tmp_path, "run", *extra, "--folds", "sub01,sub02")   # --final-only runs no folds
    args[args.index("--img-size") + 1] = str(SIZE)
    assert main("5class", FIVE_CLASS_DEFAULTS, args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["n"] > 0
    samples = json.loads((tmp_path / "run" / "samples.json").read_text())
    assert samples["settings"]["maps"] == [1, 2]
    # one map of the same folder is another run: --maps 1 trains on 3 channels
    assert main("5class", FIVE_CLASS_DEFAULTS, loso_args(folder, tmp_path, "one", *extra, "--maps", "1",
                                                         "--img-size", str(SIZE), "--final-only")) == 0
    record = torch.load(tmp_path / "one" / "model.pt", weights_only=True)
    assert record["config"]["maps"] == 1 and record["motion_scale"].shape == (3,)
    assert main("5class", FIVE_CLASS_DEFAULTS, loso_args(folder, tmp_path, "two", *extra,
                                                         "--img-size", str(SIZE), "--final-only")) == 0
    record = torch.load(tmp_path / "two" / "model.pt", weights_only=True)
    assert record["config"]["maps"] == 2 and record["motion_scale"].shape == (6,)
    assert record["flip_signs"] == [-1.0, 1.0, 1.0, -1.0, 1.0, 1.0]


def test_maps_flag_errors_are_one_line(folder, tmp_path, capsys):
    add_maps(folder, 2)
    assert main("5class", FIVE_CLASS_DEFAULTS, loso_args(folder, tmp_path, "r", "--maps", "3", "--dry-run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--maps 3" in err[0] and "no map 3" in err[0]
    assert main("5class", FIVE_CLASS_DEFAULTS, loso_args(folder, tmp_path, "r", "--maps", "1,1", "--dry-run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--maps" in err[0] and "distinct map numbers" in err[0]
