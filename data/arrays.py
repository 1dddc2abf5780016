"""The arrays a run trains on, from either kind of dataset.

A CASME II release (sheet + frames) gives onset and apex faces (data.inputs), turned into
the chosen motion representation (data.motion); a motion-map folder (data.motion_maps)
brings its motion images, and maybe faces and AUs, ready-made. Both end here, in one
`ModelArrays`, so the engine never needs to know which kind it was.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.inputs import build_inputs
from data.motion import FLIP_SIGNS, motion_arrays
from data.motion_maps import MotionMapData
from data.release import Release


@dataclass
class ModelArrays:
    motion: np.ndarray                                  # (N, 3, S, S) float32 motion map
    face: np.ndarray | None                             # (N, 3, S, S) uint8 RGB onset face; None if unknown
    labels: np.ndarray                                  # (N,) int64
    subjects: list[str]                                 # (N,)
    names: list[str]                                    # (N,) sample (file) names
    aus: list[frozenset[tuple[int, str]]] | None        # (N,) AU sets; None without AU labels
    flip_signs: tuple[float, float, float]              # per-channel sign of a left-right mirrored map
    notices: list[str]                                  # warnings and notes worth showing once


def release_arrays(release: Release, *, motion: str, img_size: int, cache_dir: Path | None, workers: int,
                   strict: bool, progress: bool) -> ModelArrays:
    inputs = build_inputs(release, img_size=img_size, cache_dir=cache_dir, workers=workers, strict=strict,
                          progress=progress)
    maps, notes = motion_arrays(inputs, motion, cache_dir=cache_dir, progress=progress)
    return ModelArrays(motion=maps, face=inputs.onset, labels=inputs.labels, subjects=list(inputs.subjects),
                       names=[s.filename for s in inputs.samples], aus=[s.aus for s in inputs.samples],
                       flip_signs=FLIP_SIGNS[motion], notices=[*inputs.warnings, *notes])


def motion_map_arrays(maps: MotionMapData, *, motion: str) -> ModelArrays:
    """`motion` says what the folder's maps hold; it only decides how mirroring treats them."""
    return ModelArrays(motion=maps.motion, face=maps.face, labels=maps.labels, subjects=list(maps.subjects),
                       names=list(maps.names), aus=maps.aus, flip_signs=FLIP_SIGNS[motion],
                       notices=list(maps.warnings))
