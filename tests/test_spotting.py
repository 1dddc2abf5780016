"""Apex spotting under head drift: the rule, the synthetic drift and noise, the cache and export
versions, and what a run records of its spotted apexes."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import data.export
import data.inputs
from benchmarks.spotting import clip_faces, previous_spot_apex
from data.apex import APEX_MODES, errors_by_length, length_group, spot_apex, spotting_record, without_apexes
from data.errors import DataError
from data.export import export_release
from data.inputs import build_inputs, cache_key, crop_method
from data.protocols import get_protocol
from data.release import load_release
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main

FIVE = get_protocol("5class")
# faces large enough for 1-3 px of motion to be micro-expression sized; clips of a real length
CLIPS = dict(subjects=2, per_subject=4, size=(96, 112), seed=4, clip_len=(30, 50))


def annotated_clips(root: Path) -> list:
    return [s for s in load_release(root, FIVE).samples if s.apex is not None]


def test_drift_growing_to_the_offset_does_not_outscore_the_micro_expression(synthetic_release):
    root = synthetic_release(drift=1.0, **CLIPS)
    current, previous = [], []
    for sample in annotated_clips(root):
        numbers, faces = clip_faces(sample)
        current.append(spot_apex(numbers, faces) - sample.apex)
        previous.append(previous_spot_apex(numbers, faces) - sample.offset)
    assert max(map(abs, current)) <= 2, current
    # the clips do fool a rule that measures from the onset only: it lands at the offset
    assert sum(abs(e) <= 3 for e in previous) >= len(previous) - 1, previous


def test_current_rule_equals_the_previous_one_on_drift_free_clips(synthetic_release):
    root = synthetic_release(**CLIPS)
    for sample in annotated_clips(root):
        numbers, faces = clip_faces(sample)
        now, before = spot_apex(numbers, faces), previous_spot_apex(numbers, faces)
        assert abs(now - before) <= 1 and abs(now - sample.apex) <= 2, (sample.key, now, before, sample.apex)


def test_a_clip_of_two_or_three_frames_is_spotted():
    rng = np.random.default_rng(0)
    onset = rng.integers(0, 255, (64, 64)).astype(np.uint8)
    moved = onset.copy()
    moved[10:20, 10:20] = 255 - moved[10:20, 10:20]
    assert spot_apex([5, 9], np.stack([onset, moved])) == 9
    assert spot_apex([5, 9, 14], np.stack([onset, moved, onset])) == 9   # key frames: onset, apex, offset
    with pytest.raises(ValueError):
        spot_apex([5], onset[None])


def _shift(a: Path, b: Path) -> float:
    first, second = (cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float64) for p in (a, b))
    (dx, dy), _ = cv2.phaseCorrelate(first, second)
    return float(np.hypot(dx, dy))


@pytest.mark.parametrize("drift", [0.0, 1.0])
def test_synthetic_drift_moves_the_whole_face_by_the_offset(tmp_path, drift):
    from data.synthetic import generate_release
    root = generate_release(tmp_path / "rel", subjects=2, per_subject=1, size=(96, 112), noise=0.0, drift=drift,
                            emotions=("happiness", "surprise"))
    sample = load_release(root, FIVE).samples[0]
    offset_path = sample.frame_dir / f"reg_img{sample.offset}.jpg"
    assert _shift(sample.onset_path, offset_path) == pytest.approx(drift, abs=0.15)


def test_synthetic_noise_is_the_sigma_asked_for(tmp_path):
    from data.synthetic import generate_release
    spread = {}
    for sigma in (0.0, 8.0):
        root = generate_release(tmp_path / f"n{sigma}", subjects=2, per_subject=1, size=(64, 80), noise=sigma,
                                emotions=("happiness", "surprise"), seed=2)
        sample = load_release(root, FIVE).samples[0]
        # the frame before the onset-to-apex motion starts differs from the onset by noise alone
        a, b = (cv2.imread(str(sample.frame_dir / f"reg_img{n}.jpg")).astype(np.float64)
                for n in (sample.onset, sample.onset + 1))
        spread[sigma] = float(np.std(a - b) / np.sqrt(2))
    assert spread[0.0] < 1.5 and 6.0 < spread[8.0] < 9.0, spread


def test_cache_entries_of_the_previous_rule_are_never_served(tiny_release, tmp_path, monkeypatch):
    release = without_apexes(load_release(tiny_release, FIVE))
    sample = release.samples[0]
    key_now = cache_key(sample, 32, crop_method(release.layout))
    monkeypatch.setattr(data.inputs, "SPOT_VERSION", data.inputs.SPOT_VERSION - 1)
    assert cache_key(sample, 32, crop_method(release.layout)) != key_now
    old = build_inputs(release, img_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert old.cache_misses == len(release.samples)
    monkeypatch.undo()
    again = build_inputs(release, img_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert again.cache_hits == 0 and again.cache_misses == len(release.samples)
    assert set(again.spotted) == {s.key for s in release.samples}
    third = build_inputs(release, img_size=32, cache_dir=tmp_path / "cache", progress=False)
    assert third.cache_hits == len(release.samples) and third.spotted == again.spotted   # read back from the notes


def test_an_export_made_with_the_previous_rule_is_not_continued(tiny_release, tmp_path, monkeypatch):
    release = load_release(tiny_release, FIVE)
    monkeypatch.setattr(data.export, "SPOT_VERSION", data.export.SPOT_VERSION - 1)
    export_release(release, tmp_path / "maps", size=32, apex="auto", cache_dir=tmp_path / "cache", progress=False)
    monkeypatch.undo()
    with pytest.raises(DataError, match="different settings.*'spot': 1"):
        export_release(release, tmp_path / "maps", size=32, apex="auto", cache_dir=tmp_path / "cache",
                       progress=False)


def test_auto_run_records_how_many_apexes_were_spotted_and_how_far(loso_release, tmp_path):
    assert main("5class", FIVE_CLASS_DEFAULTS, loso_args(loso_release, tmp_path, "auto", "--apex", "auto",
                                                         "--folds", "1")) == 0
    record = json.loads((tmp_path / "auto" / "summary.json").read_text())["apex"]
    samples = load_release(loso_release, get_protocol("5class")).samples
    assert record["mode"] == "auto" and record["spotted"] == len(samples)
    assert record["compared"] == sum(s.apex is not None for s in samples) == len(samples) - 1
    assert 0 <= record["mean_distance"] <= 2 and record["within5"] >= 0.9
    fingerprint = json.loads((tmp_path / "auto" / "samples.json").read_text())["settings"]
    assert fingerprint["apex"] == "auto" and "spot_version" in fingerprint


def test_annotated_mode_records_only_the_missing_apexes(loso_release):
    release = load_release(loso_release, FIVE)
    slash = [s.key for s in release.samples if s.apex is None]
    record = spotting_record(release, {key: 7 for key in slash})
    assert len(slash) == 1
    assert record == {"mode": "annotated", "spotted": 1, "compared": 0,
                      "mean_distance": None, "within5": None}
    assert APEX_MODES == ("annotated", "auto")


def test_auto_apex_on_a_motion_map_folder_is_a_flag_error(tmp_path, capsys):
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "index.csv").write_text("subject,sample,label,motion\n")
    code = main("5class", FIVE_CLASS_DEFAULTS, loso_args(tmp_path / "maps", tmp_path, "run", "--apex", "auto"))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --apex auto:") and len(err.strip().splitlines()) == 1


def test_errors_are_grouped_by_clip_length():
    assert [length_group(n) for n in (8, 39, 40, 79, 80, 119, 120, 400)] == \
        ["< 40", "< 40", "40-79", "40-79", "80-119", "80-119", ">= 120", ">= 120"]
    groups = errors_by_length([130, 30, 50, 35], [20, 0, -3, 6])
    assert list(groups) == ["< 40", "40-79", ">= 120"]
    assert groups["< 40"]["n"] == 2 and groups["< 40"]["mean"] == 3.0 and groups["< 40"]["within5"] == 0.5
    assert groups[">= 120"]["mean"] == 20.0
