"""Precomputed motion-map datasets: one motion image (and optionally one face) per sample.

A motion-map folder holds `index.csv` with the columns

    subject,sample,label,motion,face[,aus][,dataset]

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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from data.action_units import ActionUnit, parse_action_units
from data.errors import DataError, check_map_size
from data.map_reading import file_kind
from data.protocols import KNOWN_EMOTIONS, Protocol, check_enough
from data.release import au_multi_hot
from data.source import DatasetSource, dataset_name
from utils.paths import dataset_path

if TYPE_CHECKING:
    from data.arrays import ModelArrays

INDEX_NAME = "index.csv"
REQUIRED = ("subject", "sample", "label", "motion", "face")
OPTIONAL = ("aus", "dataset")
MAX_MAP_VALUE = 1e4   # flow in percent of the face side stays within +-100, differences within +-1
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
    motion: np.ndarray                   # (N, 3, S, S) float32 in [-1, 1]
    face: np.ndarray | None              # (N, 3, S, S) uint8 RGB, None without faces
    warnings: list[str] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)   # emotion -> rows left out
    skipped: list[str] = field(default_factory=list)         # rows skipped (missing files)
    file_kind: str = "png"               # the motion files: 'png' (images), 'npy' or 'mixed'

    def au_multi_hot(self, aus: Sequence[int]) -> np.ndarray:
        """(N, K) float32: 1 where sample n shows AU aus[k] (L/R merged); all 0 without an aus column."""
        return au_multi_hot([a or frozenset() for a in self.aus or [None] * len(self.names)], aus)

    def describe(self) -> list[str]:
        return [f"motion maps: {self.root}"]

    def model_arrays(self, *, motion: str, img_size: int, cache_dir: Path | None, workers: int, strict: bool,
                     progress: bool) -> "ModelArrays":
        """The maps as they are: loading already sized them; nothing is cached."""
        from data.arrays import motion_map_arrays  # data.arrays builds on this module
        return motion_map_arrays(self, motion=motion)

    def fingerprint_settings(self, motion: str) -> dict:
        return {"dataset": "motion maps"}

    def provenance(self) -> dict:
        from utils.model_file import maps_export  # it reads the export.json data.export writes
        return {"export": maps_export(self.root)}   # how the maps were made, when prepare.py wrote them


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
    if path.suffix.lower() != ".npy":
        img = _read_image(path, colour=True)
        return img if isinstance(img, str) else _resize(img, size) * 2.0 - 1.0
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
    if np.abs(chw).max() > MAX_MAP_VALUE:
        return "too-large"
    if chw.shape[1:] == (size, size):
        return np.ascontiguousarray(chw)                                   # exact values, no resampling
    return _resize(chw.transpose(1, 2, 0), size)


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
    """Column name -> cell index of index.csv's header; DataError for a missing or repeated column."""
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower()
        if key in REQUIRED + OPTIONAL:
            if key in columns:
                raise DataError(f"{index} line {header_line}: column '{key}' appears twice")
            columns[key] = i
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise DataError(f"{index} line {header_line}: missing column(s) {', '.join(missing)} "
                        f"(needs {','.join(REQUIRED)}, optional {','.join(OPTIONAL)}; "
                        f"found: {', '.join(h.strip() for h in header if h.strip()) or 'nothing'})")
    return columns


def _index_records(index: Path, table: list[tuple[int, list[str]]], columns: dict[str, int], protocol: Protocol,
                   header_line: int) -> tuple[list[tuple], Counter[str], list[str], bool]:
    """(records, emotions left out by the protocol, AU warnings, whether lines give faces) of index.csv's lines.

    A record: (line, subject, name, label, aus, motion path, face path or None, dataset).
    """
    root = index.parent
    has_aus = "aus" in columns
    records = []   # (line, subject, name, label, aus, motion path, face path or None)
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
        for col in ("subject", "sample", "label", "motion"):
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
        records.append((line, subject, name, label, aus, _cell_path(root, value, "motion", where),
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


def _read_images(index: Path, records: list[tuple], img_size: int, use_face: bool, strict: bool
                 ) -> tuple[np.ndarray, np.ndarray | None, list[int], list[str]]:
    """(motion (N, 3, S, S), faces (N, 3, S, S) or None, indices of the records kept, skip messages)."""
    n_max = len(records)
    motion = np.empty((n_max, 3, img_size, img_size), np.float32)            # (N, 3, S, S)
    face = np.empty((n_max, 3, img_size, img_size), np.uint8) if use_face else None
    kept: list[int] = []
    skipped: list[str] = []
    for k, (line, subject, name, _label_, _aus, motion_path, face_path, _dataset) in enumerate(records):
        where = f"{index} line {line} ({subject} {name})"
        problem = None
        img = _read_motion(motion_path, img_size)
        if isinstance(img, str) and img == "grey":
            raise DataError(f"{where}: motion image {motion_path} has a single (grey) channel; "
                            f"motion maps need 3 channels")
        if isinstance(img, str) and img == "too-large":   # not a damaged file to pass over: wrong data
            raise DataError(f"{where}: motion file {motion_path} {_WHY[img]}")
        if isinstance(img, str):
            problem = f"motion image {motion_path} {_WHY[img]}"
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


def load_motion_maps(root: Path, protocol: Protocol, *, img_size: int,
                     strict: bool = False) -> MotionMapData:
    """Read a motion-map folder: index.csv plus its images, resized to img_size.

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
    records, excluded, aus_warnings, use_face = _index_records(index, table, columns, protocol, header_line)
    motion, face, kept, skipped = _read_images(index, records, img_size, use_face, strict)

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
        excluded=dict(sorted(excluded.items())), skipped=skipped, file_kind=file_kind([r[5] for r in chosen]))
