"""Writing a release: the sheet and every clip's frames (noisy JPEGs) in one of the four layouts."""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from data.layout import LAYOUTS, layout_folder
from data.synthetic.faces import draw_face, subject_style
from data.synthetic.movement import ClipRenderer, _ramp, displacement_field
from data.synthetic.plan import Clip, _clips_from_sheet, plan_clips, write_sheet
from data.synthetic.randomness import _rng

RAW_FRAME = (640, 480)      # (W, H) of the uncropped camera frames
JPEG_QUALITY = 95
NOISE_SIGMA = 1.5           # sensor noise, grey levels
KEY_STEP = 4                # frame spacing written around an unknown ('/') apex with frames='key'


def _noisy_uint8(img: np.ndarray, rng: np.random.Generator, sigma: float = NOISE_SIGMA) -> np.ndarray:
    noise = rng.standard_normal(img.shape, dtype=np.float32) * sigma
    return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)


def drift_offset(c: Clip, frame: int, drift: float, seed: int) -> tuple[float, float]:
    """(dx, dy) px of the whole frame at `frame`: a head drift growing smoothly from 0 at the onset
    to `drift` px at the offset, in a direction drawn per clip.

    The growth is a raised cosine (slow start, fastest mid-clip, slow end), not a line, so that a
    spotting rule cannot cancel it exactly by interpolating between the clip's end frames."""
    if drift <= 0 or c.offset <= c.onset:
        return 0.0, 0.0
    angle = float(_rng(seed, "drift", c.subject, c.filename).uniform(0.0, 2.0 * np.pi))
    u = min(max((frame - c.onset) / (c.offset - c.onset), 0.0), 1.0)
    length = drift * 0.5 * (1.0 - np.cos(np.pi * u))
    return length * float(np.cos(angle)), length * float(np.sin(angle))


def shifted(img: np.ndarray, offset: tuple[float, float]) -> np.ndarray:
    """The image moved by a sub-pixel (dx, dy); Lanczos keeps the moved frame as sharp as the still one."""
    dx, dy = offset
    if dx == 0 and dy == 0:
        return img
    h, w = img.shape[:2]
    move = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(img, move, (w, h), flags=cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REFLECT)


def _frames_to_write(c: Clip, frames: str) -> list[int]:
    if frames == "all":
        return list(range(c.onset, c.offset + 1))
    keep = {c.onset, c.true_apex, c.offset}
    if c.apex is None:
        # the '/' apex fallback scans the clip: give it candidates, the true apex among them
        keep.update(range(c.onset, c.offset + 1, KEY_STEP))
    return sorted(keep)


