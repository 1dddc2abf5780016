"""Reading the CASME II annotation sheet (`CASME2-coding-*.xlsx` or `data.xlsx`).

Both official versions load: the 2014 sheet (246 rows, `none` in Action Units, a blank
last column) and the 2019 sheet (255 rows, an `Objective Classes` column, `/` as one apex).
Columns are found by header name (case and spaces ignored), blank-header columns are
skipped, and only `Sheet1` is read (the first sheet when there is no `Sheet1`).

A sample is identified by (subject, filename): the same filename occurs under several
subjects, so a repeated (subject, filename) pair is an error, a repeated filename is not.

Apex fallback: where the sheet gives `/` as the apex frame, `SheetRow.apex` is None and a
warning is issued; a sheet without an ApexFrame column gives None on every row, with one
warning. Preprocessing then spots the apex among the clip's frames (data.apex).

Action Units cells are parsed by data.action_units (SAMM's codes too); a stray word in
one is skipped with a warning naming the row.

Row numbers in messages are the ones Excel shows (the header is row 1).
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from data.action_units import ActionUnit, parse_action_units
from data.errors import DataError
from data.layout import MAX_FRAME

T = TypeVar("T")

SHEET_PATTERN = "CASME2-coding-*.xlsx"
SIMPLE_SHEET = "data.xlsx"

# canonical header -> key used internally; headers are compared without case/whitespace.
REQUIRED_COLUMNS = {
    "Subject": "subject",
    "Filename": "filename",
    "OnsetFrame": "onset",
    "ApexFrame": "apex",
    "OffsetFrame": "offset",
    "Action Units": "aus",
    "Estimated Emotion": "emotion",
}
OPTIONAL_COLUMNS = frozenset({"ApexFrame"})   # without it every apex is spotted (data.apex)

_SUBJECT = re.compile(r"^(?:sub)?\s*0*(\d+)$", re.IGNORECASE)
_UNNAMED = re.compile(r"^unnamed:\s*\d+$", re.IGNORECASE)


@dataclass(frozen=True)
class SheetRow:
    row: int                          # spreadsheet row number as Excel shows it (header = 1)
    subject: str                      # always 'subNN'
    filename: str                     # as written ('EP02_01f', 'EP06_02_01', ...)
    onset: int
    apex: int | None                  # None where the sheet says '/' or has no ApexFrame column
    offset: int
    aus: frozenset[ActionUnit]        # parsed by data.action_units
    emotion: str                      # lower case, stripped

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject, self.filename)


def _is_blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def normalise_subject(value: object) -> str:
    """'01', 1, 1.0, 'sub01' -> 'sub01'. Raises DataError for anything else."""
    if isinstance(value, bool) or _is_blank(value):
        raise DataError(f"unreadable subject {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise DataError(f"unreadable subject {value!r}")
        value = int(value)
    match = _SUBJECT.match(str(value).strip())
    if not match:
        raise DataError(f"unreadable subject {value!r}")
    return f"sub{int(match.group(1)):02d}"


def find_sheet(raf_path: Path, sheet: Path | None = None) -> Path:
    """Locate the annotation sheet.

    An explicit `sheet` wins. Otherwise look in `raf_path` for `CASME2-coding-*.xlsx`, then
    `data.xlsx`; then one folder level down; then, when `raf_path` is itself the folder
    holding subNN/ (e.g. `.../Cropped`), in its parent and grandparent. Where several
    official sheets sit together the latest by name (date) is taken.
    """
    if sheet is not None:
        sheet = Path(sheet)
        if not sheet.is_file():
            raise DataError(f"--sheet {sheet}: file not found")
        return sheet
    raf_path = Path(raf_path)
    if not raf_path.is_dir():
        raise DataError(f"--raf_path {raf_path}: not an existing folder")

    def in_folder(folder: Path) -> Path | None:
        official = sorted(p for p in folder.glob(SHEET_PATTERN)
                          if p.is_file() and not p.name.startswith("~$"))
        if official:
            return official[-1]
        simple = folder / SIMPLE_SHEET
        return simple if simple.is_file() else None

    found = in_folder(raf_path)
    if found:
        return found
    for sub in sorted(p for p in raf_path.iterdir() if p.is_dir()):
        found = in_folder(sub)
        if found:
            return found
    if any(p.is_dir() and re.fullmatch(r"sub\d+", p.name) for p in raf_path.iterdir()):
        for up in (raf_path.resolve().parent, raf_path.resolve().parent.parent):
            found = in_folder(up)
            if found:
                return found
    raise DataError(f"no annotation sheet in {raf_path}: looked for {SHEET_PATTERN} or "
                    f"{SIMPLE_SHEET} (also one folder down); give it with --sheet")


def _header_key(text: str) -> str:
    return re.sub(r"[\s_\-]+", "", text).lower()


def _parse_cell(parse: Callable[[object], T], value: object, where: str) -> T:
    """parse(value), with a DataError's message prefixed by where the cell is."""
    try:
        return parse(value)
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def _frame(value: object, where: str) -> int:
    if isinstance(value, bool) or _is_blank(value):
        raise DataError(f"{where}: expected a frame number, got {'a blank cell' if _is_blank(value) else repr(value)}")
    number = None
    if isinstance(value, (int, float)) and math.isfinite(value) and float(value).is_integer() and value >= 0:
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= len(str(MAX_FRAME)):
        number = int(value.strip())
    if number is None or number > MAX_FRAME:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise DataError(f"{where}: expected a frame number from 0 to {MAX_FRAME}, got {shown}")
    return number


