"""Motion representations of a sample, computed from its onset and apex faces.

Two kinds (`MOTIONS`), both (3, S, S) float32 per sample:

- 'diff': the difference image (apex - onset) / 255 per RGB channel, in [-1, 1].
- 'flow': dense optical flow from the onset to the apex face (grey), as three channels
  (u, v, optical strain):
    u, v    horizontal / vertical displacement as a percentage of the face side
            (pixels * 100 / S): resolution-independent, so a 2 px shift at 224 px and a 1 px
            shift at 112 px both read 0.89. u > 0: the skin moved right; v > 0: down.
    strain  sqrt(ux^2 + vy^2 + 0.5 * (uy + vx)^2) from np.gradient of the flow in pixels
            (a dimensionless stretch, also resolution-independent), times STRAIN_SCALE.
  Both scalings are fixed constants: no statistic of any sample or subject is used, so
  nothing leaks across LOSO folds. The engine's per-fold standardisation comes on top.
  Mirroring a flow map left-right must also negate u (see `FLIP_SIGNS`).

Flow method: TV-L1 (opencv-contrib's cv2.optflow) where available, Farneback otherwise.
TV-L1 runs with 3 pyramid scales, 3 warps and stopping threshold 0.02 instead of OpenCV's
5 / 5 / 0.01: micro-expression motion is a few pixels, which a 3-level pyramid (coarsest
level 1/4 size) covers, and on noisy JPEG faces the default threshold is seldom reached,
so every iteration runs. On synthetic faces with a known 1-3 px motion this is 3x faster
than the defaults (about 0.3 s instead of 0.9 s per noisy 224 px pair on 2 busy cores)
with the same or lower endpoint error. Farneback is 10-20x faster again, with a similar
error on the moving skin but about twice TV-L1's spurious motion on still skin.

Flow is cached per sample (float16 .npy under <cache>/motion/) named by a hash of the
onset and apex pixels themselves plus the method, its parameters, the scalings and
MOTION_VERSION. Hashing the pixels (rather than the frame files) covers everything that
made them -- frame files, crop method, image size, the '/' apex choice -- so a changed
input is a miss, never a stale hit.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.errors import DataError
from data.inputs import CHECKSUM_BYTES, InputArrays, checksum, default_cache_dir, npy_header, writable_folder
from utils.io import atomic_write

MOTIONS = ("diff", "flow")
FLOW_METHODS = ("tvl1", "farneback")

# Bump when the flow computation or its channels change: old cache entries stop matching.
MOTION_VERSION = 2          # 2: entries end with a CRC-32 of their values
FLOW_PERCENT = 100.0       # u, v are given in percent of the face side
STRAIN_SCALE = 10.0        # strain of 0.1 (10% stretch) -> 1.0
# Per-channel sign to apply when a map is mirrored left-right (horizontal flip).
FLIP_SIGNS: dict[str, tuple[float, float, float]] = {
    "diff": (1.0, 1.0, 1.0),
    "flow": (-1.0, 1.0, 1.0),   # mirroring reverses horizontal motion; strain is unchanged
}

TVL1_PARAMS = {"nscales": 3, "warps": 3, "tau": 0.25, "lambda": 0.15, "theta": 0.3,
               "epsilon": 0.02, "innerIterations": 30, "outerIterations": 10,
               "scaleStep": 0.5, "gamma": 0.0, "medianFiltering": 5}
FARNEBACK_PARAMS = {"pyr_scale": 0.5, "levels": 3, "winsize": 9, "iterations": 3,
                    "poly_n": 5, "poly_sigma": 1.1}
METHOD_LABELS = {"tvl1": "TV-L1 (3 scales, 3 warps, epsilon 0.02)", "farneback": "Farneback"}


def tvl1_available() -> bool:
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def default_flow_method() -> str:
    """'tvl1' when opencv-contrib provides it, else 'farneback'."""
    return "tvl1" if tvl1_available() else "farneback"


def _method_params(method: str) -> dict:
    return TVL1_PARAMS if method == "tvl1" else FARNEBACK_PARAMS


class _FlowSolver:
    """One reusable OpenCV flow object (creating TV-L1 per pair costs needless setup)."""

    def __init__(self, method: str) -> None:
        if method not in FLOW_METHODS:
            raise DataError(f"unknown flow method {method!r}; valid values: {', '.join(FLOW_METHODS)}")
        if method == "tvl1" and not tvl1_available():
            raise DataError("TV-L1 flow needs opencv-contrib (cv2.optflow), which is not installed")
        self.method = method
        self._tvl1 = None
        if method == "tvl1":
            p = TVL1_PARAMS
            self._tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(
                tau=p["tau"], lambda_=p["lambda"], theta=p["theta"], nscales=p["nscales"],
                warps=p["warps"], epsilon=p["epsilon"], innnerIterations=p["innerIterations"],
                outerIterations=p["outerIterations"], scaleStep=p["scaleStep"], gamma=p["gamma"],
                medianFiltering=p["medianFiltering"])

    def __call__(self, onset_grey: np.ndarray, apex_grey: np.ndarray) -> np.ndarray:
        """(H, W) uint8 each -> (H, W, 2) float32 flow in pixels, onset(p) ~ apex(p + flow(p))."""
        if self._tvl1 is not None:
            return self._tvl1.calc(onset_grey, apex_grey, None)
        p = FARNEBACK_PARAMS
        return cv2.calcOpticalFlowFarneback(onset_grey, apex_grey, None, p["pyr_scale"], p["levels"],
                                            p["winsize"], p["iterations"], p["poly_n"],
                                            p["poly_sigma"], 0)


def compute_flow(onset_grey: np.ndarray, apex_grey: np.ndarray, method: str | None = None) -> np.ndarray:
    """Dense flow (H, W, 2) float32 in pixels from onset to apex (grey uint8 images)."""
    return _FlowSolver(method or default_flow_method())(onset_grey, apex_grey)


def flow_channels(flow: np.ndarray) -> np.ndarray:
    """(H, W, 2) flow in pixels -> (3, H, W) float32 (u, v, strain), scaled as documented."""
    u, v = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    size = float(flow.shape[1])
    uy, ux = np.gradient(u)            # d/d(row), d/d(col)
    vy, vx = np.gradient(v)
    strain = np.sqrt(ux ** 2 + vy ** 2 + 0.5 * (uy + vx) ** 2)
    return np.stack([u * (FLOW_PERCENT / size), v * (FLOW_PERCENT / size),
                     strain * STRAIN_SCALE]).astype(np.float32)          # (3, H, W)


def flow_pixels(maps: np.ndarray) -> np.ndarray:
    """Undo the u, v scaling: (..., 3, H, W) flow maps -> (..., 2, H, W) displacement in pixels."""
    return maps[..., :2, :, :] * (maps.shape[-1] / FLOW_PERCENT)


def _grey(face: np.ndarray) -> np.ndarray:
    """(3, S, S) uint8 RGB -> (S, S) uint8 grey."""
    return cv2.cvtColor(np.ascontiguousarray(face.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)


def diff_maps(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """(N, 3, S, S) uint8 each -> (N, 3, S, S) float32 (apex - onset) / 255 in [-1, 1]."""
    return (apex.astype(np.float32) - onset.astype(np.float32)) / 255.0


def flow_key(onset: np.ndarray, apex: np.ndarray, method: str) -> str:
    """Cache name of one sample's flow maps: its pixels + everything the computation uses."""
    h = hashlib.sha256()
    h.update(json.dumps({
        "version": MOTION_VERSION, "method": method, "params": _method_params(method),
        "shape": list(onset.shape), "flow_percent": FLOW_PERCENT, "strain_scale": STRAIN_SCALE,
    }, sort_keys=True).encode())
    h.update(np.ascontiguousarray(onset, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(apex, dtype=np.uint8).tobytes())
    return h.hexdigest()[:40]


def _load(path: Path, shape: tuple[int, ...]) -> tuple[str, np.ndarray | None]:
    """('hit', float16 maps), ('miss', None) without an entry, ('damaged', None) for a
    truncated or foreign entry or one failing its checksum."""
    header = npy_header(shape, "f2")
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return "miss", None  # no entry (a folder in its place: saving it says so)
    except OSError:
        return "damaged", None
    count = int(np.prod(shape))
    if not data.startswith(header) or len(data) != len(header) + 2 * count + CHECKSUM_BYTES:
        return "damaged", None
    arr = np.frombuffer(data, np.float16, count=count, offset=len(header))
    if data[-CHECKSUM_BYTES:] != checksum(arr):
        return "damaged", None
    return "hit", arr.reshape(shape)


def _save(path: Path, maps: np.ndarray) -> None:
    """Flow maps as float16 .npy followed by their CRC-32 (see _load)."""
    half = np.ascontiguousarray(maps, dtype=np.float16)

    def write(f) -> None:
        np.save(f, half)
        f.write(checksum(half.reshape(-1)))
    atomic_write(path, write, durable=False)


def motion_arrays(inputs: InputArrays, kind: str, cache_dir: Path | None = None,
                  progress: bool = False, *, method: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Motion maps of every sample of `inputs`: (N, 3, S, S) float32, and notices to show.

    kind: 'diff' or 'flow' (see the module docstring for channels and scaling).
    method ('flow' only): 'tvl1' or 'farneback'; default TV-L1 where opencv-contrib has it.
    cache_dir ('flow' only): default data.inputs.default_cache_dir(); flow goes to its
    motion/ subfolder. An unwritable cache is reported and the flow computed without it.
    """
    if kind not in MOTIONS:
        raise DataError(f"unknown --motion {kind!r}; valid values: {', '.join(MOTIONS)}")
    if kind == "diff":
        return diff_maps(inputs.onset, inputs.apex), []

    notices: list[str] = []
    if method is None:
        method = default_flow_method()
        if method != "tvl1":
            notices.append("opencv-contrib's TV-L1 (cv2.optflow) is not available; "
                           "computing optical flow with Farneback")
    solver = _FlowSolver(method)
    n, _, size, _ = inputs.onset.shape
    cache = (Path(cache_dir) if cache_dir is not None else default_cache_dir()) / "motion"
    writable = writable_folder(cache)
    if not writable:
        notices.append(f"cache folder {cache} is not writable; computing optical flow without a cache")

    out = np.empty((n, 3, size, size), np.float32)          # (N, 3, S, S)
    hits = 0
    for i in tqdm(range(n), desc="optical flow", unit="sample", disable=not progress):
        onset, apex = inputs.onset[i], inputs.apex[i]       # (3, S, S) uint8 each
        path = cache / f"{flow_key(onset, apex, method)}.npy"
        status, cached = _load(path, (3, size, size)) if writable else ("miss", None)
        if status == "damaged":
            notices.append(f"cache entry {path} is damaged (truncated or failing its checksum); rebuilt")
        if cached is not None:
            out[i] = cached
            hits += 1
            continue
        maps = flow_channels(solver(_grey(onset), _grey(apex)))
        out[i] = maps.astype(np.float16)   # the same values a later cache hit returns
        if writable:
            try:
                _save(path, maps)
            except OSError as e:  # e.g. a folder where the entry belongs
                notices.append(f"cache entry {path} cannot be written ({e.strerror or e}); not cached")
    notices.append(f"motion: optical flow by {METHOD_LABELS[method]} at {size}x{size} px; "
                   f"{hits} of {n} from the cache")
    return out, notices
