"""How a clip moves the face: AU displacement fields, the onset-apex-offset ramp, the frame renderer."""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from data.action_units import ActionUnit
from utils.face_regions import AU_REGIONS, au_boxes

# Direction in which each AU moves the skin inside its box: (dx, dy) for the box on the
# image's left half; the mirrored box gets -dx. Units: fraction of the clip's amplitude.
AU_DIRECTION: dict[int, tuple[float, float]] = {
    1: (0.3, -1.0), 2: (-0.3, -1.0), 4: (0.0, 1.0), 5: (0.0, -1.0), 6: (0.2, -1.0),
    7: (0.0, -1.0), 9: (0.0, -1.0), 10: (0.0, -1.0), 12: (-0.8, -0.6), 14: (-1.0, 0.0),
    15: (0.0, 1.0), 16: (0.0, 1.0), 17: (0.0, -1.0), 18: (1.0, 0.0), 20: (-1.0, 0.2),
    24: (0.0, -0.6), 25: (0.0, 1.0), 26: (0.0, 1.0), 38: (-1.0, 0.0),
}


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
