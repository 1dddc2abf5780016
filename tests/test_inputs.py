"""Preprocessing into onset/apex arrays: cache hits, misses and invalidation, '/' apex, raw crops."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from data import DataError, get_protocol, load_release
from data.inputs import build_inputs, centre_box, default_cache_dir, face_box
from data.synthetic import generate_release, plan_clips
from data.synthetic.write import _raw_placement
from utils.io import TEMP_SUFFIX


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("AMGCN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def release(tiny_release, copy_release):
    """The shared tiny release, loaded from a fresh copy: several tests touch or rewrite its frames."""
    return load_release(copy_release(tiny_release), get_protocol("5class"))


def test_default_cache_dir_follows_the_environment(cache_in_tmp, monkeypatch):
    assert default_cache_dir() == cache_in_tmp
    monkeypatch.delenv("AMGCN_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "amgcn-mer"


def test_arrays_have_the_promised_shapes(release):
    inputs = build_inputs(release, img_size=24, progress=False)
    n = len(release.samples)
    assert inputs.onset.shape == inputs.apex.shape == (n, 3, 24, 24)
    assert inputs.onset.dtype == inputs.apex.dtype == np.uint8
    assert inputs.labels.dtype == np.int64
    assert inputs.labels.tolist() == [s.label for s in release.samples]
    assert inputs.subjects == [s.subject for s in release.samples]
    assert not (inputs.apex == inputs.onset).all()


def test_second_build_is_all_cache_hits(release, cache_in_tmp):
    first = build_inputs(release, img_size=24, progress=False)
    assert (first.cache_hits, first.cache_misses) == (0, len(release.samples))
    second = build_inputs(release, img_size=24, progress=False)
    assert (second.cache_hits, second.cache_misses) == (len(release.samples), 0)
    np.testing.assert_array_equal(first.onset, second.onset)
    np.testing.assert_array_equal(first.apex, second.apex)
    assert first.warnings == second.warnings          # the '/' apex note is replayed
    assert len(list(cache_in_tmp.glob("*.npy"))) == len(release.samples)
    assert not list(cache_in_tmp.glob(f".*{TEMP_SUFFIX}"))      # no leftovers of atomic writes


def test_other_size_or_changed_frame_is_a_miss(release):
    build_inputs(release, img_size=24, progress=False)
    other = build_inputs(release, img_size=16, progress=False)
    assert (other.cache_hits, other.cache_misses) == (0, len(release.samples))
    # touching one frame file invalidates exactly that sample
    sample = next(s for s in release.samples if s.apex is not None)
    st = sample.apex_path.stat()
    os.utime(sample.apex_path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    again = build_inputs(release, img_size=24, progress=False)
    assert (again.cache_hits, again.cache_misses) == (len(release.samples) - 1, 1)


def test_rewritten_frame_gives_new_arrays(release):
    import cv2

    first = build_inputs(release, img_size=24, progress=False)
    k = next(i for i, s in enumerate(release.samples) if s.apex is not None)
    path = release.samples[k].apex_path
    cv2.imwrite(str(path), np.zeros_like(cv2.imread(str(path))))
    again = build_inputs(release, img_size=24, progress=False)
    assert again.cache_misses == 1
    assert again.apex[k].max() == 0 and first.apex[k].max() > 0


def test_slash_apex_picks_the_peak_frame(tmp_path):
    # brow movements (surprise, disgust) stand well above the sensor noise at this size
    kw = dict(subjects=4, per_subject=2, clip_len=(6, 10), seed=5, emotions=["surprise", "disgust"])
    root = generate_release(tmp_path / "rel", size=(64, 80), **kw)
    release = load_release(root, get_protocol("5class"))
    sample = next(s for s in release.samples if s.apex is None)
    clip = next(c for c in plan_clips(version="2019", **kw)
                if f"sub{c.subject:02d}" == sample.subject and c.filename == sample.filename)
    inputs = build_inputs(release, img_size=32, progress=False)
    note = next(w for w in inputs.warnings if "no annotated apex" in w)
    assert sample.subject in note and sample.filename in note
    assert int(re.search(r"using frame (\d+)", note).group(1)) == clip.true_apex


def test_unreadable_frame_is_skipped_or_fatal_when_strict(release):
    bad = release.samples[1]
    bad.onset_path.write_bytes(b"not a jpeg")
    inputs = build_inputs(release, img_size=24, progress=False)
    assert bad not in inputs.samples
    assert len(inputs.samples) == len(release.samples) - 1
    assert any(str(bad.onset_path) in w for w in inputs.warnings)
    with pytest.raises(DataError, match=re.escape(str(bad.onset_path))):
        build_inputs(release, img_size=24, strict=True, progress=False)


def test_worker_pool_gives_the_same_arrays(release, tmp_path):
    serial = build_inputs(release, img_size=24, cache_dir=tmp_path / "c1", progress=False)
    pooled = build_inputs(release, img_size=24, cache_dir=tmp_path / "c2", workers=2,
                          progress=False)
    assert pooled.cache_misses == len(release.samples)
    np.testing.assert_array_equal(serial.onset, pooled.onset)
    np.testing.assert_array_equal(serial.apex, pooled.apex)


def test_raw_layout_crops_the_detected_face(tmp_path):
    import cv2

    size = (96, 112)
    root = generate_release(tmp_path / "raw", layout="raw", subjects=2, per_subject=2,
                            size=size, clip_len=(4, 6), frames="key", seed=4,
                            sheet_version="2014")
    release = load_release(root, get_protocol("5class"))
    inputs = build_inputs(release, img_size=32, progress=False)
    assert len(inputs.samples) == 4
    assert not [w for w in inputs.warnings if "no face" in w]
    for sample in release.samples:
        frame = cv2.imread(str(sample.onset_path))
        x0, y0, x1, y1 = face_box(frame)
        fx, fy = _raw_placement(4, int(sample.subject[3:]), size)
        # the box is centred on the pasted face and about its size
        assert abs((x0 + x1) / 2 - (fx + size[0] / 2)) < size[0] / 5
        assert abs((y0 + y1) / 2 - (fy + size[1] / 2)) < size[1] / 5
        assert 0.8 * size[0] < x1 - x0 < 1.6 * size[0]
        assert (x0, y0, x1, y1) != centre_box(frame.shape)


def test_raw_frame_without_a_face_falls_back_to_a_centre_crop(tmp_path):
    import cv2

    root = generate_release(tmp_path / "raw", layout="raw", subjects=2, per_subject=1,
                            size=(96, 112), clip_len=(4, 6), frames="key", seed=4,
                            sheet_version="2014", emotions=["happiness", "surprise"])
    release = load_release(root, get_protocol("5class"))
    sample = release.samples[0]
    blank = np.full((480, 640, 3), 128, np.uint8)
    cv2.imwrite(str(sample.onset_path), blank)
    inputs = build_inputs(release, img_size=32, progress=False)
    assert any("no face" in w and sample.filename in w for w in inputs.warnings)
    assert len(inputs.samples) == 2
