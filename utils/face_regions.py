"""Where each action unit (AU) acts on an aligned, cropped face.

Coordinates are fractions of the face crop (x to the right, y down, both in [0, 1]),
as in CASME II's `Cropped` frames, where the crop runs from the forehead to the chin.
A bilateral AU has two boxes: the first on the image's left half (the subject's right
side), the second on the image's right half (the subject's left side).

This table is the single description of facial geometry in the project: the model
pools AU node features over these boxes and the synthetic clip generator moves
exactly these boxes, so the two always agree.
"""
from __future__ import annotations

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), fractions of width / height

AU_REGIONS: dict[int, tuple[Box, ...]] = {
    1: ((0.30, 0.16, 0.46, 0.30), (0.54, 0.16, 0.70, 0.30)),   # inner brow raiser
    2: ((0.12, 0.16, 0.30, 0.30), (0.70, 0.16, 0.88, 0.30)),   # outer brow raiser
    4: ((0.33, 0.22, 0.67, 0.36),),                            # brow lowerer
    5: ((0.20, 0.30, 0.42, 0.38), (0.58, 0.30, 0.80, 0.38)),   # upper lid raiser
    6: ((0.14, 0.44, 0.36, 0.58), (0.64, 0.44, 0.86, 0.58)),   # cheek raiser
    7: ((0.20, 0.34, 0.42, 0.44), (0.58, 0.34, 0.80, 0.44)),   # lid tightener
    9: ((0.40, 0.38, 0.60, 0.56),),                            # nose wrinkler
    10: ((0.34, 0.58, 0.66, 0.68),),                           # upper lip raiser
    12: ((0.24, 0.64, 0.40, 0.78), (0.60, 0.64, 0.76, 0.78)),  # lip corner puller
    14: ((0.20, 0.68, 0.34, 0.82), (0.66, 0.68, 0.80, 0.82)),  # dimpler
    15: ((0.26, 0.76, 0.40, 0.88), (0.60, 0.76, 0.74, 0.88)),  # lip corner depressor
    16: ((0.38, 0.76, 0.62, 0.86),),                           # lower lip depressor
    17: ((0.38, 0.84, 0.62, 0.97),),                           # chin raiser
    18: ((0.38, 0.66, 0.62, 0.78),),                           # lip pucker
    20: ((0.18, 0.66, 0.36, 0.84), (0.64, 0.66, 0.82, 0.84)),  # lip stretcher
    24: ((0.36, 0.66, 0.64, 0.76),),                           # lip pressor
    25: ((0.40, 0.68, 0.60, 0.78),),                           # lips part
    26: ((0.36, 0.76, 0.64, 0.94),),                           # jaw drop
    38: ((0.38, 0.48, 0.62, 0.58),),                           # nostril dilator
}

# The nine most frequent AUs of CASME II's five-class rows: the default graph nodes.
DEFAULT_AUS: tuple[int, ...] = (1, 2, 4, 10, 12, 14, 15, 17, 25)


def au_boxes(au: int, side: str = "") -> tuple[Box, ...]:
    """Boxes of `au`; `side` 'R' or 'L' keeps only that side of the subject's face.

    Other sides (T top, B bottom, A asymmetric, U unilateral of unknown side) keep every box."""
    boxes = AU_REGIONS[au]
    if side in ("L", "R") and len(boxes) == 2:
        return (boxes[0],) if side == "R" else (boxes[1],)
    return boxes
