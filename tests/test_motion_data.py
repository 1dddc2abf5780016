"""Motion representations (difference, optical flow) and precomputed motion-map folders."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from data import DataError, au_multi_hot, get_protocol, load_release
from data.inputs import InputArrays, build_inputs
from data.motion import (FLIP_SIGNS, MOTIONS, compute_flow, flow_channels, flow_pixels,
                         motion_arrays, tvl1_available)
from data.motion_maps import is_motion_map_folder, load_motion_maps
from data.synthetic import write_motion_map_folder
from utils.io import TEMP_SUFFIX

FIVE, THREE = get_protocol("5class"), get_protocol("3class")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("AMGCN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def inputs(tiny_release):
    return build_inputs(load_release(tiny_release, FIVE), img_size=32, progress=False)


def _shifted_pair(size: int = 48, shift: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random texture and the same texture moved `shift` px to the right (grey)."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.uniform(0, 255, (size + 16, size + 16)).astype(np.float32), (0, 0), 1.5)
    big = (big - big.min()) / (big.max() - big.min()) * 255
    onset = big[8:8 + size, 8:8 + size]
    apex = big[8:8 + size, 8 - shift:8 - shift + size]   # apex(x) = onset(x - shift)
    return onset.astype(np.uint8), apex.astype(np.uint8)


# --------------------------------------------------------------------------- flow

METHODS = ["farneback"] + (["tvl1"] if tvl1_available() else [])


@pytest.mark.parametrize("method", METHODS)
def test_flow_of_a_known_shift(method):
    onset, apex = _shifted_pair()
    maps = flow_channels(compute_flow(onset, apex, method))   # (3, S, S)
    assert maps.shape == (3, 48, 48) and maps.dtype == np.float32
    u, v = flow_pixels(maps)                                  # back to pixels
    centre = (slice(12, -12), slice(12, -12))
    assert u[centre].mean() == pytest.approx(2.0, abs=0.15)
    assert abs(v[centre].mean()) < 0.15
    # a pure translation does not stretch the skin
    assert maps[2][centre].mean() < 0.2


def test_flow_scaling_does_not_depend_on_resolution():
    flow = np.zeros((40, 40, 2), np.float32)
    flow[..., 0] = 2.0                                        # 2 px at 40 px
    half = np.zeros((20, 20, 2), np.float32)
    half[..., 0] = 1.0                                        # the same motion at 20 px
    assert flow_channels(flow)[0].mean() == pytest.approx(flow_channels(half)[0].mean())
    assert flow_channels(flow)[0].mean() == pytest.approx(5.0)   # percent of the side
    assert FLIP_SIGNS["flow"][0] == -1.0 and FLIP_SIGNS["diff"] == (1.0, 1.0, 1.0)


def test_diff_motion_is_the_scaled_difference(inputs):
    maps, notices = motion_arrays(inputs, "diff")
    expected = (inputs.apex.astype(np.float32) - inputs.onset.astype(np.float32)) / 255
    assert maps.dtype == np.float32 and notices == []
    np.testing.assert_array_equal(maps, expected)
    assert MOTIONS == ("diff", "flow")


def test_flow_motion_arrays_and_cache(inputs, cache_in_tmp):
    n = len(inputs.samples)
    first, notices = motion_arrays(inputs, "flow", method="farneback")
    assert first.shape == (n, 3, 32, 32) and first.dtype == np.float32
    assert np.isfinite(first).all() and (first[:, 2] >= 0).all()
    assert any("Farneback" in m and f"0 of {n} from the cache" in m for m in notices)
    files = sorted((cache_in_tmp / "motion").glob("*.npy"))
    assert len(files) == n and np.load(files[0]).dtype == np.float16
    assert not list((cache_in_tmp / "motion").glob(f".*{TEMP_SUFFIX}"))

    second, notices = motion_arrays(inputs, "flow", method="farneback")
    assert any(f"{n} of {n} from the cache" in m for m in notices)
    np.testing.assert_array_equal(first, second)              # hits give the same values

    # another method or size is another entry, never a stale hit
    if tvl1_available():
        _, notices = motion_arrays(inputs, "flow", method="tvl1")
        assert any("TV-L1" in m and f"0 of {n} from the cache" in m for m in notices)
    small = InputArrays(inputs.samples, inputs.onset[:, :, ::2, ::2].copy(),
                        inputs.apex[:, :, ::2, ::2].copy(), inputs.labels, inputs.subjects, [])
    _, notices = motion_arrays(small, "flow", method="farneback")
    assert any(f"0 of {n} from the cache" in m for m in notices)


def test_flow_cache_dir_argument_and_bad_kind(inputs, tmp_path):
    motion_arrays(inputs, "flow", cache_dir=tmp_path / "elsewhere", method="farneback")
    assert len(list((tmp_path / "elsewhere" / "motion").glob("*.npy"))) == len(inputs.samples)
    with pytest.raises(DataError, match="unknown --motion 'hog'.*diff, flow"):
        motion_arrays(inputs, "hog")


# --------------------------------------------------------------------------- motion-map folders

@pytest.fixture
def folder(tiny_release, tmp_path):
    return write_motion_map_folder(tiny_release, tmp_path / "maps", FIVE, img_size=32)


def _rewrite(folder: Path, edit) -> None:
    """Apply `edit(rows)` to index.csv (rows: list of dicts) and write it back."""
    path = folder / "index.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    rows = edit(rows) or rows
    fields = [f for f in fields if f in rows[0]]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_motion_map_folder_round_trip(tiny_release, folder):
    release = load_release(tiny_release, FIVE)
    assert is_motion_map_folder(folder) and not is_motion_map_folder(tiny_release)
    data = load_motion_maps(folder, FIVE, img_size=32)
    n = len(release.samples)
    assert data.motion.shape == (n, 3, 32, 32) and data.motion.dtype == np.float32
    assert data.face.shape == (n, 3, 32, 32) and data.face.dtype == np.uint8
    assert data.labels.dtype == np.int64
    assert data.labels.tolist() == [s.label for s in release.samples]
    assert data.subjects == [s.subject for s in release.samples]
    assert data.names == [s.filename for s in release.samples]
    assert data.aus == [s.aus for s in release.samples]
    np.testing.assert_array_equal(data.au_multi_hot([1, 4, 12]),
                                  au_multi_hot([s.aus for s in release.samples], [1, 4, 12]))
    assert data.subject_list == release.subject_list and data.warnings == []
    # the PNG holds the difference maps to within one grey level
    inputs = build_inputs(release, img_size=32, progress=False)
    expected, _ = motion_arrays(inputs, "diff")
    assert np.abs(data.motion - expected).max() <= 1.01 / 127.5
    # any size is resized; emotions the protocol maps are accepted
    other = load_motion_maps(folder, THREE, img_size=16)
    assert other.motion.shape[1:] == (3, 16, 16)
    assert set(other.excluded) <= {"others"} and len(other.names) + sum(other.excluded.values()) == n


def test_subject_names_and_optional_columns(folder):
    def edit(rows):
        for r in rows:
            r["subject"] = {"sub01": "1", "sub02": "S02"}.get(r["subject"], r["subject"])
            r["face"] = ""
            del r["aus"]
    _rewrite(folder, edit)
    data = load_motion_maps(folder, FIVE, img_size=16)
    assert data.subject_list == ["1", "S02", "sub03"]   # kept as written
    assert data.face is None and data.aus is None
    assert data.au_multi_hot([4, 12]).shape == (len(data.names), 2) and not data.au_multi_hot([4]).any()


def test_missing_columns_are_named(folder):
    _rewrite(folder, lambda rows: [{k: v for k, v in r.items() if k not in ("label", "face")}
                                   for r in rows])
    with pytest.raises(DataError, match=r"index.csv line 1: missing column\(s\) label, face"):
        load_motion_maps(folder, FIVE, img_size=16)


def test_missing_image_skipped_or_strict_error(folder):
    data = load_motion_maps(folder, FIVE, img_size=16)
    gone = folder / data.subjects[0] / f"{data.names[0]}_motion.png"
    gone.unlink()
    loaded = load_motion_maps(folder, FIVE, img_size=16)
    assert len(loaded.names) == len(data.names) - 1
    assert len(loaded.skipped) == 1 and "line 2" in loaded.skipped[0] and str(gone) in loaded.skipped[0]
    with pytest.raises(DataError, match=r"line 2 .*motion image .* not found"):
        load_motion_maps(folder, FIVE, img_size=16, strict=True)


def test_unreadable_and_grey_images(folder):
    data = load_motion_maps(folder, FIVE, img_size=16)
    path = folder / data.subjects[1] / f"{data.names[1]}_motion.png"
    path.write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"line 3 .*cannot be read as an image"):
        load_motion_maps(folder, FIVE, img_size=16, strict=True)
    cv2.imwrite(str(path), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"line 3 .*single \(grey\) channel"):
        load_motion_maps(folder, FIVE, img_size=16)


def test_label_outside_the_protocol(folder):
    def edit(rows):
        rows[2]["label"] = "contempt"
    _rewrite(folder, edit)
    with pytest.raises(DataError, match=r"line 4 .*label 'contempt' is not a class of protocol "
                                        r"3class \(negative, positive, surprise\)"):
        load_motion_maps(folder, THREE, img_size=16)


def test_too_few_subjects(folder):
    _rewrite(folder, lambda rows: [r for r in rows if r["subject"] == "sub01"])
    with pytest.raises(DataError, match="1 subject"):
        load_motion_maps(folder, FIVE, img_size=16)


def test_face_column_partly_empty(folder):
    def edit(rows):
        rows[1]["face"] = ""
    _rewrite(folder, edit)
    with pytest.raises(DataError, match=r"line 3: blank 'face' while line 2 gives one"):
        load_motion_maps(folder, FIVE, img_size=16)


def test_not_a_folder(tmp_path):
    with pytest.raises(DataError, match="no index.csv"):
        load_motion_maps(tmp_path, FIVE, img_size=16)
