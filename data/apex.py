"""Apex spotting: the frame of a clip where the micro-expression peaks, found from its pixels.

Used wherever a sample has no annotated apex: a sheet cell written `/`, a sheet without an
ApexFrame column, or `--apex auto` (training and `prepare.py export`), which ignores the
annotations. `prepare.py spot` measures this same rule against a sheet's apexes.

Method (`spot_apex`), on the clip's faces cropped as for the model:
1. every frame of onset..offset becomes a grey face of SPOT_SIZE x SPOT_SIZE px, whatever
   the run's image size, so the chosen frame does not depend on --img-size;
2. a baseline follows the clip: the line, in time, from the mean of its first SPOT_ENDS
   frames to the mean of its last SPOT_ENDS frames; each frame minus its baseline point is
   its residual;
3. what a global translation and a brightness change explain of each residual (a least-squares
   fit on the baseline face's x and y gradients and a constant) is taken out;
4. the residual's absolute value is averaged over a SPOT_GRID x SPOT_GRID grid of blocks,
   and the frame's score is the mean of its SPOT_TOP share of highest blocks, divided by the
   sensor noise its residual carries (noise_scale: more near the ends than mid-clip);
5. the scores are smoothed over time with a Gaussian of SPOT_SIGMA frames, weighted by frame
   number, so clips with gaps between frames are smoothed correctly;
6. the apex is the frame after the onset with the highest smoothed score.

Why: a micro-expression moves a few small regions by 1-3 px and is gone by the offset,
while a head drifting slowly grows through the clip. Scoring each frame against the onset
frame alone (the previous rule) let a drift of half a pixel outscore the micro-expression,
and the apex landed near the offset. A baseline from the onset to the offset frames removes
any change that grows evenly through the clip; the gradient fit removes what is left of a
drift that does not grow evenly (faster mid-clip). Averaging a few frames at each end keeps
the baseline's own sensor noise low; small blocks and a small top share let a few small
regions win. The rule assumes the micro-expression has relaxed at the offset: a clip whose
apex is its offset frame is spotted too early. Measured on synthetic clips with drift and
sensor noise: README "Apex spotting under head drift" (benchmarks/spotting.py).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from data.release import Release

APEX_MODES = ("annotated", "auto")   # the sheet's apex (spotted where missing), or every apex spotted
SPOT_SIZE = 64          # analysis face side, px
SPOT_GRID = 16          # blocks per side of the analysis face (4 x 4 px blocks)
SPOT_TOP = 0.05         # share of the most changed blocks averaged into a frame's score (13 of 256)
SPOT_SIGMA = 1.5        # temporal smoothing, frames
SPOT_ENDS = 3           # frames averaged at each end of the clip for the baseline
# Bump when the method or its constants change: cached faces of spotted samples stop matching
# and an export folder made with another rule is refused. 2: drift-following baseline.
SPOT_VERSION = 2
METHOD_NOTE = "peak of the smoothed top-block difference from the drift-corrected baseline of frames"


def top_block_mean(diff: np.ndarray, grid: int = SPOT_GRID, top: float = SPOT_TOP) -> np.ndarray:
    """(T, H, W) differences -> (T,) mean |difference| of each frame's `top` share of grid x grid blocks."""
    t, h, w = diff.shape
    bh, bw = h // grid, w // grid
    diff = np.abs(diff[:, :bh * grid, :bw * grid])
    blocks = diff.reshape(t, grid, bh, grid, bw).mean(axis=(2, 4)).reshape(t, -1)     # (T, G*G)
    count = max(1, int(round(top * blocks.shape[1])))
    return np.sort(blocks, axis=1)[:, -count:].mean(axis=1)                          # (T,)


