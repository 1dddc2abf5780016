"""The speed benchmark trains on what a run trains on, and its report adds up (tiny data; timings are not checked)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmarks import bench
from data.arrays import source_arrays
from data.motion_maps import load_motion_maps
from data.protocols import get_protocol
from data.release import load_release
from data.synthetic import generate_release, write_motion_map_folder
from engine import IMAGENET_MEAN, IMAGENET_STD
from models import ModelConfig


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A 3-subject release and the 3-class 28x28 flow-map folder made from it."""
    root = tmp_path_factory.mktemp("bench")
    release = generate_release(root / "release", subjects=3, per_subject=4, size=(40, 48), frames="key")
    maps = write_motion_map_folder(release, root / "maps", get_protocol("3class"), img_size=28, kind="flow",
                                   cache_dir=root / "maps-cache")
    return {"release": release, "maps": maps, "cache": root / "cache"}


def pooled_face(face: np.ndarray, grid: int) -> torch.Tensor:
    """(N, 3, g, g): the uint8 onset faces pooled to the position grid and ImageNet-normalised."""
    pooled = F.adaptive_avg_pool2d(torch.from_numpy(face).float() / 255.0, grid)
    return (pooled - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_release_case_trains_on_the_motion_maps_and_onset_faces(tiny) -> None:
    args = bench.run_args(tiny["release"], "5class", ["--device", "cpu", "--cache-dir", str(tiny["cache"]),
                                                      "--img-size", "32"])
    run = bench.run_inputs(args, bench.run_arrays(args))
    expected = source_arrays(load_release(tiny["release"], get_protocol("5class")), motion="diff", img_size=32,
                             cache_dir=tiny["cache"], workers=0, strict=False, progress=False)
    assert expected.motion.min() < 0  # a difference image, not a frame
    assert torch.equal(run.data.motion, torch.from_numpy(expected.motion))
    assert torch.allclose(run.data.face, pooled_face(expected.face, run.cfg.grid), atol=1e-5)
    assert run.data.face.shape[-1] == run.cfg.grid < 32
    assert run.data.labels.tolist() == expected.labels.tolist() and run.data.subjects == expected.subjects
    assert run.cfg.num_classes == 5 and run.settings.batch_size == 32  # CASME2_5.py's defaults


def test_flow_case_is_the_real_flow_setting_on_the_folder(tiny) -> None:
    args = bench.run_args(tiny["maps"], "3class", ["--device", "cpu", "--cache-dir", str(tiny["cache"]),
                                                   *bench.FLOW_FLAGS])
    run = bench.run_inputs(args, bench.run_arrays(args))
    assert run.cfg == ModelConfig(img_size=28, width=0.25, vit_depth=1, num_classes=3)
    assert run.settings.batch_size == 32
    expected = source_arrays(load_motion_maps(tiny["maps"], get_protocol("3class"), img_size=28), motion="flow",
                             img_size=28)
    assert torch.equal(run.data.motion, torch.from_numpy(expected.motion))
    assert torch.allclose(run.data.face, pooled_face(expected.face, run.cfg.grid), atol=1e-5)
    assert run.data.flip_signs.flatten().tolist() == [-1.0, 1.0, 1.0]  # mirroring a flow map negates u
    assert run.data.au_known.all() and run.data.au.sum() > 0  # the folder's aus column reaches the AU loss


def test_tiny_run_reports_every_case(tiny, tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--threads", "1", "--img-sizes", "16", "--batch-size", "4",
                       "--repeats", "1", "--flow-epochs", "2", "--epoch-size", "16", "--flop-sizes", "16,28",
                       "--release", str(tiny["release"]), "--motion-maps", str(tiny["maps"]),
                       "--cache-dir", str(tiny["cache"]), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert f"cpu: {report['env']['cpu']}" in printed and report["env"]["threads"] == 1
    assert {(r["arch"], r["img_size"], r["batch"]) for r in report["train"]} == {("amgcn", 16, 4), ("mmnet", 16, 4)}
    assert {e["arch"] for e in report["eval"]} == {"amgcn", "mmnet"}

    release = load_release(tiny["release"], get_protocol("5class"))
    first = sorted(release.subjects)[0]
    epoch = report["epoch"]
    assert epoch["samples"] == len(release.samples)
    assert epoch["train_samples"] == sum(s.subject != first for s in release.samples)
    assert 0 < epoch["gather_share"] == pytest.approx(epoch["gather_s"] / epoch["epoch_s"])

    flow = report["flow"]
    maps = load_motion_maps(tiny["maps"], get_protocol("3class"), img_size=28)
    assert (flow["samples"], flow["folds"], flow["classes"], flow["img_size"]) == (len(maps.labels), 3, 3, 28)
    assert len(flow["epoch_times"]) == 3  # one warm-up epoch and the two timed ones
    assert flow["epoch_s"] == pytest.approx(statistics.median(flow["epoch_times"][1:]))
    assert flow["loso_s"] == pytest.approx(3 * 100 * flow["epoch_s"])  # folds x CASME2_3.py's epochs x s/epoch
    assert sum(flow["flop_shares"].values()) == pytest.approx(1.0)
    assert 0 < flow["flop_shares"]["position"] < flow["flop_shares"]["motion"]
    assert f"{flow['folds']} folds x 100 epochs" in printed

    by_size = report["flops_by_size"]
    assert set(by_size) == {"16", "28"}
    assert by_size["28"]["flops"]["total"] > flow["forward_flops"]["total"]  # full width versus width 0.25
    assert all(0 < row["shares"]["position"] < 1 for row in by_size.values())
    assert "nothing to project from" in printed and report["loso_projection"] == {}


def test_bad_flags_are_one_error_line(tmp_path: Path, capsys) -> None:
    assert bench.main(["--release", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: --release {tmp_path / 'missing'}: folder not found\n"
    for bad in (["--repeats", "0"], ["--flop-sizes", "8,28"], ["--img-sizes", "x"]):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(bad)
        assert exit_info.value.code == 2
        assert bad[0] in capsys.readouterr().err


def test_models_sizes_prints_each_branch_share_per_size(capsys) -> None:
    from models.__main__ import main as models_main

    assert models_main(["--sizes", "16,28", "--num-classes", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {int(line.split()[0]): line for line in lines if line.split() and line.split()[0].isdigit()}
    assert set(rows) == {16, 28}
    header = next(line for line in lines if line.lstrip().startswith("size"))
    assert "share:" in header and header.split("share:")[1].split()[0] == "position"
    for line in rows.values():
        shares = [float(v.rstrip("%")) for v in line.split() if v.endswith("%")]
        assert len(shares) == 6 and 0 < shares[0] < 100 and sum(shares) == pytest.approx(100, abs=0.5)
