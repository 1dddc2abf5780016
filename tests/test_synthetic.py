"""The synthetic release generator: layouts, sheet quirks, determinism, subtle local motion."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

from data import LAYOUTS, ActionUnit, get_protocol, load_release, read_sheet
from data.synthetic import (ClipRenderer, displacement_field, draw_face, generate_release,
                            main, plan_clips, subject_style)
from utils.face_regions import au_boxes

TINY = dict(subjects=4, per_subject=5, size=(32, 40), clip_len=(4, 8))
SHEET_NAMES = {"2019": "CASME2-coding-20190701.xlsx", "2014": "CASME2-coding-20140508.xlsx"}


def _sheet_cells(path: Path) -> list[tuple]:
    book = openpyxl.load_workbook(path)
    assert book.sheetnames[0] == "Sheet1"
    return list(book["Sheet1"].iter_rows(values_only=True))


@pytest.mark.parametrize("version", ["2019", "2014"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_release_round_trips_through_loader(tmp_path, layout, version):
    frames = "key" if layout == "raw" else None   # raw frames are 640x480: keep it short
    root = generate_release(tmp_path / "rel", layout=layout, sheet_version=version, seed=1,
                            frames=frames, **TINY)
    release = load_release(root, get_protocol("5class"))
    assert release.layout == layout
    assert not release.skipped
    rows, _ = read_sheet(release.sheet_path)
    assert len(rows) == 20
    # 2019 rows include one sadness and one fear, which the five-class protocol leaves out
    assert len(release.samples) == (18 if version == "2019" else 20)
    assert len(release.subject_list) == 4
    assert release.sheet_path.name == ("data.xlsx" if layout == "simple" else SHEET_NAMES[version])
    prefix = "reg_img" if layout.startswith("cropped") else "img"
    assert all(s.onset_path.name == f"{prefix}{s.onset}.jpg" for s in release.samples)
    frame = cv2.imread(str(release.samples[0].onset_path))
    assert frame.shape == ((480, 640, 3) if layout == "raw" else (40, 32, 3))


@pytest.mark.parametrize("version", ["2019", "2014"])
def test_sheet_has_the_official_columns_and_quirks(tmp_path, version):
    root = generate_release(tmp_path / "rel", sheet_version=version, subjects=6, per_subject=10,
                            size=(16, 16), clip_len=(3, 4), frames="key")
    cells = _sheet_cells(root / SHEET_NAMES[version])
    header = list(cells[0])
    assert header[:9] == ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame",
                          None, "Action Units", "Estimated Emotion"]
    assert header[9] == ("Objective Classes" if version == "2019" else None)
    data = cells[1:]
    subjects = {type(r[0]) for r in data}
    assert subjects == ({str} if version == "2019" else {int})
    aus = [str(r[7]) for r in data]
    assert any(a.startswith("L") or "+L" in a for a in aus)
    assert any(a.startswith("R") or "+R" in a for a in aus)
    assert any(isinstance(r[7], int) for r in data)          # lone AUs stored as numbers
    assert ("none" in aus) == (version == "2014")
    assert (sum(r[4] == "/" for r in data) == 1) == (version == "2019")
    names = Counter(r[1] for r in data)
    assert names["EP02_01f"] >= 2                            # same file name, two subjects
    assert "EP06_02_01" in names
    # the loader reads every row, '/' apex and all
    rows, warnings = read_sheet(root / SHEET_NAMES[version])
    assert len(rows) == 60
    assert (sum(r.apex is None for r in rows) == 1) == (version == "2019")


def test_existing_sheet_mode_writes_frames_for_every_row(tmp_path):
    src = generate_release(tmp_path / "src", subjects=3, per_subject=5, size=(16, 16),
                           clip_len=(10, 20), frames="key")
    sheet = src / SHEET_NAMES["2019"]
    root = generate_release(tmp_path / "copy", layout="simple", sheet=sheet, size=(24, 28))
    assert (root / "data.xlsx").is_file()
    release = load_release(root, get_protocol("5class"))
    assert not release.skipped
    rows, _ = read_sheet(sheet)
    assert len(release.samples) == sum(r.emotion not in ("fear", "sadness") for r in rows)
    # key frames only: onset, apex, offset (plus a run of candidates for the '/' apex)
    sample = next(s for s in release.samples if s.apex is not None)
    written = sorted(int(p.stem[3:]) for p in sample.frame_dir.glob("img*.jpg"))
    assert set(written) == {sample.onset, sample.apex, sample.offset}
    slash = next(s for s in release.samples if s.apex is None)
    assert len(list(slash.frame_dir.glob("img*.jpg"))) >= 3


def test_same_seed_same_bytes(tmp_path):
    kw = dict(subjects=2, per_subject=3, size=(24, 28), clip_len=(4, 6))
    a = generate_release(tmp_path / "a", seed=7, **kw)
    b = generate_release(tmp_path / "b", seed=7, **kw)
    c = generate_release(tmp_path / "c", seed=8, **kw)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*.jpg"))
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*.jpg"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files_a)
    assert _sheet_cells(a / SHEET_NAMES["2019"]) == _sheet_cells(b / SHEET_NAMES["2019"])
    assert _sheet_cells(a / SHEET_NAMES["2019"]) != _sheet_cells(c / SHEET_NAMES["2019"])


def test_motion_is_subtle_and_confined_to_the_au_boxes():
    size = (96, 112)
    face, _ = draw_face(size, subject_style(0, 1))
    aus = (ActionUnit(6), ActionUnit(12))          # happiness
    dx, dy = displacement_field(size, aus, amplitude=3.0)
    assert np.hypot(dx, dy).max() <= 3.0 + 1e-5
    apex = ClipRenderer(face, dx, dy).face_at(1.0)
    change = np.abs(apex - face).max(axis=-1)      # (H, W)
    inside = np.zeros(change.shape, bool)
    for unit in aus:
        for x0, y0, x1, y1 in au_boxes(unit.au, unit.side):
            inside[round(y0 * 112):round(y1 * 112), round(x0 * 96):round(x1 * 96)] = True
    assert change[~inside].max() == 0               # nothing moves outside the boxes
    assert change[inside].max() > 5                 # something visibly moves inside
    assert change.max() < 128 and change.mean() < 2.0


def test_onset_apex_difference_sits_in_the_class_regions(tmp_path):
    # surprise (AU1+2: brows) against repression (AU14/15/17: mouth and chin)
    root = generate_release(tmp_path / "rel", subjects=2, per_subject=2, size=(96, 112),
                            clip_len=(6, 8), emotions=["surprise", "repression"], seed=3,
                            sheet_version="2014")
    release = load_release(root, get_protocol("5class"))
    for sample in release.samples:
        onset = cv2.imread(str(sample.onset_path)).astype(np.int16)
        apex = cv2.imread(str(sample.apex_path)).astype(np.int16)
        diff = np.abs(apex - onset).max(axis=-1)   # (H, W), includes sensor noise
        assert 0 < diff.max() < 200
        moved = diff > 12                           # well above the sensor noise
        upper, lower = moved[:int(0.36 * 112)].sum(), moved[int(0.60 * 112):].sum()
        if sample.emotion == "surprise":
            assert upper > 3 * lower and upper > 0
        else:
            assert lower > 3 * upper and lower > 0


def test_plan_keeps_the_slash_apex_in_the_five_classes():
    for seed in range(5):
        clips = plan_clips(subjects=6, per_subject=10, version="2019", seed=seed)
        slash = [c for c in clips if c.apex is None]
        assert len(slash) == 1 and slash[0].emotion not in ("fear", "sadness")
        assert slash[0].onset < slash[0].true_apex < slash[0].offset


def test_command_line(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main([str(out), "--layout", "simple", "--subjects", "2", "--per-subject", "2",
                 "--size", "16", "20", "--sheet-version", "2014"]) == 0
    assert (out / "data.xlsx").is_file()
    assert main([str(tmp_path / "bad"), "--sheet", str(tmp_path / "missing.xlsx")]) == 2
    assert "error:" in capsys.readouterr().err