def _open_rows(path: Path) -> list[tuple[int, tuple[object, ...]]]:
    """(Excel row number, cell values) of Sheet1, or of the first sheet without Sheet1."""
    import openpyxl  # imported here: only needed when a sheet is actually read

    if not path.is_file():
        raise DataError(f"sheet {path}: file not found")
    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for corrupt/non-xlsx files
        raise DataError(f"sheet {path}: cannot read as .xlsx ({type(exc).__name__}: {exc})") from None
    try:
        if not book.sheetnames:
            raise DataError(f"sheet {path}: the workbook has no sheets")
        ws = book["Sheet1"] if "Sheet1" in book.sheetnames else book[book.sheetnames[0]]
        # read-only sheets may carry stale dimensions; start counting at row 1 explicitly.
        ws.reset_dimensions()
        return [(i, tuple(r)) for i, r in enumerate(ws.iter_rows(min_row=1, values_only=True), 1)]
    finally:
        book.close()


def find_header(path: Path, raw: list[tuple[int, tuple[object, ...]]]) -> tuple[int, int, dict[str, int]]:
    """(index in `raw` of the header, its Excel row, column name -> cell index) of a sheet's rows.

    The header is the first row with any content (normally row 1).
    """
    start = next((k for k, (_, cells) in enumerate(raw)
                  if any(not _is_blank(c) for c in cells)), None)
    if start is None:
        raise DataError(f"sheet {path}: the sheet is empty")
    header_row, header = raw[start]
    columns: dict[str, int] = {}
    wanted = {_header_key(h): h for h in REQUIRED_COLUMNS}
    for idx, cell in enumerate(header):
        if _is_blank(cell) or _UNNAMED.match(str(cell).strip()):
            continue  # blank-header spacer columns
        canonical = wanted.get(_header_key(str(cell)))
        if canonical is None:
            continue  # extra columns such as 'Objective Classes'
        if canonical in columns:
            raise DataError(f"sheet {path}: column '{canonical}' appears twice in the header (row {header_row})")
        columns[canonical] = idx
    for canonical in REQUIRED_COLUMNS:
        if canonical not in columns and canonical not in OPTIONAL_COLUMNS:
            present = [str(c).strip() for c in header if not _is_blank(c)]
            raise DataError(f"sheet {path}: required column '{canonical}' not found in the header "
                            f"(row {header_row}; found: {', '.join(present) or 'nothing'})")
    return start, header_row, columns


def parse_row(name: str, excel_row: int, values: dict, has_apex_column: bool, warnings: list[str]) -> SheetRow:
    """One data row of sheet `name` (`values`: column name -> cell); its warnings are appended to `warnings`."""
    def where(col: str) -> str:
        return f"{name} row {excel_row}, column '{col}'"

    subject = _parse_cell(normalise_subject, values["Subject"], where("Subject"))
    if _is_blank(values["Filename"]):
        raise DataError(f"{where('Filename')}: blank filename")
    filename = str(values["Filename"]).strip()
    onset = _frame(values["OnsetFrame"], where("OnsetFrame"))
    offset = _frame(values["OffsetFrame"], where("OffsetFrame"))
    apex_cell = values.get("ApexFrame", "/")   # no ApexFrame column: as if '/' everywhere
    if isinstance(apex_cell, str) and apex_cell.strip() == "/":
        apex = None
        if has_apex_column:
            warnings.append(f"{name} row {excel_row} ({subject} {filename}): ApexFrame is '/'; "
                            f"the apex will be spotted from the clip's frames")
    else:
        apex = _frame(apex_cell, where("ApexFrame"))
    if onset > offset:
        raise DataError(f"{name} row {excel_row} ({subject} {filename}): OnsetFrame {onset} "
                        f"is after OffsetFrame {offset}")
    if apex is not None and not onset <= apex <= offset:
        raise DataError(f"{where('ApexFrame')} ({subject} {filename}): apex {apex} is outside "
                        f"onset..offset {onset}..{offset}")
    aus_where = f"{where('Action Units')} ({subject} {filename})"

    def warn_aus(message: str) -> None:   # a skipped stray word, named with its row
        warnings.append(f"{aus_where}: {message}")

    aus = _parse_cell(lambda cell: parse_action_units(cell, warn_aus), values["Action Units"], aus_where)
    if _is_blank(values["Estimated Emotion"]):
        raise DataError(f"{where('Estimated Emotion')} ({subject} {filename}): blank emotion")
    emotion = str(values["Estimated Emotion"]).strip().lower()
    return SheetRow(excel_row, subject, filename, onset, apex, offset, aus, emotion)


def read_sheet(path: Path) -> tuple[list[SheetRow], list[str]]:
    """Read the annotation sheet. Returns (rows in sheet order, warnings).

    Raises DataError with a one-line message naming the file, row and column on bad input.
    """
    path = Path(path)
    raw = _open_rows(path)
    start, header_row, columns = find_header(path, raw)
    rows: list[SheetRow] = []
    warnings: list[str] = []
    if "ApexFrame" not in columns:
        warnings.append(f"sheet {path}: no ApexFrame column; every apex will be spotted from "
                        f"the clip's frames")
    seen: dict[tuple[str, str], int] = {}
    for excel_row, cells in raw[start + 1:]:
        values = {c: (cells[i] if i < len(cells) else None) for c, i in columns.items()}
        if all(_is_blank(v) for v in values.values()):
            continue  # entirely blank row
        row = parse_row(path.name, excel_row, values, "ApexFrame" in columns, warnings)
        key = (row.subject, row.filename)
        if key in seen:
            raise DataError(f"{path.name}: rows {seen[key]} and {excel_row} both describe "
                            f"{row.subject} {row.filename}")
        seen[key] = excel_row
        rows.append(row)
    if not rows:
        raise DataError(f"sheet {path}: no data rows below the header (row {header_row})")
    return rows, warnings
