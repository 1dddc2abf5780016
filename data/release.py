"""A CASME II release on disk: sheet + protocol + frame layout -> labelled samples."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from data.action_units import ActionUnit
from data.errors import DataError
from data.layout import check_raf_path, frame_path, resolve_layout
from data.protocols import Protocol, apply_protocol, check_enough
from data.sheet import SheetRow, find_sheet, read_sheet
from data.source import DatasetSource
from utils.paths import dataset_path


@dataclass(frozen=True)
class Sample:
    subject: str
    filename: str
    label: int
    emotion: str
    aus: frozenset[ActionUnit]
    onset: int
    apex: int | None
    offset: int
    row: int
    onset_path: Path
    apex_path: Path | None      # None without an annotated apex: it is spotted (data.apex)
    frame_dir: Path             # clip folder (where a missing apex is spotted)

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.filename)


@dataclass
class Release(DatasetSource):
    root: Path                  # --raf_path as given
    sheet_path: Path
    layout: str
    protocol: Protocol
    samples: list[Sample]       # sheet order, after protocol filtering and skips
    warnings: list[str]         # everything worth showing (includes the skip messages)
    excluded: dict[str, int]    # emotion -> rows left out by the protocol
    skipped: list[str]          # samples skipped (missing frames), with reason
    frames_root: Path | None = None   # folder holding subNN/
    # --apex auto: the sheet's apexes, dropped so that every apex is spotted (data.apex.without_apexes),
    # kept only to measure the spotted ones; None: the sheet's apexes are used
    dropped_apexes: dict[tuple[str, str], int] | None = None

    uses_cache = True   # its frames are preprocessed into the cache

    @property
    def subjects(self) -> list[str]:
        return [s.subject for s in self.samples]

    @property
    def names(self) -> list[str]:
        return [s.filename for s in self.samples]

    @property
    def datasets(self) -> list[str]:
        return [""] * len(self.samples)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)   # (N,)

    @property
    def aus(self) -> list[frozenset[ActionUnit]]:
        return [s.aus for s in self.samples]

    def describe(self) -> list[str]:
        return [f"sheet: {self.sheet_path}", f"layout: {self.layout}"]


def load_release(raf_path: Path, protocol: Protocol, *, sheet: Path | None = None,
                 layout: str | None = None, strict: bool = False) -> Release:
    """Read the sheet, apply `protocol` and find each sample's onset and apex frames.

    A sample whose onset or apex frame file is missing is skipped with a warning naming the
    path; with strict=True it is a DataError instead.
    """
    raf_path = check_raf_path(Path(raf_path))
    sheet_path = find_sheet(raf_path, sheet)
    rows, warnings = read_sheet(sheet_path)
    selection = apply_protocol(rows, protocol, sheet_path.name)
    warnings = warnings + selection.warnings
    layout_name, frames_root = resolve_layout(raf_path, layout)

    samples: list[Sample] = []
    skipped: list[str] = []
    for row, label in selection.rows:
        clip = clip_folder(frames_root, row, sheet_path)
        onset_path = frame_path(frames_root, row.subject, row.filename, row.onset)
        apex_path = (None if row.apex is None
                     else frame_path(frames_root, row.subject, row.filename, row.apex))
        problem = None
        if not clip.is_dir():
            problem = f"clip folder {clip} not found"
        elif onset_path is None:
            problem = f"onset frame {clip / f'reg_img{row.onset}.jpg'} (or img{row.onset}.jpg) not found"
        elif row.apex is not None and apex_path is None:
            problem = f"apex frame {clip / f'reg_img{row.apex}.jpg'} (or img{row.apex}.jpg) not found"
        if problem:
            message = f"{row.subject} {row.filename} (sheet row {row.row}): {problem}"
            if strict:
                raise DataError(message)
            skipped.append(message + "; skipped")
            continue
        assert onset_path is not None
        samples.append(Sample(row.subject, row.filename, label, row.emotion, row.aus,
                              row.onset, row.apex, row.offset, row.row,
                              onset_path, apex_path, clip))
    warnings += skipped
    if skipped:
        check_enough([s.label for s in samples], [s.subject for s in samples], protocol,
                     f"after skipping {len(skipped)} sample(s) with missing frames under {frames_root}")
    return Release(raf_path, sheet_path, layout_name, protocol, samples, warnings,
                   selection.excluded, skipped, frames_root)


def clip_folder(frames_root: Path, row: SheetRow, sheet_path: Path) -> Path:
    """The frame folder of a sheet row, which its Filename cell must not lead out of (utils.paths.dataset_path)."""
    try:
        return dataset_path(frames_root / row.subject, row.filename)   # the subject is always 'subNN'
    except ValueError as exc:
        raise DataError(f"{sheet_path.name} row {row.row}, column 'Filename': {exc}") from None


def au_multi_hot(au_sets: Sequence[frozenset[ActionUnit]], aus: Sequence[int]) -> np.ndarray:
    """(N, K) float32: 1 where sample n shows AU aus[k], whatever its side and intensity (L/R merged)."""
    index = {au: k for k, au in enumerate(aus)}
    out = np.zeros((len(au_sets), len(aus)), dtype=np.float32)
    for n, sample_aus in enumerate(au_sets):
        for unit in sample_aus:
            if unit.au in index:
                out[n, index[unit.au]] = 1.0
    return out


def aus_outside(au_sets: Sequence[frozenset[ActionUnit]], aus: Sequence[int]) -> dict[int, int]:
    """AU number -> how many samples show it, for the AUs not in `aus` (no graph node, so no label).

    Most frequent first (ties by AU number). Such AUs are counted, never an error.
    """
    nodes = set(aus)
    counts = Counter(au for sample_aus in au_sets for au in {unit.au for unit in sample_aus} - nodes)
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