def _raw_placement(seed: int, subject: int, size: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the face inside the raw frame; off-centre on purpose."""
    rng = _rng(seed, "placement", subject)
    W, H = RAW_FRAME
    w, h = size
    x = int(rng.integers(10, max(11, W - w - 10)))
    y = int(rng.integers(10, max(11, H - h - 10)))
    return x, y


def _raw_background(seed: int, subject: int) -> np.ndarray:
    rng = _rng(seed, "background", subject)
    W, H = RAW_FRAME
    base = rng.uniform(70, 140, 3).astype(np.float32)
    grad = np.linspace(-20, 20, W, dtype=np.float32)[None, :, None]
    bg = np.broadcast_to(base, (H, W, 3)) + grad
    blotch = cv2.GaussianBlur(rng.standard_normal((H // 8, W // 8)).astype(np.float32), (0, 0), 3)
    bg = bg + cv2.resize(blotch * 30, (W, H))[..., None]
    return np.ascontiguousarray(bg, dtype=np.float32)


def _check_release_args(layout: str, sheet_version: str, frames: str, size: tuple[int, int]) -> None:
    """ValueError for a layout, sheet version, frame choice or face size generate_release cannot write."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if sheet_version not in ("2014", "2019"):
        raise ValueError(f"sheet_version must be '2014' or '2019', got {sheet_version!r}")
    if frames not in ("all", "key"):
        raise ValueError(f"frames must be 'all' or 'key', got {frames!r}")
    w, h = size
    if layout == "raw" and (w + 20 > RAW_FRAME[0] or h + 20 > RAW_FRAME[1]):
        raise ValueError(f"face size {w}x{h} does not fit a {RAW_FRAME[0]}x{RAW_FRAME[1]} raw frame")


def generate_release(out: Path, *, layout: str = "cropped", subjects: int = 6,
                     per_subject: int = 10, sheet: Path | None = None,
                     sheet_version: str = "2019", size: tuple[int, int] = (96, 112),
                     seed: int = 0, emotions: Sequence[str] | None = None,
                     frames: str | None = None,
                     clip_len: tuple[int, int] = (24, 80), noise: float = NOISE_SIGMA,
                     drift: float = 0.0) -> Path:
    """Write a synthetic release under `out` and return its root (`out`).

    size: face crop (W, H) in pixels; in the raw layout the face is pasted at that size
    into a 640x480 frame. frames: 'all' writes every frame onset..offset (default with the
    generator's own sheet); 'key' writes onset, apex and offset only, plus every
    KEY_STEP-th frame of clips whose apex is '/' (default with `sheet`, for speed).
    noise: sensor noise sigma, grey levels. drift: head drift over each clip, px (drift_offset).
    """
    sheet_version = str(sheet_version)
    frames = frames or ("key" if sheet is not None else "all")
    w, h = int(size[0]), int(size[1])
    _check_release_args(layout, sheet_version, frames, (w, h))
    if not (noise >= 0 and drift >= 0):
        raise ValueError(f"noise and drift must not be negative, got {noise} and {drift}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    if sheet is not None:
        clips = _copy_sheet(Path(sheet), out, layout, seed)
    else:
        clips = plan_clips(subjects=subjects, per_subject=per_subject, version=sheet_version,
                           seed=seed, emotions=emotions, clip_len=clip_len)
        sheet_name = ("data.xlsx" if layout == "simple" else
                      f"CASME2-coding-{'20190701' if sheet_version == '2019' else '20140508'}.xlsx")
        write_sheet(out / sheet_name, clips, sheet_version)

    root = layout_folder(out, layout)
    prefix = "reg_img" if layout in ("cropped", "cropped-updated") else "img"
    faces: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    backgrounds: dict[int, np.ndarray] = {}
    for c in clips:
        if c.subject not in faces:
            faces[c.subject] = draw_face((w, h), subject_style(seed, c.subject))
        face, mask = faces[c.subject]
        rng = _rng(seed, "clip", c.subject, c.filename)
        amplitude = float(rng.uniform(1.0, 3.0))
        dx, dy = displacement_field((w, h), c.motion_aus, amplitude)
        render = ClipRenderer(face, dx, dy)
        scene = None
        if layout == "raw":
            if c.subject not in backgrounds:
                backgrounds[c.subject] = _raw_background(seed, c.subject)
            scene = (backgrounds[c.subject], _raw_placement(seed, c.subject, (w, h)), mask[..., None])
        clip_dir = root / f"sub{c.subject:02d}" / c.filename
        clip_dir.mkdir(parents=True, exist_ok=True)
        for f in _frames_to_write(c, frames):
            img = render.face_at(_ramp(f, c.onset, c.true_apex, c.offset))
            img = shifted(img if scene is None else _pasted(img, *scene), drift_offset(c, f, drift, seed))
            pixels = _noisy_uint8(img, _rng(seed, "noise", c.subject, c.filename, f), noise)
            _write_jpeg(clip_dir / f"{prefix}{f}.jpg", pixels)
    return out


def _pasted(face: np.ndarray, background: np.ndarray, corner: tuple[int, int], mask: np.ndarray) -> np.ndarray:
    """The raw camera frame: `face` (h, w, 3) blended by `mask` (h, w, 1) into a copy of `background` at `corner`."""
    (x0, y0), (h, w) = corner, face.shape[:2]
    full = background.copy()
    patch = full[y0:y0 + h, x0:x0 + w]
    full[y0:y0 + h, x0:x0 + w] = patch * (1 - mask) + face * mask
    return full


def _copy_sheet(sheet: Path, out: Path, layout: str, seed: int) -> list[Clip]:
    """Copy a given sheet into the release (as data.xlsx in the simple layout); its clips."""
    clips = _clips_from_sheet(sheet, seed)
    shutil.copyfile(sheet, out / ("data.xlsx" if layout == "simple" else sheet.name))
    return clips


def _write_jpeg(path: Path, pixels: np.ndarray) -> None:
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"JPEG encoding failed for {path.parent}")
    path.write_bytes(buf.tobytes())
