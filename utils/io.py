"""Crash-safe file writing: files are written to a temporary name, then renamed.

A run killed at any moment therefore leaves each file either as it was or complete,
never truncated; `--resume` relies on this. Logs are appended one whole line at a time.
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


TEMP_SUFFIX = ".tmp"   # a file being written is `.<name>.<random>.tmp` beside its final name


def atomic_write(path: Path, write: Callable[[BinaryIO], None], durable: bool = True) -> None:
    """Let `write` fill a temporary file beside `path`, then rename it to `path`.

    durable: sync the file to disk before the rename (results); a cache entry, which is
    rebuilt when lost, skips it for speed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
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
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


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