def baseline_weights(numbers: np.ndarray) -> np.ndarray:
    """(T,) frame numbers -> (T - 1, T): row i weighs the frames into frame i + 1's baseline point, the
    onset-offset line through the means of the first and last SPOT_ENDS frames (step 2)."""
    ends = max(1, min(SPOT_ENDS, len(numbers) // 3))        # the two ends never share a frame
    t0, t1 = numbers[:ends].mean(), numbers[-ends:].mean()
    along = (numbers[1:] - t0) / (t1 - t0)                                           # (T-1,)
    weights = np.zeros((len(numbers) - 1, len(numbers)))
    weights[:, :ends] = ((1.0 - along) / ends)[:, None]
    weights[:, -ends:] += (along / ends)[:, None]
    return weights


def noise_scale(weights: np.ndarray) -> np.ndarray:
    """(T - 1, T) baseline weights -> (T - 1,) sensor-noise std of each residual, in units of one frame's.

    A frame near the clip's ends meets a baseline made of fewer frames' noise than one mid-clip;
    dividing by this keeps pure noise from scoring higher near the ends."""
    own = np.eye(weights.shape[1])[1:]                                               # (T-1, T)
    return np.sqrt(((own - weights) ** 2).sum(axis=1))


def baseline_residuals(faces: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(T, H, W) faces, (T - 1, T) baseline weights -> (T - 1, H, W): frames 1.. minus their baseline,
    then minus what a global shift and brightness change explain (steps 2-3 of the module docstring)."""
    faces = faces.astype(np.float32)
    t, h, w = faces.shape
    flat = faces.reshape(t, -1)                                                      # (T, H*W)
    residual = (flat[1:] - weights.astype(np.float32) @ flat).T                       # (H*W, T-1)
    middle = 0.5 * (weights[0] + weights[-1]).astype(np.float32) @ flat               # (H*W,) baseline mid-clip
    gy, gx = np.gradient(middle.reshape(h, w))
    basis = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size, np.float32)], axis=1)   # (H*W, 3)
    coef = np.linalg.lstsq(basis, residual, rcond=None)[0]                             # (3, T-1)
    return (residual - basis @ coef).T.reshape(t - 1, h, w)


def smooth_scores(numbers: Sequence[int], scores: np.ndarray, sigma: float = SPOT_SIGMA) -> np.ndarray:
    """Gaussian smoothing over frame numbers (frames may be missing): (T,) -> (T,)."""
    if sigma <= 0:
        return np.asarray(scores, np.float64)
    t = np.asarray(numbers, np.float64)
    weights = np.exp(-0.5 * ((t[:, None] - t[None, :]) / sigma) ** 2)    # (T, T)
    return weights @ np.asarray(scores, np.float64) / weights.sum(axis=1)


def spot_apex(numbers: Sequence[int], faces: np.ndarray) -> int:
    """Frame number of the apex, see the module docstring.

    numbers: (T,) frame numbers, the onset's first, T >= 2; faces: (T, H, W) grey faces in that
    order. The apex is one of numbers[1:].
    """
    if len(numbers) < 2:
        raise ValueError("spot_apex needs the onset and at least one other frame")
    order = np.argsort(numbers, kind="stable")
    t = np.asarray(numbers, np.float64)[order]                             # (T,)
    weights = baseline_weights(t)                                          # (T-1, T)
    change = top_block_mean(baseline_residuals(np.asarray(faces)[order], weights))   # (T-1,)
    scale = noise_scale(weights)
    # a frame that is its own baseline (the last one of a short clip) has no residual: score 0
    scores = np.divide(change, scale, out=np.zeros_like(change), where=scale > 1e-9)
    smoothed = smooth_scores(t[1:], scores)
    return int(t[1 + int(np.argmax(smoothed))])


def without_apexes(release: Release) -> Release:
    """The release with every annotated apex dropped, so that each one is spotted (--apex auto);
    the dropped ones are kept in `dropped_apexes`, only to measure the spotted ones against."""
    samples = [replace(s, apex=None, apex_path=None) for s in release.samples]
    dropped = {s.key: s.apex for s in release.samples if s.apex is not None}
    return replace(release, samples=samples, dropped_apexes=dropped)


def spotting_record(release: Release, spotted: dict[tuple[str, str], int]) -> dict:
    """What a run records of its spotted apexes (`spotted`: sample key -> frame): their count and,
    where the sheet annotates them (`--apex auto`), their mean distance from the annotations."""
    annotated = release.dropped_apexes or {}
    distances = [abs(frame - annotated[key]) for key, frame in spotted.items() if key in annotated]
    return {"mode": "annotated" if release.dropped_apexes is None else "auto", "spotted": len(spotted),
            "compared": len(distances),
            "mean_distance": float(np.mean(distances)) if distances else None,
            "within5": float(np.mean(np.asarray(distances) <= 5)) if distances else None}


LENGTH_EDGES = (40, 80, 120)   # clip lengths (frames) where the by-length report starts a new group


def length_group(frames: int) -> str:
    """The by-length group of a clip of `frames` frames: '< 40', '40-79', '80-119' or '>= 120'."""
    low = 0
    for high in LENGTH_EDGES:
        if frames < high:
            return f"< {high}" if low == 0 else f"{low}-{high - 1}"
        low = high
    return f">= {low}"


def errors_by_length(lengths: Sequence[int], errors: Sequence[int]) -> dict[str, dict[str, float]]:
    """error_summary of the clips in each length group (clip lengths in frames), shortest first."""
    groups: dict[str, list[int]] = {}
    for length, error in sorted(zip(lengths, errors)):
        groups.setdefault(length_group(length), []).append(error)
    return {name: error_summary(group) for name, group in groups.items()}


def error_summary(errors: Sequence[int]) -> dict[str, float]:
    """Mean and median absolute frame error and the share within 5 frames."""
    err = np.abs(np.asarray(errors, np.float64))
    return {"n": int(err.size), "mean": float(err.mean()), "median": float(np.median(err)),
            "within5": float((err <= 5).mean())}
