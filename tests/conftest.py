"""Shared fixtures: synthetic CASME II-style annotation sheets and frame folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pytest

# Column order of the official sheets; None = blank header.
HEADER_2014 = ["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
               "Action Units", "Estimated Emotion", None]
HEADER_2019 = HEADER_2014[:-1] + ["Objective Classes"]


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
