"""Synthetic CASME II-format releases for tests and dry runs.

`generate_release` writes an annotation sheet with the official columns and quirks plus
frame folders in one of the four layouts the loader accepts. Every clip shows the same
drawn face, still except for sensor noise and a subtle (1-3 px) displacement inside the
AU boxes of `utils.face_regions` for the clip's action units, ramping up from the onset
to the apex and back down to the offset. The class is carried by that motion alone, so a
model can only learn it from the onset/apex difference, as with the real data.

Command line:
    python -m data.synthetic OUT [--layout cropped|cropped-updated|raw|simple]
        [--subjects N] [--per-subject M] [--sheet PATH] [--sheet-version 2014|2019]
        [--size W H] [--seed S] [--frames all|key]
"""
from __future__ import annotations

import argparse
import shutil
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data.action_units import ActionUnit, format_action_units, parse_action_units
from data.errors import DataError
from data.layout import LAYOUTS, layout_folder
from data.protocols import Protocol
from utils.face_regions import AU_REGIONS, au_boxes

RAW_FRAME = (640, 480)      # (W, H) of the uncropped camera frames
JPEG_QUALITY = 95
NOISE_SIGMA = 1.5           # sensor noise, grey levels
KEY_STEP = 4                # frame spacing written around an unknown ('/') apex with frames='key'

# Sheet spellings of the action units typical of each emotion; one is drawn per clip.
EMOTION_AUS: dict[str, tuple[str, ...]] = {
    "happiness": ("6+12", "12", "R12", "6+12+25", "L12"),
    "surprise": ("1+2", "1+2+25", "1+2+26", "L1+L2", "1+2+5"),
    "disgust": ("4+9", "4+10", "4+L10", "4+7+10", "9+10"),
    "repression": ("14", "15", "17", "15+17", "R14", "14+17"),
    "others": ("4", "7", "4+7", "5", "18", "24", "38"),
    "sadness": ("1+4+15", "1+4+15+17", "4+15"),
    "fear": ("1+2+4+20", "1+2+4+20+25", "4+20"),
}
FIVE_CLASSES = ("happiness", "surprise", "disgust", "repression", "others")
OBJECTIVE_CLASS = {"happiness": 1, "surprise": 2, "disgust": 4, "repression": 5,
                   "others": 7, "sadness": 6, "fear": 3}

# Direction in which each AU moves the skin inside its box: (dx, dy) for the box on the
# image's left half; the mirrored box gets -dx. Units: fraction of the clip's amplitude.
AU_DIRECTION: dict[int, tuple[float, float]] = {
    1: (0.3, -1.0), 2: (-0.3, -1.0), 4: (0.0, 1.0), 5: (0.0, -1.0), 6: (0.2, -1.0),
    7: (0.0, -1.0), 9: (0.0, -1.0), 10: (0.0, -1.0), 12: (-0.8, -0.6), 14: (-1.0, 0.0),
    15: (0.0, 1.0), 16: (0.0, 1.0), 17: (0.0, -1.0), 18: (1.0, 0.0), 20: (-1.0, 0.2),
    24: (0.0, -0.6), 25: (0.0, 1.0), 26: (0.0, 1.0), 38: (-1.0, 0.0),
}
# Irregular file names seen in the real sheets; the generator mixes them in.
IRREGULAR_NAMES = ("EP06_02_01", "EP09f", "EP01_2", "EP08_1")


@dataclass(frozen=True)
class Clip:
    """One row of the synthetic sheet, plus what the renderer needs."""
    subject: int            # 1-based
    filename: str
    onset: int
    apex: int | None        # None: the sheet says '/'
    offset: int
    aus_cell: object        # as written to the sheet (int or str)
    emotion: str
    motion_aus: tuple[ActionUnit, ...]   # the AUs that move in the frames
    true_apex: int          # the frame of peak motion (== apex unless apex is None)


# --------------------------------------------------------------------------- randomness

