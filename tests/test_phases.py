"""Whole-clip motion from frames: one map per phase (--phases onset-apex,apex-offset), in runs and exports."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from data.arrays import source_arrays
from data.export import export_release
from data.inputs import build_inputs
from data.motion import motion_arrays
from data.motion_maps import load_motion_maps
from data.phases import parse_phases, phase_release
from data.protocols import get_protocol
from data.release import load_release
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main

FIVE = get_protocol("5class")
BOTH = ("onset-apex", "apex-offset")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("AMGCN_CACHE", str(tmp_path / "cache"))


def arrays(root: Path, tmp_path: Path, phases=BOTH, motion="diff"):
    return source_arrays(load_release(root, FIVE), motion=motion, img_size=24, cache_dir=tmp_path / "cache",
                         workers=0, strict=False, progress=False, phases=phases)


def test_the_relaxation_runs_from_the_apex_to_the_offset_frame(tiny_release):
    release = load_release(tiny_release, FIVE)
    cut, notes = phase_release(release, "apex-offset")
    assert notes == [] and len(cut.samples) == len(release.samples)
    for before, after in zip(release.samples, cut.samples):
        if before.apex is not None:
            assert (after.onset, after.onset_path) == (before.apex, before.apex_path)
        else:   # a '/' apex: the spotted frame, as onset-apex spots it
            assert before.onset <= after.onset <= before.offset and after.onset_path.is_file()
        assert after.apex == before.offset and after.apex_path.name.endswith(f"{before.offset}.jpg")
        assert after.key == before.key and after.label == before.label
    assert phase_release(release, "onset-apex")[0] is release


def test_phase_maps_are_stacked_in_order_and_each_is_its_own_pair(tiny_release, tmp_path):
    both = arrays(tiny_release, tmp_path)
    single = arrays(tiny_release, tmp_path, phases=("onset-apex",))
    n = len(single.names)
    assert both.motion.shape == (n, 6, 24, 24) and both.names == single.names
    np.testing.assert_array_equal(both.motion[:, :3], single.motion)
    # the second map is the difference of the apex and offset faces
    release = load_release(tiny_release, FIVE)
    relaxation = build_inputs(phase_release(release, "apex-offset")[0], img_size=24,
                              cache_dir=tmp_path / "cache", progress=False)
    expected, _ = motion_arrays(relaxation, "diff")
    np.testing.assert_array_equal(both.motion[:, 3:], expected)
    assert not np.array_equal(both.motion[:, :3], both.motion[:, 3:])
    reverse = arrays(tiny_release, tmp_path, phases=BOTH[::-1])
    np.testing.assert_array_equal(reverse.motion[:, :3], both.motion[:, 3:])
    assert both.flip_signs == (1.0,) * 6
    assert arrays(tiny_release, tmp_path, motion="flow").flip_signs == (-1.0, 1.0, 1.0) * 2


def test_a_missing_offset_frame_skips_the_sample_in_every_phase(tiny_release, copy_release, tmp_path):
    root = copy_release(tiny_release)
    release = load_release(root, FIVE)
    gone = release.samples[2]
    cut = phase_release(release, "apex-offset")[0]
    cut.samples[2].apex_path.unlink()
    both = arrays(root, tmp_path)
    assert gone.filename not in both.names and len(both.names) == len(release.samples) - 1
    assert any(gone.filename in s and "offset frame" in s for s in both.skipped)


def test_parse_phases():
    assert parse_phases("apex-offset,onset-apex") == BOTH[::-1]
    for bad in ("onset-offset", "onset-apex,onset-apex", ""):
        with pytest.raises(ValueError, match="expected distinct phases"):
            parse_phases(bad)


def test_a_run_with_both_phases_and_its_export_read_back_bit_exact(tiny_release, tmp_path, capsys):
    extra = ["--phases", "onset-apex,apex-offset", "--folds", "sub01,sub02", "--model", "linear"]
    assert main("5class", FIVE_CLASS_DEFAULTS, loso_args(tiny_release, tmp_path, "run", *extra)) == 0
    samples = json.loads((tmp_path / "run" / "samples.json").read_text())
    assert samples["settings"]["phases"] == list(BOTH)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["n"] > 0
    release = load_release(tiny_release, FIVE, strict=True)
    export_release(release, tmp_path / "maps", cache_dir=tmp_path / "cache", progress=False, size=32, phases=BOTH)
    header = (tmp_path / "maps" / "index.csv").read_text().splitlines()[0]
    assert header == "subject,sample,label,motion,motion_2,face,aus,dataset"
    got = source_arrays(load_motion_maps(tmp_path / "maps", FIVE, img_size=32), motion="diff", img_size=32)
    want = source_arrays(release, motion="diff", img_size=32, cache_dir=tmp_path / "cache", workers=0,
                         strict=True, progress=False, phases=BOTH)
    assert np.array_equal(got.motion, want.motion) and got.names == want.names


def test_phases_on_a_motion_map_folder_is_one_error_line(tiny_release, tmp_path, capsys):
    release = load_release(tiny_release, FIVE, strict=True)
    export_release(release, tmp_path / "maps", cache_dir=tmp_path / "cache", progress=False, size=32)
    args = loso_args(tmp_path / "maps", tmp_path, "r", "--phases", "onset-apex,apex-offset")
    assert main("5class", FIVE_CLASS_DEFAULTS, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--phases" in err[0] and "--maps" in err[0]
