"""Shared fixtures: synthetic CASME II-style annotation sheets, frame folders and releases."""
from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import openpyxl
import pytest

from data.synthetic import generate_release

# Column order of the official sheets; None = blank header.
HEADER_2014 = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
               "Action Units", "Estimated Emotion", None]
HEADER_2019 = HEADER_2014[:-1] + ["Objective Classes"]
# generate_release options of the releases several test files share.
LOSO_RELEASE = dict(subjects=4, per_subject=6, size=(40, 48), seed=3, clip_len=(8, 12),
                    emotions=("happiness", "surprise", "disgust"))
TINY_RELEASE = dict(subjects=3, per_subject=5, size=(32, 40), clip_len=(6, 10), seed=2)


def _cells(row: tuple, n: int) -> list:
    subject, filename, onset, apex, offset, aus, emotion = row
    # the blank-header columns stay empty; the last column holds a class number
    return [subject, filename, None, onset, apex, offset, None, aus, emotion, 3][:n]


@pytest.fixture
def write_sheet():
    """write_sheet(path, rows, version='2019' | '2014' | header list) -> path.

    rows: (subject, filename, onset, apex, offset, aus, emotion); a row given as None
    is written entirely blank.
    """
    def write(path: Path, rows: list, version: str | list = "2019", title: str = "Sheet1") -> Path:
        header = version if isinstance(version, list) else {"2014": HEADER_2014, "2019": HEADER_2019}[version]
        book = openpyxl.Workbook()
        ws = book.active
        ws.title = title
        ws.append(header)
        for row in rows:
            ws.append([None] * len(header) if row is None else _cells(row, len(header)))
        for extra in ("Sheet2", "Sheet3"):   # empty sheets, as in the official files
            book.create_sheet(extra)
        path.parent.mkdir(parents=True, exist_ok=True)
        book.save(path)
        return path
    return write


@pytest.fixture
def make_clip():
    """make_clip(frames_root, subject, filename, frames, prefix='reg_img', ext='.jpg')."""
    import cv2

    def make(root: Path, subject: str, filename: str, frames, prefix: str = "reg_img",
             ext: str = ".jpg") -> Path:
        clip = root / subject / filename
        clip.mkdir(parents=True, exist_ok=True)
        for n in frames:
            cv2.imwrite(str(clip / f"{prefix}{n}{ext}"), np.full((8, 8, 3), n % 255, np.uint8))
        return clip
    return make


@pytest.fixture(scope="session")
def synthetic_release(tmp_path_factory):
    """synthetic_release(**generate_release options) -> root, generated once per session for each set of options.

    Every test that asks for the same options gets the same folder: read it only, and damage a
    copy_release(root) instead.
    """
    made: dict[str, Path] = {}

    def release(**options) -> Path:
        key = repr(sorted(options.items()))
        if key not in made:
            made[key] = generate_release(tmp_path_factory.mktemp("release"), **options)
        return made[key]
    return release


@pytest.fixture(scope="session")
def loso_release(synthetic_release) -> Path:
    """4 subjects x 6 clips of three emotions (24 samples, one '/' apex): a LOSO run trains in seconds."""
    return synthetic_release(**LOSO_RELEASE)


@pytest.fixture(scope="session")
def tiny_release(synthetic_release) -> Path:
    """3 subjects x 5 clips at 32x40 px: every five-class emotion, one '/' apex, and a sadness and a
    fear row that the five-class protocol leaves out (13 samples)."""
    return synthetic_release(**TINY_RELEASE)


@pytest.fixture
def copy_release(tmp_path):
    """copy_release(root) -> a fresh copy under tmp_path (file times kept), for a test that changes files."""
    numbers = itertools.count()

    def copy(root: Path) -> Path:
        return Path(shutil.copytree(root, tmp_path / f"release-copy{next(numbers)}"))
    return copy