def _rng(seed: int, *keys: object) -> np.random.Generator:
    """Independent, reproducible stream per (seed, keys): order of generation never matters."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))


# --------------------------------------------------------------------------- the face

@dataclass(frozen=True)
class FaceStyle:
    skin: tuple[float, float, float]      # BGR
    hair: tuple[float, float, float]
    background: tuple[float, float, float]
    scale: float                          # face oval size jitter
    dy: float                             # feature vertical jitter (fraction of H)
    texture_seed: int


def subject_style(seed: int, subject: int) -> FaceStyle:
    rng = _rng(seed, "style", subject)
    tone = rng.uniform(0.0, 0.75)  # darker tones defeat the stock Haar face detector
    # skin from light to darker brown, BGR
    light, darker = np.array([150.0, 180.0, 228.0]), np.array([60.0, 100.0, 160.0])
    skin = light + tone * (darker - light)
    hair = tuple(float(v) for v in rng.uniform(15, 60, 3))
    background = tuple(float(v) for v in rng.uniform(60, 120, 3))
    return FaceStyle(skin=tuple(float(v) for v in skin), hair=hair, background=background,
                     scale=float(rng.uniform(0.97, 1.03)), dy=float(rng.uniform(-0.01, 0.01)),
                     texture_seed=int(rng.integers(2**31)))


class _Canvas:
    """A face drawn `W` x `H` pixels: positions given as fractions of the width and height."""

    def __init__(self, W: int, H: int, dy: float) -> None:
        self.W, self.H, self.dy = W, H, dy

    def pt(self, x: float, y: float) -> tuple[int, int]:
        return int(round(x * self.W)), int(round((y + self.dy) * self.H))

    def ax(self, a: float, b: float) -> tuple[int, int]:
        return max(1, int(round(a * self.W))), max(1, int(round(b * self.H)))


def _face_shape(at: _Canvas, style: FaceStyle) -> tuple[np.ndarray, np.ndarray]:
    """The shaded oval on its background, hair cap, eye sockets, nose bridge and cheekbones; and the oval mask."""
    img = np.empty((at.H, at.W, 3), np.float32)
    img[:] = style.background
    mask = np.zeros((at.H, at.W), np.float32)
    face_axes = at.ax(0.47 * style.scale, 0.50 * style.scale)
    cv2.ellipse(mask, at.pt(0.5, 0.52), face_axes, 0, 0, 360, 1.0, -1)
    # hair cap above the forehead
    cv2.ellipse(img, at.pt(0.5, 0.42), at.ax(0.50 * style.scale, 0.44 * style.scale), 0, 180, 360,
                style.hair, -1)
    skin = np.empty_like(img)
    skin[:] = style.skin
    # shading: darker towards the rim of the oval, as on a lit rounded face
    yy, xx = np.mgrid[0:at.H, 0:at.W].astype(np.float32)
    cx, cy = at.pt(0.5, 0.52)
    r = np.sqrt(((xx - cx) / face_axes[0]) ** 2 + ((yy - cy) / face_axes[1]) ** 2)
    skin *= (1.0 - 0.25 * np.clip(r, 0, 1) ** 3)[..., None]
    img = img * (1 - mask[..., None]) + skin * mask[..., None]

    dark = tuple(0.45 * c for c in style.skin)
    # eye sockets: the darker band a face detector keys on
    for x in (0.31, 0.69):
        cv2.ellipse(img, at.pt(x, 0.37), at.ax(0.14, 0.07), 0, 0, 360, dark, -1)
    light = tuple(min(255.0, 1.12 * c) for c in style.skin)
    cv2.ellipse(img, at.pt(0.5, 0.42), at.ax(0.045, 0.12), 0, 0, 360, light, -1)   # nose bridge
    for x in (0.27, 0.73):
        cv2.ellipse(img, at.pt(x, 0.53), at.ax(0.10, 0.06), 0, 0, 360, light, -1)  # cheekbones
    return img, mask


def _face_features(img: np.ndarray, at: _Canvas, style: FaceStyle) -> None:
    """Draw brows, eyes, nose, folds, mouth, creases and chin onto `img` (H, W, 3) in place."""
    dark = tuple(0.45 * c for c in style.skin)
    # brows: hair colour thinned by skin, as sparse brow hair looks
    brow = tuple(0.5 * a + 0.5 * b for a, b in zip(style.hair, style.skin))
    for x0, x1, sgn in ((0.16, 0.44, 1), (0.56, 0.84, -1)):
        pts = np.array([at.pt(x0, 0.255), at.pt((x0 + x1) / 2, 0.225), at.pt(x1, 0.245 + 0.01 * sgn)], np.int32)
        cv2.polylines(img, [pts], False, brow, thickness=max(1, int(0.035 * at.H)))
    # eyes: sclera, iris, pupil, lid line
    for x in (0.31, 0.69):
        cv2.ellipse(img, at.pt(x, 0.38), at.ax(0.085, 0.028), 0, 0, 360, (225, 228, 232), -1)
        cv2.circle(img, at.pt(x, 0.38), int(0.026 * at.H), (50, 60, 80), -1)
        cv2.circle(img, at.pt(x, 0.38), int(0.011 * at.H), (10, 10, 10), -1)
        cv2.ellipse(img, at.pt(x, 0.38), at.ax(0.09, 0.03), 0, 180, 360, style.hair, max(1, int(0.008 * at.H)))
    # nose: bridge shadow, tip, nostrils
    cv2.line(img, at.pt(0.47, 0.42), at.pt(0.46, 0.52), dark, max(1, int(0.01 * at.W)))
    cv2.ellipse(img, at.pt(0.5, 0.535), at.ax(0.07, 0.03), 0, 0, 180, dark, max(1, int(0.01 * at.W)))
    for x in (0.45, 0.55):
        cv2.ellipse(img, at.pt(x, 0.54), at.ax(0.022, 0.012), 0, 0, 360, tuple(0.35 * c for c in style.skin), -1)
    # nasolabial folds
    for x0, x1 in ((0.40, 0.33), (0.60, 0.67)):
        cv2.line(img, at.pt(x0, 0.56), at.pt(x1, 0.70), tuple(0.8 * c for c in style.skin), max(1, int(0.008 * at.W)))
    # mouth: lips and the dark line between them
    lip = (style.skin[0] * 0.6, style.skin[1] * 0.55, min(255.0, style.skin[2] * 0.95))
    cv2.ellipse(img, at.pt(0.5, 0.72), at.ax(0.13, 0.035), 0, 0, 360, lip, -1)
    cv2.line(img, at.pt(0.38, 0.72), at.pt(0.62, 0.72), tuple(0.3 * c for c in style.skin), max(1, int(0.009 * at.H)))
    # mouth-corner creases and dimples: texture for AU14/AU15 to move
    crease = tuple(0.78 * c for c in style.skin)
    for sgn in (-1, 1):
        cv2.line(img, at.pt(0.5 + sgn * 0.14, 0.74), at.pt(0.5 + sgn * 0.16, 0.85), crease, max(1, int(0.008 * at.W)))
        cv2.ellipse(img, at.pt(0.5 + sgn * 0.22, 0.75), at.ax(0.025, 0.035), 0, 0, 360, crease, -1)
    # chin crease
    cv2.ellipse(img, at.pt(0.5, 0.86), at.ax(0.07, 0.02), 0, 200, 340, tuple(0.85 * c for c in style.skin),
                max(1, int(0.006 * at.H)))


def _skin_texture(seed: int, w: int, h: int) -> np.ndarray:
    """(h, w) float32 pores and blotches: they give the warp something to move on flat skin."""
    rng = _rng(seed, "texture")
    fine = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.8)
    coarse = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), max(1.5, w / 30))
    return 6.0 * fine / (fine.std() + 1e-6) + 6.0 * coarse / (coarse.std() + 1e-6)


def draw_face(size: tuple[int, int], style: FaceStyle) -> tuple[np.ndarray, np.ndarray]:
    """A face-like BGR image (H, W, 3) float32 and its oval mask (H, W) float32 in [0, 1].

    Features sit at the canonical positions the AU table assumes (brows ~0.24, eyes ~0.38,
    nose tip ~0.52, mouth ~0.72 of the height), so the AU boxes cover what they name.
    """
    w, h = size
    ss = 4  # draw at 4x and shrink: smooth edges without anti-aliasing flags everywhere
    canvas = _Canvas(w * ss, h * ss, style.dy)
    img, mask = _face_shape(canvas, style)
    img = cv2.GaussianBlur(img, (0, 0), 2 * ss)
    _face_features(img, canvas, style)
    # soften to camera sharpness: real frames have no one-pixel edges
    img = cv2.GaussianBlur(img, (0, 0), 0.8 * ss)
    img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
    img += (_skin_texture(style.texture_seed, w, h) * mask)[..., None]
    return np.clip(img, 0, 255).astype(np.float32), mask


# --------------------------------------------------------------------------- the motion

def _window(n: int) -> np.ndarray:
    """Raised-cosine bump over n pixels: smooth, peak 1 in the middle, 0 at the edges."""
    if n <= 2:
        return np.ones(n, np.float32)
    return np.sin(np.pi * (np.arange(n, dtype=np.float32) + 0.5) / n) ** 2


def displacement_field(size: tuple[int, int], aus: Sequence[ActionUnit],
                       amplitude: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel (dx, dy) in pixels, (H, W) each: zero outside the boxes of `aus`."""
    w, h = size
    dx = np.zeros((h, w), np.float32)
    dy = np.zeros((h, w), np.float32)
    for unit in aus:
        au = unit.au
        if au not in AU_REGIONS:
            continue  # AUs without a region (e.g. 43) leave the face still
        ux, uy = AU_DIRECTION.get(au, (0.0, -1.0))
        norm = float(np.hypot(ux, uy))
        ux, uy = ux / norm, uy / norm
        for box in au_boxes(au, unit.side):
            x0, y0, x1, y1 = (int(round(box[0] * w)), int(round(box[1] * h)),
                              int(round(box[2] * w)), int(round(box[3] * h)))
            if x1 - x0 < 1 or y1 - y0 < 1:
                continue
            bump = np.outer(_window(y1 - y0), _window(x1 - x0)) * amplitude
            mirrored = (box[0] + box[2]) / 2 > 0.5  # box on the image's right half
            dx[y0:y1, x0:x1] += bump * (-ux if mirrored else ux)
            dy[y0:y1, x0:x1] += bump * uy
    # overlapping boxes (AU1 and AU4, ...) add up: cap the displacement at the amplitude
    length = np.hypot(dx, dy)
    over = length > amplitude
    if over.any():
        scale = np.where(over, amplitude / np.maximum(length, 1e-6), 1.0).astype(np.float32)
        dx, dy = dx * scale, dy * scale
    return dx, dy


