"""The drawn face of each synthetic subject: its style (skin, hair, background, jitter) and the picture."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from data.synthetic.randomness import _rng


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
