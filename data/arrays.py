"""The arrays a run trains on, from either kind of dataset.

A CASME II release (sheet + frames) gives onset and apex faces (data.inputs), turned into
the chosen motion representation (data.motion); a motion-map folder (data.motion_maps)
brings its motion images, and maybe faces and AUs, ready-made. Both end here, in one
`ModelArrays`, so the engine never needs to know which kind it was: `source_arrays` is the one
road from any source to its arrays, and `fingerprint_settings` / `provenance` say how they were made.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.action_units import ActionUnit
from data.apex import SPOT_VERSION, spotting_record
from data.errors import DataError
from data.export import maps_export
from data.inputs import PREPROCESS_VERSION, InputArrays, build_inputs
from data.motion import FLIP_SIGNS, MOTION_VERSION, default_flow_method, motion_arrays
from data.motion_maps import MotionMapData
from data.phases import DEFAULT_PHASES, phase_release
from data.release import Release, au_multi_hot
from data.source import DatasetSource


@dataclass
class ModelArrays:
    motion: np.ndarray                                  # (N, 3M, S, S) float32: M motion maps stacked
    face: np.ndarray | None                             # (N, 3, S, S) uint8 RGB onset face; None if unknown
    labels: np.ndarray                                  # (N,) int64
    subjects: list[str]                                 # (N,)
    names: list[str]                                    # (N,) sample (file) names
    aus: list[frozenset[ActionUnit] | None] | None      # (N,) AU sets (None: not coded); None without AU labels
    flip_signs: tuple[float, ...]                       # (3M,) per-channel sign of a left-right mirrored map
    notices: list[str]                                  # warnings and notes worth showing once
    skipped: list[str] = field(default_factory=list)    # why each left-out sample was skipped
    datasets: list[str] = field(default_factory=list)   # (N,) dataset of each sample; empty: a single dataset
    apex_record: dict | None = None                     # spotted apexes (data.apex.spotting_record); None: maps given
    file_kind: str = "frames"                           # what the maps were read from (data.map_reading)

    def au_targets(self, aus: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(N, K) float32 multi-hot over the AU nodes `aus`, and (N,) bool: which samples were AU-coded."""
        coded = self.aus if self.aus is not None else [None] * len(self.labels)
        return (au_multi_hot([a or frozenset() for a in coded], aus),
                np.array([a is not None for a in coded], dtype=bool))


def check_finite(motion: np.ndarray, subjects: list[str], names: list[str], source: str) -> None:
    """DataError naming the first sample whose (3M, S, S) motion maps hold NaN or inf."""
    bad = np.flatnonzero(~np.isfinite(motion.reshape(len(motion), -1)).all(axis=1))
    if len(bad):
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{source}: the motion map of {subjects[bad[0]]} {names[bad[0]]} holds NaN or "
                        f"infinite values{more}")


def source_arrays(source: DatasetSource, *, motion: str, img_size: int, cache_dir: Path | None = None,
                  workers: int = 0, strict: bool = False, progress: bool = False,
                  phases: Sequence[str] = DEFAULT_PHASES) -> ModelArrays:
    """The arrays a run trains on (`motion`: the motion representation the maps hold or are made into;
    `phases`: the clip's phases that each give a map, data.phases; `cache_dir` None: the default cache)."""
    if isinstance(source, Release):
        return _release_arrays(source, motion=motion, img_size=img_size, cache_dir=cache_dir, workers=workers,
                               strict=strict, progress=progress, phases=phases)
    if isinstance(source, MotionMapData):
        # a folder's maps are its columns (--maps), not phases computed from frames
        if tuple(phases) != DEFAULT_PHASES:
            raise DataError(f"{source.root}: --phases {','.join(phases)} computes maps from a release's frames; "
                            f"a motion-map folder brings its maps as columns (choose them with --maps)")
        return _motion_map_arrays(source, motion=motion)
    raise TypeError(f"no arrays for a dataset source of kind {type(source).__name__}")


def fingerprint_settings(source: DatasetSource, motion: str) -> dict:
    """The settings of `source` that decide its arrays, for a run's data fingerprint."""
    if isinstance(source, MotionMapData):
        # the map columns only when they are not the single `motion` column, so one-map runs keep their fingerprint
        return {"dataset": "motion maps", **({"maps": list(source.maps)} if source.maps != (1,) else {})}
    if not isinstance(source, Release):
        raise TypeError(f"no fingerprint for a dataset source of kind {type(source).__name__}")
    settings = {"dataset": "release", "layout": source.layout, "preprocess_version": PREPROCESS_VERSION}
    if source.dropped_apexes is not None:
        settings["apex"] = "auto"
    if any(s.apex_path is None for s in source.samples):   # the spotting rule chose some inputs
        settings["spot_version"] = SPOT_VERSION
    if motion == "flow":
        settings.update(flow_method=default_flow_method(), motion_version=MOTION_VERSION)
    return settings


