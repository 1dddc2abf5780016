"""Where the frames of a CASME II release live on disk.

Layouts (the folder that holds the subNN/ clip folders, relative to --raf_path):
- 'cropped':         Cropped/subNN/<Filename>/reg_img<N>.jpg  (aligned, cropped faces)
- 'cropped-updated': Cropped-updated/Cropped/subNN/...        (same, as nested in some copies)
- 'raw':             CASME2_RAW_selected/subNN/<Filename>/img<N>.jpg  (640x480, not cropped)
- 'simple':          subNN/<Filename>/img<N>.jpg beside data.xlsx

Detection tries them in that order (cropped faces first, as models expect faces).
--raf_path may also point straight at the folder holding subNN/; the layout is then named
after that folder ('Cropped', 'CASME2_RAW_selected') or, failing that, after its frame
names (reg_img* -> 'cropped', otherwise 'simple').
"""
from __future__ import annotations

import re
from pathlib import Path

from data.errors import DataError

LAYOUTS = ("cropped", "cropped-updated", "raw", "simple")
MAX_FRAME = 10 ** 6    # a frame number: over an hour at 200 fps, more than any clip holds

# layout -> candidate folders holding subNN/, relative to raf_path (the first is the layout's own name for it)
_LAYOUT_DIRS: dict[str, tuple[str, ...]] = {
    "cropped": ("Cropped",),
    "cropped-updated": ("Cropped-updated/Cropped", "Cropped-updated"),
    "raw": ("CASME2_RAW_selected",),
    "simple": (".",),
}
FRAME_PREFIXES = ("reg_img", "img")
FRAME_SUFFIXES = (".jpg", ".png", ".bmp")
_SUBJECT_DIR = re.compile(r"sub\d+")


def layout_folder(raf_path: Path, layout: str) -> Path:
    """The folder a release of `layout` keeps its subNN/ folders in (for writing a release)."""
    return Path(raf_path) / _LAYOUT_DIRS[layout][0]


def _has_subject_dirs(folder: Path) -> bool:
    try:
        return any(p.is_dir() and _SUBJECT_DIR.fullmatch(p.name) for p in folder.iterdir())
    except OSError:
        return False


def check_raf_path(raf_path: Path) -> Path:
    raf_path = Path(raf_path)
    if not raf_path.exists():
        raise DataError(f"--raf_path {raf_path}: folder not found")
    if not raf_path.is_dir():
        raise DataError(f"--raf_path {raf_path}: not a folder")
    return raf_path


def _name_direct(folder: Path) -> str:
    """Layout of a folder that itself holds subNN/."""
    name = folder.resolve().name.lower()
    if name == "casme2_raw_selected":
        return "raw"
    if name == "cropped":
        return "cropped-updated" if folder.resolve().parent.name.lower() == "cropped-updated" else "cropped"
    if name == "cropped-updated":
        return "cropped-updated"
    if (folder / "data.xlsx").is_file():
        return "simple"
    # look at one clip's frame names
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and _SUBJECT_DIR.fullmatch(p.name)):
        for clip in sorted(p for p in sub.iterdir() if p.is_dir()):
            for frame in clip.iterdir():
                return "cropped" if frame.name.lower().startswith("reg_img") else "simple"
    return "simple"


def detect_layout(raf_path: Path) -> tuple[str, Path]:
    """(layout name, folder holding subNN/) found under `raf_path`; DataError if none."""
    raf_path = check_raf_path(raf_path)
    if raf_path.resolve().name.lower() == "cropped-updated" and _has_subject_dirs(raf_path / "Cropped"):
        return "cropped-updated", raf_path / "Cropped"
    for name in LAYOUTS:
        if name == "simple":
            break  # raf_path itself is handled below, after the named folders
        for rel in _LAYOUT_DIRS[name]:
            if _has_subject_dirs(raf_path / rel):
                return name, raf_path / rel
    if _has_subject_dirs(raf_path):
        return _name_direct(raf_path), raf_path
    looked = ", ".join(f"{rel}/subNN" for rels in _LAYOUT_DIRS.values() for rel in rels
                       if rel != ".")
    raise DataError(f"--raf_path {raf_path}: no frame folders found; looked for {looked} "
                    f"and subNN/ directly inside it")


def resolve_layout(raf_path: Path, layout: str | None = None) -> tuple[str, Path]:
    """Like detect_layout, but `layout` (the --layout flag) overrides detection."""
    if layout is None:
        return detect_layout(raf_path)
    if layout not in LAYOUTS:
        raise DataError(f"unknown --layout {layout!r}; valid values: {', '.join(LAYOUTS)}")
    raf_path = check_raf_path(raf_path)
    for rel in _LAYOUT_DIRS[layout]:
        if _has_subject_dirs(raf_path / rel):
            return layout, raf_path / rel
    if _has_subject_dirs(raf_path):   # raf_path points straight at the subNN/ folder
        return layout, raf_path
    looked = " or ".join(f"{raf_path / rel}/subNN" for rel in _LAYOUT_DIRS[layout])
    raise DataError(f"--layout {layout}: no frame folders found; looked for {looked}")


def frame_path(frames_root: Path, subject: str, filename: str, frame: int) -> Path | None:
    """Path of frame `frame` of a clip: reg_img<N> then img<N> (.jpg, .png, .bmp); None if absent."""
    clip = Path(frames_root) / subject / filename
    for suffix in FRAME_SUFFIXES:
        for prefix in FRAME_PREFIXES:
            path = clip / f"{prefix}{frame}{suffix}"
            if path.is_file():
                return path
    return None
