"""Crash-safe file writing: files are written to a temporary name, then renamed.

A run killed at any moment therefore leaves each file either as it was or complete,
never truncated; `--resume` relies on this. Logs are appended one whole line at a time.
A file gets the mode any new file gets (0666 less the umask), so others on a shared disk
read results as they read any other file. A write that fails raises WriteError: an OSError
that is also a data.errors.DataError, whose message names the file, so every command line
prints it as its one `error:` line.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Sequence

import torch
import yaml

from data.errors import DataError
from utils.paths import blocking_file

TEMP_SUFFIX = ".tmp"   # a file being written is `.<name>.<random>.tmp` beside its final name
_UMASK = os.umask(0o022)   # read once (setting it is the only way to read it), then put back
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK


class WriteError(DataError, OSError):
    """A file that cannot be written; the message names it and why (one line)."""


def write_error(path: Path, exc: OSError) -> WriteError:
    """WriteError naming `path` for an OSError met while writing it."""
    if isinstance(exc, WriteError):
        return exc
    blocker = blocking_file(Path(path).parent)
    if blocker is not None:
        return WriteError(f"cannot write {path}: {blocker} is a file, not a folder")
    where = f" ({exc.filename})" if getattr(exc, "filename", None) and str(exc.filename) != str(path) else ""
    return WriteError(f"cannot write {path}: {exc.strerror or error_text(exc)}{where}")


def atomic_write(path: Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Let `write` fill a temporary file beside `path`, then rename it to `path`.

    durable: sync the file to disk before the rename (results); a cache entry, which is
    rebuilt when lost, skips it for speed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        os.fchmod(fd, FILE_MODE)   # mkstemp makes 0600
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from None
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_yaml(path: Path, obj: Any) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def append_jsonl(path: Path, record: dict) -> None:
    """Append one JSON line with a single O_APPEND write.

    Lines from several processes never interleave, and a kill cannot truncate the lines
    already written. This is the one file that grows in place instead of being replaced.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)   # the umask decides, as for any file
        try:
            os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        finally:
            os.close(fd)
    except OSError as exc:
        raise write_error(path, exc) from None


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a file written by append_jsonl; a line cut short by a full disk is passed over."""
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def atomic_torch_save(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def error_text(exc: BaseException) -> str:
    """'Type: first line of the message' of an exception, for one-line error messages."""
    lines = str(exc).strip().splitlines()
    first = lines[0].split(". ")[0] if lines else ""  # some libraries add paragraphs of advice
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