def _ramp(frame: int, onset: int, apex: int, offset: int) -> float:
    """Motion strength: 0 at onset, rising to a sharp peak of 1 at the apex, 0 at offset.

    Squared ramps make the apex clearly the frame that differs most from the onset."""
    if frame <= onset or frame >= offset:
        t = 0.0 if frame != apex else 1.0
    elif frame <= apex:
        t = (frame - onset) / max(1, apex - onset)
    else:
        t = (offset - frame) / max(1, offset - apex)
    return float(t * t)


class ClipRenderer:
    """Renders the frames of one clip: base face warped by a scaled displacement field."""

    def __init__(self, face: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> None:
        h, w = face.shape[:2]
        self.face = face
        self.gx, self.gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.dx, self.dy = dx, dy
        self.moving = bool(np.any(dx) or np.any(dy))

    def face_at(self, strength: float) -> np.ndarray:
        if strength <= 0 or not self.moving:
            return self.face
        # backward map: content at p moves to p + d, so sample the base image at p - d
        return cv2.remap(self.face, self.gx - strength * self.dx, self.gy - strength * self.dy,
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _noisy_uint8(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.standard_normal(img.shape, dtype=np.float32) * NOISE_SIGMA
    return np.clip(img + noise + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- the sheet

def _subject_cell(subject: int, version: str) -> object:
    # the 2019 copies store subjects as text '01'; some 2014 copies as integers
    return f"{subject:02d}" if version == "2019" else subject


def _aus_cell(text: str) -> object:
    # Excel stores a lone numeric AU as a number
    return int(text) if text.isdigit() else text


def plan_clips(*, subjects: int, per_subject: int, version: str, seed: int,
               emotions: Sequence[str] | None = None,
               clip_len: tuple[int, int] = (24, 80)) -> list[Clip]:
    """The rows of a synthetic sheet, with the real sheets' quirks built in.

    Quirks: a filename shared by two subjects, an irregular filename (EP06_02_01),
    one-sided AU codes (L10, R12), numeric AU cells, 'none' AUs (2014), one '/' apex (2019).
    """
    if subjects < 1 or per_subject < 1:
        raise ValueError("subjects and per_subject must be >= 1")
    labels = _planned_emotions(subjects * per_subject, version, seed, emotions)
    names = [f"EP{a:02d}_{b:02d}{'f' if (a + b) % 3 == 0 else ''}"
             for a in range(1, 20) for b in range(1, 8)]
    clips: list[Clip] = []
    forced = {"L": False, "R": False, "none": False, "slash": False}
    slash_subject = min(4, subjects)   # like sub04 EP12_01f in the real 2019 sheet
    for s in range(1, subjects + 1):
        srng = _rng(seed, "subject", s)
        for j, filename in enumerate(_subject_filenames(s, per_subject, names, srng)):
            emotion = labels[(s - 1) * per_subject + j]
            text = _aus_text(emotion, srng, forced)
            motion = tuple(sorted(parse_action_units(text)))
            cell: object = _aus_cell(text)
            if version == "2014" and emotion == "others" and not forced["none"]:
                cell, forced["none"] = "none", True   # motion stays: the coder saw no AU
            length = int(srng.integers(clip_len[0], clip_len[1] + 1))
            onset = int(srng.integers(1, 200))
            offset = onset + length - 1
            apex = onset + int(round(length * srng.uniform(0.3, 0.6)))
            apex = min(max(apex, onset + 1), offset - 1) if length >= 3 else onset
            sheet_apex: int | None = apex
            if (version == "2019" and s == slash_subject and not forced["slash"]
                    and (emotion in FIVE_CLASSES or j == per_subject - 1)):
                sheet_apex, forced["slash"] = None, True   # kept by the five-class protocol
            clips.append(Clip(s, filename, onset, sheet_apex, offset, cell, emotion, motion, apex))
    return clips


def _planned_emotions(total: int, version: str, seed: int, emotions: Sequence[str] | None) -> list[str]:
    """The `total` clips' emotions, cycling through the pool, in a seeded random order."""
    if emotions is None:
        pool = list(FIVE_CLASSES)
    else:
        pool = [str(e).strip().lower() for e in emotions]
        if not pool:
            raise ValueError("emotions must not be empty")
    labels = [pool[i % len(pool)] for i in range(total)]
    if emotions is None and version == "2019" and total >= 15:
        # the 2019 sheet's rare emotions, left out by the five-class protocol
        labels[total - 1] = "sadness"
        labels[total - 8] = "fear"
    rng = _rng(seed, "plan", version)
    rng.shuffle(labels)
    return labels


def _subject_filenames(s: int, per_subject: int, names: list[str], srng: np.random.Generator) -> list[str]:
    """Subject `s`'s clip names, sorted: EP02_01f under subjects 1 and 2, irregular names under subject 1."""
    picks = list(srng.choice(len(names), size=min(per_subject, len(names)), replace=False))
    chosen = [names[i] for i in picks]
    while len(chosen) < per_subject:
        chosen.append(f"EP{20 + len(chosen):02d}_01")
    # the same filename under subjects 1 and 2; irregular names for subject 1
    if s in (1, 2):
        if "EP02_01f" in chosen:
            chosen.remove("EP02_01f")
            chosen.insert(0, "EP02_01f")
        else:
            chosen[0] = "EP02_01f"
    if s == 1 and per_subject >= 2:
        for k, irregular in enumerate(IRREGULAR_NAMES[: per_subject - 1]):
            chosen[k + 1] = irregular
    chosen = sorted(dict.fromkeys(chosen))  # real sheets list each subject's clips by name
    while len(chosen) < per_subject:
        chosen.append(f"EP{30 + len(chosen):02d}_02")
    return chosen


def _aus_text(emotion: str, srng: np.random.Generator, forced: dict[str, bool]) -> str:
    """A clip's AU code for `emotion`; the first disgust and happiness clips get the one-sided codes."""
    variants = EMOTION_AUS.get(emotion)
    if variants is None:  # an emotion outside the table: one or two random AUs
        k = srng.choice(sorted(AU_REGIONS), size=int(srng.integers(1, 3)), replace=False)
        text = "+".join(str(int(a)) for a in sorted(k))
    else:
        text = variants[int(srng.integers(len(variants)))]
    # make sure the one-sided codes and 'none' appear at least once
    if emotion == "disgust" and not forced["L"]:
        text, forced["L"] = "4+L10", True
    elif emotion == "happiness" and not forced["R"]:
        text, forced["R"] = "R12", True
    return text


def _clips_from_sheet(path: Path, seed: int) -> list[Clip]:
    """Clips for every row of an existing sheet: frames follow its onset/apex/offset.

    Motion = the row's annotated AUs plus a typical AU set of its emotion, so the class is
    recoverable from the frames even where the coders gave few or shared AUs.
    """
    from data.sheet import read_sheet  # only this mode needs the sheet reader

    rows, _ = read_sheet(path)
    clips = []
    for r in rows:
        rng = _rng(seed, "row", r.subject, r.filename)
        variants = EMOTION_AUS.get(r.emotion, EMOTION_AUS["others"])
        motion = parse_action_units(variants[int(rng.integers(len(variants)))]) | r.aus
        true_apex = r.apex if r.apex is not None else (r.onset + r.offset) // 2
        clips.append(Clip(int(r.subject[3:]), r.filename, r.onset, r.apex, r.offset, None,
                          r.emotion, tuple(sorted(motion)), true_apex))
    return clips


def write_sheet(path: Path, clips: Sequence[Clip], version: str) -> None:
    """The official column order: Subject, Filename, -, OnsetFrame, ApexFrame, OffsetFrame, -,
    Action Units, Estimated Emotion, then 'Objective Classes' (2019) or a blank header (2014)."""
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Sheet1"
    last = "Objective Classes" if version == "2019" else None
    ws.append(["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
               "Action Units", "Estimated Emotion", last])
    for c in clips:
        ws.append([_subject_cell(c.subject, version), c.filename, None, c.onset,
                   "/" if c.apex is None else c.apex, c.offset, None, c.aus_cell, c.emotion,
                   OBJECTIVE_CLASS.get(c.emotion, 7)])
    book.create_sheet("Sheet2")
    book.create_sheet("Sheet3")
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)


# --------------------------------------------------------------------------- the release

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
                     clip_len: tuple[int, int] = (24, 80)) -> Path:
    """Write a synthetic release under `out` and return its root (`out`).

    size: face crop (W, H) in pixels; in the raw layout the face is pasted at that size
    into a 640x480 frame. frames: 'all' writes every frame onset..offset (default with the
    generator's own sheet); 'key' writes onset, apex and offset only, plus every
    KEY_STEP-th frame of clips whose apex is '/' (default with `sheet`, for speed).
    """
    sheet_version = str(sheet_version)
    frames = frames or ("key" if sheet is not None else "all")
    w, h = int(size[0]), int(size[1])
    _check_release_args(layout, sheet_version, frames, (w, h))
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
        if layout == "raw":
            if c.subject not in backgrounds:
                backgrounds[c.subject] = _raw_background(seed, c.subject)
            bg = backgrounds[c.subject]
            x0, y0 = _raw_placement(seed, c.subject, (w, h))
            m = mask[..., None]
        clip_dir = root / f"sub{c.subject:02d}" / c.filename
        clip_dir.mkdir(parents=True, exist_ok=True)
        for f in _frames_to_write(c, frames):
            img = render.face_at(_ramp(f, c.onset, c.true_apex, c.offset))
            if layout == "raw":
                full = bg.copy()
                patch = full[y0:y0 + h, x0:x0 + w]
                full[y0:y0 + h, x0:x0 + w] = patch * (1 - m) + img * m
                img = full
            _write_jpeg(clip_dir / f"{prefix}{f}.jpg", _noisy_uint8(img, _rng(seed, "noise", c.subject, c.filename, f)))
    return out


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


def write_motion_map_folder(release_root: Path, out: Path, protocol: Protocol,
                            img_size: int = 64, kind: str = "diff",
                            cache_dir: Path | None = None) -> Path:
    """Turn a release (e.g. from generate_release) into a motion-map folder; returns `out`.

    Writes <subject>/<filename>_motion.png (the motion maps of data.motion, clipped to
    [-1, 1] and stored as (m + 1) / 2 * 255, which data.motion_maps reads back),
    <subject>/<filename>_face.jpg (the onset face) and index.csv with an aus column.
    """
    import csv

    from data.inputs import build_inputs
    from data.motion import motion_arrays
    from data.release import load_release

    release = load_release(Path(release_root), protocol)
    inputs = build_inputs(release, img_size=img_size, cache_dir=cache_dir, progress=False)
    motion, _ = motion_arrays(inputs, kind, cache_dir=cache_dir)          # (N, 3, S, S)
    pixels = np.round((np.clip(motion, -1.0, 1.0) + 1.0) * 127.5).astype(np.uint8)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, s in enumerate(inputs.samples):
        folder = out / s.subject
        folder.mkdir(exist_ok=True)
        motion_rel, face_rel = f"{s.subject}/{s.filename}_motion.png", f"{s.subject}/{s.filename}_face.jpg"
        # arrays are (3, S, S) RGB; OpenCV writes (S, S, 3) BGR
        motion_bgr = np.ascontiguousarray(pixels[i].transpose(1, 2, 0)[..., ::-1])
        face_bgr = np.ascontiguousarray(inputs.onset[i].transpose(1, 2, 0)[..., ::-1])
        if not cv2.imwrite(str(out / motion_rel), motion_bgr):
            raise OSError(f"cannot write {out / motion_rel}")
        if not cv2.imwrite(str(out / face_rel), face_bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
            raise OSError(f"cannot write {out / face_rel}")
        rows.append([s.subject, s.filename, protocol.classes[s.label], motion_rel, face_rel,
                     format_action_units(s.aus)])
    with (out / "index.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject", "sample", "label", "motion", "face", "aus"])
        writer.writerows(rows)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data.synthetic",
                                description="Write a synthetic CASME II-format release.")
    p.add_argument("out", type=Path, help="folder to write the release into")
    p.add_argument("--layout", choices=LAYOUTS, default="cropped")
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--per-subject", type=int, default=10)
    p.add_argument("--sheet", type=Path, default=None,
                   help="write frames for every row of this existing annotation sheet")
    p.add_argument("--sheet-version", choices=("2014", "2019"), default="2019")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=(96, 112))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", choices=("all", "key"), default=None,
                   help="all frames onset..offset, or only key frames (default: key with --sheet)")
    args = p.parse_args(argv)
    try:
        root = generate_release(args.out, layout=args.layout, subjects=args.subjects,
                                per_subject=args.per_subject, sheet=args.sheet,
                                sheet_version=args.sheet_version, size=tuple(args.size),
                                seed=args.seed, frames=args.frames)
    except (DataError, ValueError) as exc:  # bad --sheet contents, bad argument values
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
