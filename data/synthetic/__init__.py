"""Synthetic CASME II-format releases for tests and dry runs.

`generate_release` writes an annotation sheet with the official columns and quirks plus
frame folders in one of the four layouts the loader accepts. Every clip shows the same
drawn face, still except for sensor noise and a subtle (1-3 px) displacement inside the
AU boxes of `utils.face_regions` for the clip's action units, ramping up from the onset
to the apex and back down to the offset; optionally the whole face also drifts (a head
moving by a chosen number of pixels over each clip). The class is carried by that motion alone, so a
model can only learn it from the onset/apex difference, as with the real data.

Command line:
    python -m data.synthetic OUT [--layout cropped|cropped-updated|raw|simple]
        [--subjects N] [--per-subject M] [--sheet PATH] [--sheet-version 2014|2019]
        [--size W H] [--seed S] [--frames all|key] [--noise SIGMA] [--drift PX]

Modules: `faces` (the drawn face), `movement` (how the AUs move it), `plan` (the clips and
the sheet), `write` (a release on disk), `export` (a release as a motion-map folder),
`randomness` (the seeded streams they share), `cli` (the command line).
"""
from data.synthetic.cli import main
from data.synthetic.export import write_motion_map_folder
from data.synthetic.faces import FaceStyle, draw_face, subject_style
from data.synthetic.movement import AU_DIRECTION, ClipRenderer, displacement_field
from data.synthetic.plan import (EMOTION_AUS, FIVE_CLASSES, IRREGULAR_NAMES, OBJECTIVE_CLASS, Clip, plan_clips,
                                 write_sheet)
from data.synthetic.write import JPEG_QUALITY, KEY_STEP, NOISE_SIGMA, RAW_FRAME, generate_release

__all__ = [
    "main", "write_motion_map_folder", "FaceStyle", "draw_face", "subject_style",
    "AU_DIRECTION", "ClipRenderer", "displacement_field",
    "EMOTION_AUS", "FIVE_CLASSES", "IRREGULAR_NAMES", "OBJECTIVE_CLASS", "Clip", "plan_clips", "write_sheet",
    "JPEG_QUALITY", "KEY_STEP", "NOISE_SIGMA", "RAW_FRAME", "generate_release",
]
