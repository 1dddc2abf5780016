"""Precomputed motion-map datasets: one motion image (and optionally one face) per sample.

A motion-map folder holds `index.csv` with the columns

    subject,sample,label,motion,face[,motion_2,...,motion_K][,aus][,dataset]

- subject: kept exactly as written ('006', 'sub06' and 's06' are three people). Subjects
  define the LOSO folds.
- dataset: optional name of the dataset a row comes from (e.g. casme2, samm, smic),
  trimmed and case-folded (data.source.dataset_name: 'SAMM' is 'samm'); a blank cell is
  refused when other lines name a dataset. Part
  of the subject's identity, so SAMM's '006' and another dataset's '006' stay two folds;
  when the folder holds several datasets a sample's subject reads 'samm/006' (with one,
  the subject stays '006'). Reports then also give each dataset's figures.
- sample:  the sample's name; (subject, sample) must be unique.
- label:   a class name of the protocol in use (3class: negative, positive, surprise),
           any case. An emotion the protocol maps is accepted too ('disgust' is negative
           under 3class); an emotion the protocol leaves out ('others' under 3class) drops
           the row, counted in `excluded`. Anything else is an error.
- motion:  image path relative to the folder (utils.paths.dataset_path: no absolute path,
           '..', backslash or symbolic link out of the folder): a 3-channel
           colour image of any size, 8 or 16 bit. It is resized to S x S and read as RGB
           scaled to [-1, 1] (0 -> -1, mid-grey -> 0, full -> +1), the signed range the
           writer in data.synthetic uses. A single-channel (grey) image is an error: the
           three channels are distinct motion components, and copying one into all three
           would silently change what the model sees. An alpha channel is dropped.
           A `.npy` motion file instead holds the map's values themselves: a float array
           (float32 as written by `prepare.py export`) of shape (H, W, 3) or (3, H, W)
           (channels last when the last axis has 3 entries), taken as it is, with no
           rescaling; it is resized only when its side differs from S. A .npy of another
           shape or dtype, or with NaN/inf values, is skipped like an unreadable image; one
           whose values pass +-MAX_MAP_VALUE (no motion map's scale comes near) is an error.
- motion_2 ... motion_K: optional further maps of the same sample (another phase of the clip,
           another flow computation), read like `motion`; a sample's maps are stacked in column
           order as 3K channels. Columns come without gaps (motion_3 needs motion_2), every row
           fills every map column, and a sample's map files have one size.
- face:    the sample's (onset) face image, or empty. Grey faces are expanded to RGB.
           Either every row gives a face or none does.
- aus:     optional action units as in the sheets ('4+L10', '12', 'none', blank; SAMM's
           '4D+ref(6)+7C' too, see data.action_units); a stray word is skipped with a
           warning naming the line. 'none' = coded, no AU; a blank cell = not coded (the
           row is left out of the AU loss and of the AU co-occurrence statistics).

A row whose image file is missing or unreadable is skipped with a warning naming the row
and the file; with strict=True it is a DataError (the CASME II reader's convention).
Line numbers in messages count the header as line 1.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from data.action_units import ActionUnit, parse_action_units
from data.errors import DataError, check_map_size
from data.map_reading import file_kind
from data.protocols import KNOWN_EMOTIONS, Protocol, check_enough
from data.release import au_multi_hot
from data.source import DatasetSource, dataset_name
from utils.paths import dataset_path

INDEX_NAME = "index.csv"
REQUIRED = ("subject", "sample", "label", "motion", "face")
OPTIONAL = ("aus", "dataset")
MAX_MAP_VALUE = 1e4   # flow in percent of the face side stays within +-100, differences within +-1
MAP_COLUMN = re.compile(r"motion_([2-9]|[1-9][0-9])")   # motion_2 ... motion_99


def map_column(k: int) -> str:
    """The index.csv column of map k (1-based): motion, motion_2, motion_3, ..."""
    return "motion" if k == 1 else f"motion_{k}"

_WHY = {"missing": "not found", "unreadable": "cannot be read as an image",
        "bad-npy": "cannot be read as a .npy array",
        "not-motion": "is not a finite float array of shape (H, W, 3) or (3, H, W)",
        "not-finite": "holds NaN or infinite values",
        "too-large": f"holds values beyond +-{MAX_MAP_VALUE:g}, far past any motion map's scale"}


@dataclass
class MotionMapData(DatasetSource):
    root: Path
    protocol: Protocol
    subjects: list[str]                  # (N,) 'dataset/subject' with a dataset column, else the subject
    names: list[str]                     # (N,) the `sample` column
    labels: np.ndarray                   # (N,) int64
    aus: list[frozenset[ActionUnit] | None] | None   # (N,), None per uncoded row; None without an aus column
    datasets: list[str]                  # (N,) the `dataset` column ('' without one)
    motion: np.ndarray                   # (N, 3M, S, S) float32: the M chosen maps of each sample, stacked
    face: np.ndarray | None              # (N, 3, S, S) uint8 RGB, None without faces
    warnings: list[str] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)   # emotion -> rows left out
    skipped: list[str] = field(default_factory=list)         # rows skipped (missing files)
    maps: tuple[int, ...] = (1,)         # the map columns used (1-based: 1 = motion, 2 = motion_2, ...)
    map_count: int = 1                   # how many map columns the folder has
    file_kind: str = "png"               # the motion files: 'png' (images), 'npy' or 'mixed'

    def au_multi_hot(self, aus: Sequence[int]) -> np.ndarray:
        """(N, K) float32: 1 where sample n shows AU aus[k] (L/R merged); all 0 without an aus column."""
        return au_multi_hot([a or frozenset() for a in self.aus or [None] * len(self.names)], aus)

    def describe(self) -> list[str]:
        columns = ", ".join(map_column(k) for k in self.maps)
        return [f"motion maps: {self.root}", f"maps per sample: {len(self.maps)} of {self.map_count} ({columns})"]


def is_motion_map_folder(path: Path) -> bool:
    """True when `path` is a folder holding index.csv."""
    path = Path(path)
    return path.is_dir() and (path / INDEX_NAME).is_file()


def _label(text: str, protocol: Protocol) -> int | None:
    """Label index; None for an emotion the protocol leaves out; DataError otherwise."""
    name = text.strip().lower()
    if name in protocol.classes:
        return protocol.classes.index(name)
    mapped = protocol.class_of(name)
    if mapped is not None:
        return protocol.classes.index(mapped)
    if name in KNOWN_EMOTIONS:
        return None
    raise ValueError(name)


def _read_image(path: Path, colour: bool) -> np.ndarray | str:
    """(H, W, 3) RGB float in [0, 1], or why not: 'missing', 'unreadable', 'grey'.

    colour=True: a single-channel image is refused ('grey'); False: it is expanded to RGB.
    """
    if not path.is_file():
        return "missing"   # checked first: cv2.imread would also print its own warning
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        return "unreadable"
    scale = float(np.iinfo(img.dtype).max) if np.issubdtype(img.dtype, np.integer) else 1.0
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        if colour:
            return "grey"
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = img[..., :3]   # drop alpha
    rgb = img[..., ::-1].astype(np.float32) / scale
    return rgb if np.isfinite(rgb).all() else "not-finite"   # a float TIFF may hold NaN


def _read_motion(path: Path, size: int) -> np.ndarray | str:
    """(3, size, size) float32 motion map, or why not (_read_image's reasons, 'bad-npy', 'not-motion').

    An image is read as RGB scaled to [-1, 1]; a .npy file's values are kept as they are.
    """
    raw = _read_motion_file(path)
    return raw if isinstance(raw, str) else _fit_motion(raw, path, size)


def _read_motion_file(path: Path) -> np.ndarray | str:
    """The motion file as stored: an image (H, W, 3) RGB in [0, 1], a .npy (3, H, W); or why not."""
    if path.suffix.lower() != ".npy":
        return _read_image(path, colour=True)
    if not path.is_file():
        return "missing"
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return "bad-npy"
    if arr.ndim != 3 or not np.issubdtype(arr.dtype, np.floating) or 3 not in (arr.shape[0], arr.shape[2]):
        return "not-motion"
    chw = arr.astype(np.float32) if arr.shape[2] != 3 else arr.astype(np.float32).transpose(2, 0, 1)
    if not np.isfinite(chw).all():
        return "not-motion"
    return "too-large" if np.abs(chw).max() > MAX_MAP_VALUE else chw


def _stored_size(raw: np.ndarray, path: Path) -> tuple[int, int]:
    """(H, W) of a motion file as _read_motion_file returned it."""
    return raw.shape[1:] if path.suffix.lower() == ".npy" else raw.shape[:2]


def _fit_motion(raw: np.ndarray, path: Path, size: int) -> np.ndarray:
    """(3, size, size) float32 map of a stored motion file (see _read_motion)."""
    if path.suffix.lower() != ".npy":
        return _resize(raw, size) * 2.0 - 1.0
    if raw.shape[1:] == (size, size):
        return np.ascontiguousarray(raw)                                   # exact values, no resampling
    return _resize(raw.transpose(1, 2, 0), size)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) -> (3, size, size); area averaging when shrinking, linear when growing."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if size <= min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(img), (size, size), interpolation=interp)
    return out.transpose(2, 0, 1)


def _read_index(index: Path) -> list[tuple[int, list[str]]]:
    """The non-blank lines of index.csv as (line number, cells)."""
    try:
        with index.open(newline="", encoding="utf-8-sig") as fh:   # -sig: Excel's BOM
            reader = csv.reader(fh)
            table = [(line, cells) for line, cells in enumerate(reader, 1)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{index}: cannot read ({type(exc).__name__}: {exc})") from None
    table = [(line, cells) for line, cells in table if any(c.strip() for c in cells)]
    if not table:
        raise DataError(f"{index}: the file is empty")
    return table


def _index_columns(index: Path, header_line: int, header: list[str]) -> dict[str, int]:
    """Column name -> cell index of index.csv's header; DataError for a missing or repeated column
    or a gap among the map columns."""
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower()
        if key in REQUIRED + OPTIONAL or MAP_COLUMN.fullmatch(key):
            if key in columns:
                raise DataError(f"{index} line {header_line}: column '{key}' appears twice")
            columns[key] = i
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(f"{index} line {header_line}: missing column(s) {', '.join(missing)} "
                        f"(needs {','.join(REQUIRED)}, optional {','.join(OPTIONAL)}; "
                        f"found: {', '.join(h.strip() for h in header if h.strip()) or 'nothing'})")
    count = _map_count(columns)
    gap = sorted(c for c in columns if MAP_COLUMN.fullmatch(c) and int(c.split("_")[1]) > count)
    if gap:
        raise DataError(f"{index} line {header_line}: column '{gap[0]}' without '{map_column(count + 1)}'; "
                        f"map columns run motion, motion_2, motion_3, ... without gaps")
    return columns


def _map_count(columns: dict[str, int]) -> int:
    """How many map columns run without a gap from `motion`."""
    count = 1
    while map_column(count + 1) in columns:
        count += 1
    return count


def _chosen_maps(index: Path, count: int, maps: Sequence[int] | None) -> tuple[int, ...]:
    """The map columns a run reads (1-based); every one of the folder's when `maps` is None."""
    if maps is None:
        return tuple(range(1, count + 1))
    beyond = [k for k in maps if not 1 <= k <= count]
    if beyond:
        raise DataError(f"--maps {','.join(map(str, maps))}: {index} has {count} map column(s) "
                        f"({', '.join(map_column(k) for k in range(1, count + 1))}), no map {beyond[0]}")
    return tuple(maps)


def _index_records(index: Path, table: list[tuple[int, list[str]]], columns: dict[str, int], protocol: Protocol,
                   header_line: int, maps: tuple[int, ...]) -> tuple[list[tuple], Counter[str], list[str], bool]:
    """(records, emotions left out by the protocol, AU warnings, whether lines give faces) of index.csv's lines.

    A record: (line, subject, name, label, aus, motion paths of the chosen maps, face path or None, dataset).
    """
    root = index.parent
    has_aus = "aus" in columns
    records = []   # (line, subject, name, label, aus, motion paths, face path or None, dataset)
    map_columns = [map_column(k) for k in maps]
    excluded: Counter[str] = Counter()
    aus_warnings: list[str] = []   # stray words skipped in the aus column
    seen: dict[tuple[str, str], int] = {}
    with_face: list[int] = []
    without_face: list[int] = []
    named: list[int] = []       # lines naming a dataset
    unnamed: list[int] = []     # lines with a blank dataset cell
    for line, cells in table[1:]:
        value = {c: (cells[i].strip() if i < len(cells) else "") for c, i in columns.items()}
        where = f"{index} line {line}"
        for col in ("subject", "sample", "label", *map_columns):
            if not value[col]:
                raise DataError(f"{where}: blank '{col}'")
        for col in ("subject", "sample"):  # names reach messages and logs: one line each
            if not value[col].isprintable():
                raise DataError(f"{where}: '{col}' {value[col]!r} holds a control character")
        dataset = _cell_dataset(value, where)
        (named if dataset else unnamed).append(line)
        subject = f"{dataset}/{value['subject']}" if dataset else value["subject"]   # identity while reading
        name = value["sample"]
        try:
            label = _label(value["label"], protocol)
        except ValueError:
            raise DataError(f"{where} ({subject} {name}): label {value['label']!r} is not a class of "
                            f"protocol {protocol.name} ({', '.join(protocol.classes)})") from None
        if (subject, name) in seen:
            raise DataError(f"{index}: lines {seen[(subject, name)]} and {line} both describe "
                            f"{subject} {name}")
        seen[(subject, name)] = line
        aus_where = f"{where}, column 'aus' ({subject} {name})"
        try:
            aus = (parse_action_units(value["aus"], lambda w: aus_warnings.append(f"{aus_where}: {w}"))
                   if has_aus and value["aus"] else None)
        except DataError as exc:
            raise DataError(f"{aus_where}: {exc}") from None
        (with_face if value["face"] else without_face).append(line)
        if label is None:
            excluded[value["label"].strip().lower()] += 1
            continue
        motion_paths = tuple(_cell_path(root, value, column, where) for column in map_columns)
        records.append((line, subject, name, label, aus, motion_paths,
                        _cell_path(root, value, "face", where) if value["face"] else None, dataset))
    if not seen:
        raise DataError(f"{index}: no data lines below the header (line {header_line})")
    # a nameless part would hold subjects that may be another part's
    _check_every_or_none(index, "dataset", named, unnamed, "name the dataset")
    _check_every_or_none(index, "face", with_face, without_face, "give a face")
    return records, excluded, aus_warnings, bool(with_face)


def _check_every_or_none(index: Path, column: str, given: list[int], blank: list[int], advice: str) -> None:
    """DataError when some lines fill `column` and others leave it blank (line numbers in `given`, `blank`)."""
    if given and blank:
        raise DataError(f"{index} line {blank[0]}: blank '{column}' while line {given[0]} gives one; "
                        f"{advice} on every line or on none")


def _cell_dataset(value: dict[str, str], where: str) -> str:
    """The line's dataset name (data.source.dataset_name), '' without a dataset column or in a blank cell."""
    try:
        return dataset_name(value.get("dataset", ""))
    except ValueError as exc:
        raise DataError(f"{where}: 'dataset' {exc}") from None


def _cell_path(root: Path, value: dict[str, str], column: str, where: str) -> Path:
    """The file a line's `column` names, inside the folder (utils.paths.dataset_path)."""
    try:
        return dataset_path(root, value[column])
    except ValueError as exc:
        raise DataError(f"{where}: '{column}' {exc}") from None


def _read_sample_maps(where: str, paths: tuple[Path, ...], columns: list[str], img_size: int
                      ) -> np.ndarray | str:
    """(3M, S, S) float32: a sample's maps stacked in column order; or why one cannot be read.
    DataError for a grey map or maps of different sizes."""
    stored = []
    for path, column in zip(paths, columns):
        raw = _read_motion_file(path)
        if isinstance(raw, str) and raw == "grey":
            raise DataError(f"{where}: motion image {path} has a single (grey) channel; "
                            f"motion maps need 3 channels")
        if isinstance(raw, str) and raw == "too-large":   # not a damaged file to pass over: wrong data
            raise DataError(f"{where}: motion file {path} {_WHY[raw]}")
        if isinstance(raw, str):
            return f"motion image {path} {_WHY[raw]}"
        stored.append(raw)
        first, size = _stored_size(stored[0], paths[0]), _stored_size(raw, path)
        if size != first:
            raise DataError(f"{where}: '{column}' map {path} is {size[0]}x{size[1]} but '{columns[0]}' "
                            f"is {first[0]}x{first[1]}; a sample's maps must have one size")
    return np.concatenate([_fit_motion(raw, path, img_size) for raw, path in zip(stored, paths)])


def _read_images(index: Path, records: list[tuple], img_size: int, use_face: bool, strict: bool,
                 maps: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None, list[int], list[str]]:
    """(motion (N, 3M, S, S), faces (N, 3, S, S) or None, indices of the records kept, skip messages)."""
    n_max = len(records)
    columns = [map_column(k) for k in maps]
    motion = np.empty((n_max, 3 * len(maps), img_size, img_size), np.float32)   # (N, 3M, S, S)
    face = np.empty((n_max, 3, img_size, img_size), np.uint8) if use_face else None
    kept: list[int] = []
    skipped: list[str] = []
    for k, (line, subject, name, _label_, _aus, motion_paths, face_path, _dataset) in enumerate(records):
        where = f"{index} line {line} ({subject} {name})"
        problem = None
        img = _read_sample_maps(where, motion_paths, columns, img_size)
        if isinstance(img, str):
            problem = img
        else:
            motion[k] = img
        if problem is None and face_path is not None:
            face_img = _read_image(face_path, colour=False)
            if isinstance(face_img, str):
                problem = f"face image {face_path} {_WHY[face_img]}"
            else:
                face[k] = np.clip(_resize(face_img, img_size) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        if problem:
            if strict:
                raise DataError(f"{where}: {problem}")
            skipped.append(f"{where}: {problem}; skipped")
            continue
        kept.append(k)

    if len(kept) < n_max:
        motion = motion[kept]
        face = face[kept] if face is not None else None
    return motion, face, kept, skipped


def load_motion_maps(root: Path, protocol: Protocol, *, img_size: int, strict: bool = False,
                     maps: Sequence[int] | None = None) -> MotionMapData:
    """Read a motion-map folder: index.csv plus its images, resized to img_size.

    `maps`: the map columns to read (1-based: 1 = motion, 2 = motion_2, ...), stacked in that
    order; None reads every map column the folder has.
    Raises DataError with one line naming the file and line on bad input.
    """
    root = Path(root)
    if root.is_file() and root.name == INDEX_NAME:
        root = root.parent
    index = root / INDEX_NAME
    if not root.is_dir():
        raise DataError(f"motion-map folder {root}: not found")
    if not index.is_file():
        raise DataError(f"motion-map folder {root}: no {INDEX_NAME}")
    check_map_size("--img-size", img_size)
    table = _read_index(index)
    header_line, header = table[0]
    columns = _index_columns(index, header_line, header)
    chosen_maps = _chosen_maps(index, _map_count(columns), maps)
    records, excluded, aus_warnings, use_face = _index_records(index, table, columns, protocol, header_line,
                                                               chosen_maps)
    motion, face, kept, skipped = _read_images(index, records, img_size, use_face, strict, chosen_maps)

    chosen = [records[k] for k in kept]
    if len({r[7] for r in records}) == 1:   # one dataset: its name adds nothing to who a subject is
        chosen = [(*r[:1], r[1].split("/", 1)[-1] if r[7] else r[1], *r[2:]) for r in chosen]
    subjects = [r[1] for r in chosen]
    labels = [r[3] for r in chosen]
    context = f"in {index}" + (f" after skipping {len(skipped)} line(s) with missing images"
                               if skipped else "")
    check_enough(labels, subjects, protocol, context)
    warnings = aus_warnings + skipped
    if excluded:
        warnings.append(f"{index}: left out by protocol {protocol.name}: "
                        + ", ".join(f"{k} {v}" for k, v in sorted(excluded.items())))
    return MotionMapData(
        root=root, protocol=protocol, subjects=subjects, names=[r[2] for r in chosen],
        labels=np.array(labels, dtype=np.int64), aus=[r[4] for r in chosen] if "aus" in columns else None,
        datasets=[r[7] for r in chosen], motion=motion, face=face, warnings=warnings,
        excluded=dict(sorted(excluded.items())), skipped=skipped, maps=chosen_maps, map_count=_map_count(columns),
        file_kind=file_kind([path for r in chosen for path in r[5]]))
