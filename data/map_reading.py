"""How a dataset's motion maps were read, recorded so that maps read later can be checked against it.

A model file keeps this record (utils.model_file, `preprocessing["maps"]`); predict.py reads
new maps the same way (data.motion_maps for files, data.motion for frames) and compares them
with it instead of guessing from the values alone:

    file_kind      'png' (any image file, read as RGB scaled to [-1, 1]), 'npy' (values as stored),
                   'frames' (made from onset and apex frames by data.motion), or 'mixed'
    normalisation  'per-image' when (nearly) every map stretches each channel over the whole
                   [-1, 1] (the STSTNet convention: min-max per image), else 'fixed'
    range          [[low, high]] x 3: each channel's lowest and highest value over the maps, as read
    position       [[low, high]] x 3: where a map's median sits between its own minimum (0) and
                   maximum (1), 2nd to 98th percentile over the maps. Min-max scaling and centring
                   leave it unchanged, so maps of one kind agree on it however they were scaled:
                   optical strain is never negative and most of a face does not move, so a flow
                   map's third channel has its median near its minimum (0.0-0.3); a difference
                   image's third channel (blue) has it near the middle (0.3-0.8)
    centred        whether each map's per-channel median was subtracted (--center-maps)
    count          motion maps per sample (M: the arrays hold 3M channels, 'range' and 'position' a pair each)

Knows nothing of models or files: it describes arrays.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

FILE_KINDS = ("png", "npy", "frames", "mixed")
NORMALISATIONS = ("per-image", "fixed")
FULL_RANGE_SLACK = 1.5 / 255     # an 8-bit channel at 0 and 255 reads as -1 and +1, give or take rounding
PER_IMAGE_SHARE = 0.9            # maps stretched to the full range that make a folder per-image normalised
SIGN_TOLERANCE = 0.02           # a third channel below this is negative (not optical strain)
POSITION_MARGIN = 0.1            # how far beyond the training maps' positions a map may sit
POSITION_PERCENTILES = (2, 98)
RANGE_FACTOR = 4                 # fixed-scale maps reaching this many times the training maps' largest value
KEYS = ("file_kind", "normalisation", "range", "position", "centred", "count")


def file_kind(paths: Sequence[str]) -> str:
    """'npy', 'png' (any image) or 'mixed' for the motion files of a folder."""
    kinds = {"npy" if str(p).lower().endswith(".npy") else "png" for p in paths}
    return kinds.pop() if len(kinds) == 1 else "mixed"


def median_positions(motion: np.ndarray) -> np.ndarray:
    """(N, 3): where each map's per-channel median sits between its minimum (0) and maximum (1); NaN for
    a constant channel. motion: (N, 3, S, S)."""
    flat = motion.reshape(*motion.shape[:2], -1).astype(np.float64)          # (N, 3, S*S)
    low, high, median = flat.min(2), flat.max(2), np.median(flat, 2)
    span = high - low
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(span > 0, (median - low) / span, np.nan)


def full_range_share(motion: np.ndarray) -> float:
    """The share of maps whose every channel runs from -1 to +1 (min-max normalised per image)."""
    flat = motion.reshape(*motion.shape[:2], -1)
    full = (flat.min(2) <= -1 + FULL_RANGE_SLACK) & (flat.max(2) >= 1 - FULL_RANGE_SLACK)   # (N, 3)
    return float(full.all(1).mean()) if len(flat) else 0.0


def normalisation(motion: np.ndarray) -> str:
    return "per-image" if full_range_share(motion) >= PER_IMAGE_SHARE else "fixed"


def describe_maps(motion: np.ndarray, kind_of_file: str, centred: bool) -> dict:
    """The record (see the module docstring) of maps (N, 3M, S, S) as read (M maps stacked), before any
    centring; 'range' and 'position' hold one pair per channel."""
    flat = motion.reshape(*motion.shape[:2], -1)
    positions = median_positions(motion)
    spread = [[round(float(v), 4) for v in np.nanpercentile(positions[:, c], POSITION_PERCENTILES)]
              if np.isfinite(positions[:, c]).any() else [0.0, 1.0] for c in range(positions.shape[1])]
    return {"file_kind": kind_of_file, "normalisation": normalisation(motion),
            "range": [[float(flat[:, c].min()), float(flat[:, c].max())] for c in range(flat.shape[1])],
            "position": spread, "centred": bool(centred), "count": motion.shape[1] // 3}


def record_problem(record: object) -> str | None:
    """Why `record` is not a map-reading record, or None."""
    if not isinstance(record, dict) or any(k not in record for k in KEYS):
        return f"not a record of how the maps were read (needs {', '.join(KEYS)})"
    if record["file_kind"] not in FILE_KINDS or record["normalisation"] not in NORMALISATIONS:
        return f"file kind {record['file_kind']!r} / normalisation {record['normalisation']!r} unknown"
    if not (isinstance(record["count"], int) and record["count"] >= 1 and isinstance(record["centred"], bool)):
        return "'count' or 'centred' is not a map count and a flag"
    for key in ("range", "position"):
        pairs = record[key]
        if not (isinstance(pairs, list) and len(pairs) == 3 * record["count"] and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(v, (int, float)) and np.isfinite(v)
                                                            for v in p) and p[0] <= p[1] for p in pairs)):
            return f"'{key}' is not {3 * record['count']} [low, high] pairs (three per map)"
    return None


def sign_problem(record: dict, motion: np.ndarray, other: str) -> str | None:
    """For fixed-scale maps and training maps: why the third channel's sign shows another kind, or None.
    A training third channel that never went negative is optical strain; one that did is not."""
    trained_low = record["range"][2][0]
    third = motion[:, 2].reshape(len(motion), -1)                          # (N, S*S)
    negative = third.min(1) < -SIGN_TOLERANCE
    if trained_low >= -SIGN_TOLERANCE and negative.mean() > 0.5:
        return (f"the third channel has negative values, which the model's training maps never had "
                f"(optical strain is never negative): these look like {other}")
    if trained_low < -SIGN_TOLERANCE and (~negative & (third.max(1) > SIGN_TOLERANCE)).mean() > 0.5:
        return (f"the third channel is never negative, as optical strain is, where the model's training maps "
                f"went down to {trained_low:.3g}: these look like {other}")
    return None


def kind_problem(record: dict, motion: np.ndarray, kind: str) -> str | None:
    """Why maps (N, 3M, S, S) cannot be of the model's motion `kind` given the training maps' `record`: on a
    fixed scale, the first map's third channel's sign differs from the training maps'; on any scale, most of
    them place that channel's median where the training maps never did."""
    other = "difference images" if kind == "flow" else "flow maps"
    if record["normalisation"] == "fixed" and normalisation(motion) == "fixed":
        problem = sign_problem(record, motion, other)
        if problem:
            return f"{problem}, but the model was trained on {kind} maps"
    low, high = record["position"][2]
    third = median_positions(motion)[:, 2]
    third = third[np.isfinite(third)]
    if not len(third):
        return None   # constant channels: nothing to compare
    outside = (third < low - POSITION_MARGIN) | (third > high + POSITION_MARGIN)
    if outside.mean() <= 0.5:
        return None
    return (f"the third channel's median sits at {np.median(third):.2f} of its range, where the model's "
            f"training maps had it at {low:.2f}..{high:.2f}: these look like {other}, but the model was "
            f"trained on {kind} maps")


def reading_differences(record: dict, motion: np.ndarray, kind_of_file: str) -> list[str]:
    """What differs between maps (N, 3, S, S) as read and the training maps' `record`, in words; empty
    when they were built the same way (the file kind alone is no difference: frames and an export of
    them give the same maps)."""
    differences = []
    now = normalisation(motion)
    if now != record["normalisation"]:
        said = {"per-image": "min-max normalised per image", "fixed": "on a fixed scale"}
        differences.append(f"these maps are {said[now]} ({kind_of_file}), the model's training maps were "
                           f"{said[record['normalisation']]} ({record['file_kind']})")
    elif now == "fixed":
        trained = max(max(abs(v) for v in pair) for pair in record["range"])
        reach = float(np.abs(motion).max()) if motion.size else 0.0
        if reach > RANGE_FACTOR * trained:
            differences.append(f"values reach {reach:.3g}, the model's training maps {trained:.3g}")
    return differences
