"""The motion-map export of a synthetic release: the folder format data.motion_maps reads."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

from data.action_units import format_action_units
from data.inputs import build_inputs
from data.motion import motion_arrays
from data.protocols import Protocol
from data.release import load_release
from data.synthetic.write import JPEG_QUALITY


def write_motion_map_folder(release_root: Path, out: Path, protocol: Protocol,
                            img_size: int = 64, kind: str = "diff",
                            cache_dir: Path | None = None) -> Path:
    """Turn a release (e.g. from generate_release) into a motion-map folder; returns `out`.

    Writes <subject>/<filename>_motion.png (the motion maps of data.motion, clipped to
    [-1, 1] and stored as (m + 1) / 2 * 255, which data.motion_maps reads back),
    <subject>/<filename>_face.jpg (the onset face) and index.csv with an aus column.
    """
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
