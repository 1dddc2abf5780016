"""File names made from dataset strings, and checks that a folder can be written.

Subject names come from datasets (a motion-map folder's index.csv may hold any text, and
soon 'dataset/subject'), so they never become file names as they are: `file_stem` keeps a
readable slug of their letters and digits and adds a short hash of the exact text. Two
different keys therefore give two different names, and no key can climb out of its folder.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

SLUG_CHARS = 40        # longest readable part of a stem
DIGEST_CHARS = 10      # hex digits of SHA-256: 40 bits, no collision among thousands of keys
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _slug(text: str) -> str:
    """Letters, digits, '_' and '-' of `text` (other runs become '_'); never empty, never a flag."""
    return _UNSAFE.sub("_", text).strip("_-")[:SLUG_CHARS] or "x"


def _digest(text: str) -> str:
    # surrogatepass: any Python str hashes, even one holding lone surrogates
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]


def file_stem(key: str) -> str:
    """A file-name stem for `key` (a subject, or 'dataset/subject'): 'sub01-1f3c...'."""
    return f"{_slug(key)}-{_digest(key)}"


def run_checkpoint_dir(checkpoint_dir: Path, run_dir: Path) -> Path:
    """Checkpoint folder of one run: its folder name plus a hash of its resolved path, so two run
    folders of the same name (a/exp1, b/exp1) never share checkpoints."""
    return Path(checkpoint_dir) / f"{_slug(Path(run_dir).name)}-{_digest(str(Path(run_dir).resolve()))}"


def blocking_file(path: Path) -> Path | None:
    """The nearest existing path at or above `path` when it is not a folder (a file stands in
    the way of creating `path`); None when that ancestor is a folder."""
    existing = Path(path)
    while not (existing.exists() or existing.is_symlink()):
        existing = existing.parent
    return None if existing.is_dir() else existing


def write_problem(path: Path) -> str | None:
    """Why files cannot be created in folder `path` (which may not exist yet), or None.

    Probes with a temporary file in the nearest existing folder, since permission bits do
    not tell (root ignores them, a read-only mount does not show in them). Creates nothing.
    """
    blocker = blocking_file(path)
    if blocker is not None:
        return f"{blocker} is a file, not a folder"
    existing = Path(path)
    while not existing.exists():
        existing = existing.parent
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
    except OSError as e:
        return f"cannot create files in {existing} ({e.strerror or e})"
    os.close(fd)
    os.unlink(probe)
    return None


def file_write_problem(path: Path) -> str | None:
    """Why file `path` cannot be written (a folder in its place, its folder not writable), or None."""
    if Path(path).is_dir():
        return "is a folder, not a file"
    return write_problem(Path(path).parent)


SEED_FOLDER_PREFIX = "seed"   # a --seeds run keeps each seed's run folder as <parent>/seed<N>


def seed_folder(parent: Path, seed: int) -> Path:
    """The run folder of one seed of a --seeds run."""
    return parent / f"{SEED_FOLDER_PREFIX}{seed}"


def seed_folders(parent: Path) -> list[Path]:
    """The seed folders (seed<N>) present under `parent`, in seed order."""
    found = [p for p in parent.glob(f"{SEED_FOLDER_PREFIX}*")
             if p.is_dir() and p.name[len(SEED_FOLDER_PREFIX):].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(SEED_FOLDER_PREFIX):]))


def dataset_path(root: Path, relative: str) -> Path:
    """`root / relative` for a path a dataset names (an index.csv cell, a sheet's file name), which must
    stay inside `root`: ValueError, saying why, for an empty, absolute or backslashed path, a '..' part,
    a control character, or a symbolic link that leads out of `root`. The one rule for every path read
    or written from dataset text."""
    if not relative.strip():
        raise ValueError("is empty")
    if not relative.isprintable():
        raise ValueError(f"{relative!r} holds a control character")
    if "\\" in relative:
        raise ValueError(f"{relative!r} holds a backslash (write paths with '/')")
    if relative.startswith("/") or re.match(r"[A-Za-z]:", relative):
        raise ValueError(f"{relative!r} is absolute; a dataset names its files relative to {root}")
    if ".." in relative.split("/"):
        raise ValueError(f"{relative!r} climbs out of {root} with '..'")
    path = Path(root) / relative
    if not path.resolve().is_relative_to(Path(root).resolve()):
        raise ValueError(f"{relative!r} leads out of {root} through a symbolic link")
    return path