def provenance(source: DatasetSource) -> dict:
    """What a model file records about how the inputs of `source` were made, beyond the settings."""
    if isinstance(source, MotionMapData):
        return {"export": maps_export(source.root)}   # how the maps were made, when prepare.py wrote them
    return {}


def _release_arrays(release: Release, *, motion: str, img_size: int, cache_dir: Path | None, workers: int,
                    strict: bool, progress: bool, phases: Sequence[str]) -> ModelArrays:
    """One map per phase of each clip (data.phases), stacked in the order of `phases`; a sample
    enters when every phase could be built for it (the others are skipped, with the reason)."""
    inputs, maps, notes, skipped = [], [], [], []
    for phase in phases:
        part, phase_notes = phase_release(release, phase, strict)
        built = build_inputs(part, img_size=img_size, cache_dir=cache_dir, workers=workers, strict=strict,
                             progress=progress)
        phase_maps, motion_notes = motion_arrays(built, motion, cache_dir=cache_dir, progress=progress)
        inputs.append(built)
        maps.append(phase_maps)
        notes += phase_notes + built.warnings + motion_notes
        skipped += [s for s in [*part.skipped, *built.skipped] if s not in skipped]
    keep = _kept_by_every_phase(inputs)
    first = inputs[0]
    names = [first.samples[i].filename for i in keep]
    subjects = [first.subjects[i] for i in keep]
    stacked = np.concatenate([m[rows] for m, rows in zip(maps, _rows_of(inputs, keep))], axis=1)  # (N, 3P, S, S)
    check_finite(stacked, subjects, names, f"{motion} maps of {release.root}")
    return ModelArrays(motion=stacked, face=first.onset[keep], labels=first.labels[keep], subjects=subjects,
                       names=names, aus=[first.samples[i].aus for i in keep],
                       flip_signs=FLIP_SIGNS[motion] * len(phases),
                       notices=list(dict.fromkeys([*release.warnings, *notes])),
                       skipped=[*release.skipped, *skipped],
                       apex_record=spotting_record(release, first.spotted))


def _kept_by_every_phase(inputs: list[InputArrays]) -> list[int]:
    """Rows of the first phase's samples that every phase built."""
    built = [{s.key for s in phase.samples} for phase in inputs]
    return [i for i, s in enumerate(inputs[0].samples) if all(s.key in keys for keys in built)]


def _rows_of(inputs: list[InputArrays], keep: list[int]) -> list[list[int]]:
    """For each phase, the rows holding the first phase's samples `keep`, in that order."""
    wanted = [inputs[0].samples[i].key for i in keep]
    rows = [{s.key: r for r, s in enumerate(phase.samples)} for phase in inputs]   # per phase: key -> row
    return [[by_key[key] for key in wanted] for by_key in rows]


def _motion_map_arrays(maps: MotionMapData, *, motion: str) -> ModelArrays:
    """`motion` says what the folder's maps hold; it only decides how mirroring treats them."""
    check_finite(maps.motion, maps.subjects, maps.names, str(maps.root))
    return ModelArrays(motion=maps.motion, face=maps.face, labels=maps.labels, subjects=list(maps.subjects),
                       names=list(maps.names), aus=maps.aus,
                       flip_signs=FLIP_SIGNS[motion] * (maps.motion.shape[1] // 3),   # u negated in every map
                       notices=list(maps.warnings), skipped=list(maps.skipped),
                       # one dataset: its parts would repeat the whole (as subjects keep their names)
                       datasets=list(maps.datasets) if len(set(maps.datasets)) > 1 else [],
                       file_kind=maps.file_kind)


def center_maps(motion: np.ndarray) -> np.ndarray:
    """(N, 3M, S, S) maps minus each map's per-channel median.

    Maps normalised per image (the STSTNet convention: each channel min-max scaled to 0-255)
    put "no motion" at a different grey level in every image; most of a face does not move,
    so the median of a channel is that image's zero. Subtracting it makes zero mean the same
    thing in every sample. A per-sample operation: it uses nothing of other samples.
    """
    median = np.median(motion.reshape(*motion.shape[:2], -1), axis=2)   # (N, 3M)
    return (motion - median[:, :, None, None]).astype(np.float32)
