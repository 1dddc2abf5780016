"""Several motion-map folders as one composite folder (one LOSO over every subject, figures per dataset).

Each source folder is copied under `<out>/<name>/` as it is (only the files its index names), its
index rows are prefixed with `<name>/` and get a `dataset` cell `<name>`; the composite's index.csv
is written last, so an interrupted combine leaves no folder a run could read. Images are copied,
not linked: the reader refuses links, which could lead out of the folder.
"""
from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

from data.errors import DataError
from data.motion_maps import INDEX_NAME, MAP_COLUMN, OPTIONAL, REQUIRED
from utils.io import write_csv
from utils.paths import dataset_path

DATASET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")   # a folder name on every system, no '/'


def _path_columns(header: list[str]) -> list[str]:
    """The columns that name files: motion, motion_2 ..., face."""
    return [c for c in header if c in ("motion", "face") or MAP_COLUMN.fullmatch(c)]


def _read_source(root: Path) -> tuple[list[str], list[dict[str, str]]]:
    index = root / INDEX_NAME
    if not index.is_file():
        raise DataError(f"{root}: no {INDEX_NAME} (not a motion-map folder)")
    with index.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in reader.fieldnames or []]
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise DataError(f"{index}: no {', '.join(missing)} column")
    if "dataset" in header:
        raise DataError(f"{index}: already a composite (a dataset column); combine its parts instead")
    unknown = [c for c in header if c not in REQUIRED and c not in OPTIONAL and not MAP_COLUMN.fullmatch(c)]
    if unknown:
        raise DataError(f"{index}: unknown column {unknown[0]!r}")
    return header, rows


def combine_folders(sources: list[tuple[str, Path]], out: Path) -> int:
    """Write the composite of `sources` ((dataset name, motion-map folder) pairs) to `out`, which
    must be new or empty; returns the number of rows. DataError, naming the file, row or name,
    on bad input, before anything is written."""
    out = Path(out)
    names = [name for name, _ in sources]
    for name in names:
        if not DATASET_NAME.fullmatch(name):
            raise DataError(f"dataset name {name!r}: use lower-case letters, digits, '-' or '_' (it names a folder)")
    if len(set(names)) != len(names) or len(names) < 2:
        raise DataError(f"give two or more sources with distinct names, got {', '.join(names)}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: exists and is not an empty folder")
    read = {name: _read_source(Path(root)) for name, root in sources}
    map_sets = {name: _path_columns(header) for name, (header, _) in read.items()}
    if len({frozenset(cols) for cols in map_sets.values()}) > 1:
        given = "; ".join(f"{name}: {', '.join(cols)}" for name, cols in map_sets.items())
        raise DataError(f"the sources give different map columns ({given}); combine folders with the same map columns")
    copies = []   # (source file, file in out) pairs, all checked before one is copied
    for name, root in sources:
        for line, row in enumerate(read[name][1], start=2):
            for column in map_sets[name]:
                if not row.get(column):
                    continue   # a blank face is the reader's to judge
                try:
                    source = dataset_path(Path(root), row[column])
                except ValueError as e:
                    raise DataError(f"{Path(root) / INDEX_NAME} line {line}, {column}: {e}") from None
                if not source.is_file():
                    raise DataError(f"{Path(root) / INDEX_NAME} line {line}, {column}: {row[column]} not found")
                copies.append((source, out / name / row[column]))
                row[column] = f"{name}/{row[column]}"
            row["dataset"] = name
    for source, target in copies:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    extra_maps = sorted((c for c in map_sets[names[0]] if MAP_COLUMN.fullmatch(c)), key=_map_number)
    has_aus = any("aus" in header for header, _ in read.values())
    header = list(REQUIRED) + extra_maps + (["aus"] if has_aus else []) + ["dataset"]
    rows = [row for name in names for row in read[name][1]]
    write_csv(out / INDEX_NAME, header, ([row.get(c, "") for c in header] for row in rows))
    return len(rows)


def _map_number(column: str) -> int:
    return int(column.split("_")[1])
