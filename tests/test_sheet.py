"""Annotation sheet reading: AU cells, both official sheet versions, and every bad input."""
from __future__ import annotations

import math
from pathlib import Path

import openpyxl
import pandas as pd
import pytest

from data.action_units import ActionUnit
from data.errors import DataError
from data.sheet import find_sheet, normalise_subject, parse_action_units, read_sheet

ROWS_2019 = [
    ("01", "EP02_01f", 46, 59, 86, 12, "happiness"),
    ("01", "EP19_05f", 396, 416, 446, "4+7+L10", "disgust"),
    ("02", "EP06_02_01", 10, 20, 40, "R12", "Others"),
    ("04", "EP12_01f", 100, "/", 170, "L1+L2", " Disgust "),
    ("05", "EP09_05f", 30, 30, 60, "4+38", "fear"),
]
ROWS_2014 = [
    (1, "EP02_01f", 46, 59, 86, 12, "happiness"),
    (1, "EP09f", 5, 9, 33, "none", "others"),
    (4, "EP12_01f", 250, 291, 320, 12.0, "repression"),
]


# ---- Action Units ----------------------------------------------------------------------

@pytest.mark.parametrize("cell, expected", [
    (12, {ActionUnit(12)}),
    (12.0, {ActionUnit(12)}),
    ("12", {ActionUnit(12)}),
    ("4+7+L10", {ActionUnit(4), ActionUnit(7), ActionUnit(10, "L")}),
    ("R12", {ActionUnit(12, "R")}),
    ("L1+L2", {ActionUnit(1, "L"), ActionUnit(2, "L")}),
    ("4+38", {ActionUnit(4), ActionUnit(38)}),
    (" 4 + r14 ", {ActionUnit(4), ActionUnit(14, "R")}),
    ("AU12", {ActionUnit(12)}),
    ("none", set()),
    ("None", set()),
    ("", set()),
    (None, set()),
    (math.nan, set()),
])
def test_parse_action_units(cell, expected):
    assert parse_action_units(cell) == frozenset(expected)


@pytest.mark.parametrize("cell, token", [
    ("4+X5", "X5"), ("4+", ""), ("12.5", "12.5"), ("L", "L"), ("LR4", "LR4"), ("4-7", "4-7"),
])
def test_parse_action_units_rejects_bad_tokens(cell, token):
    with pytest.raises(DataError, match=repr(token).replace("+", r"\+").replace(".", r"\.")):
        parse_action_units(cell)


@pytest.mark.parametrize("cell", [12.5, 0, -3, True])
def test_parse_action_units_rejects_bad_numbers(cell):
    with pytest.raises(DataError):
        parse_action_units(cell)


@pytest.mark.parametrize("value", ["01", 1, 1.0, "1", "sub01", "Sub01", " 01 "])
def test_subject_forms(value):
    assert normalise_subject(value) == "sub01"


# ---- both sheet versions ----------------------------------------------------------------

def test_read_2019_sheet(tmp_path, write_sheet):
    path = write_sheet(tmp_path / "CASME2-coding-20190701.xlsx", ROWS_2019, "2019")
    rows, warnings = read_sheet(path)
    assert [r.row for r in rows] == [2, 3, 4, 5, 6]          # header is row 1
    assert [r.subject for r in rows] == ["sub01", "sub01", "sub02", "sub04", "sub05"]
    assert rows[1].aus == {ActionUnit(4), ActionUnit(7), ActionUnit(10, "L")}
    assert rows[2].filename == "EP06_02_01" and rows[2].emotion == "others"
    slash = rows[3]
    assert slash.apex is None and slash.emotion == "disgust"
    assert len(warnings) == 1
    assert "row 5" in warnings[0] and "sub04 EP12_01f" in warnings[0] and "'/'" in warnings[0]
    assert rows[4].onset == rows[4].apex == 30               # onset == apex is allowed


def test_read_2014_sheet(tmp_path, write_sheet):
    path = write_sheet(tmp_path / "CASME2-coding-20140508.xlsx", ROWS_2014, "2014")
    rows, warnings = read_sheet(path)
    assert warnings == []
    assert [r.subject for r in rows] == ["sub01", "sub01", "sub04"]
    assert rows[1].aus == frozenset() and rows[1].filename == "EP09f"
    assert rows[2].aus == {ActionUnit(12)} and rows[2].apex == 291


def test_blank_rows_are_ignored_and_rows_keep_excel_numbers(tmp_path, write_sheet):
    rows_in = [ROWS_2019[0], None, None, ROWS_2019[1]]
    rows, _ = read_sheet(write_sheet(tmp_path / "s.xlsx", rows_in))
    assert [r.row for r in rows] == [2, 5]


def test_headers_matched_by_name_tolerantly(tmp_path, write_sheet):
    header = [" subject ", "FILENAME", "Notes", "Onset Frame ", "APEX_FRAME", "offsetframe",
              None, "Action units", "estimated emotion", None]
    path = write_sheet(tmp_path / "s.xlsx", ROWS_2019[:2], header)
    rows, _ = read_sheet(path)
    assert rows[0].onset == 46 and rows[0].subject == "sub01"


def test_columns_found_in_any_order(tmp_path):
    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Sheet1"
    ws.append(["Estimated Emotion", "Action Units", "OffsetFrame", "ApexFrame", "OnsetFrame",
               "Filename", "Subject"])
    ws.append(["surprise", "R2", 30, 12, 3, "EP01_2", "sub03"])
    book.save(tmp_path / "s.xlsx")
    (row,), _ = read_sheet(tmp_path / "s.xlsx")
    assert (row.subject, row.filename, row.onset, row.apex, row.offset) == ("sub03", "EP01_2", 3, 12, 30)
    assert row.aus == {ActionUnit(2, "R")} and row.emotion == "surprise"


def test_pandas_written_sheet_with_unnamed_headers(tmp_path):
    frame = pd.DataFrame({
        "Subject": ["01", "02"], "Filename": ["EP01_01", "EP01_01"], "Unnamed: 2": [None, None],
        "OnsetFrame": [1, 2], "ApexFrame": [5, "/"], "OffsetFrame": [9, 9],
        "Unnamed: 6": [None, None], "Action Units": ["4+L10", 12], "Estimated Emotion": ["disgust", "happiness"],
    })
    path = tmp_path / "data.xlsx"
    frame.to_excel(path, sheet_name="Sheet1", index=False)
    rows, warnings = read_sheet(path)
    # same filename under two subjects is fine
    assert [r.key for r in rows] == [("sub01", "EP01_01"), ("sub02", "EP01_01")]
    assert rows[1].apex is None and len(warnings) == 1


def test_sheet1_preferred_else_first_sheet(tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Notes"
    book.active.append(["nothing to see"])
    ws = book.create_sheet("Sheet1")
    ws.append(["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame", "Action Units",
               "Estimated Emotion"])
    ws.append(["01", "EP01", 1, 2, 3, 4, "others"])
    book.save(tmp_path / "a.xlsx")
    assert len(read_sheet(tmp_path / "a.xlsx")[0]) == 1

    book = openpyxl.Workbook()
    book.active.title = "Annotations"
    book.active.append(["Subject", "Filename", "OnsetFrame", "ApexFrame", "OffsetFrame",
                        "Action Units", "Estimated Emotion"])
    book.active.append(["01", "EP01", 1, 2, 3, 4, "others"])
    book.save(tmp_path / "b.xlsx")
    assert len(read_sheet(tmp_path / "b.xlsx")[0]) == 1


def test_frame_numbers_as_text_or_float(tmp_path, write_sheet):
    rows, _ = read_sheet(write_sheet(tmp_path / "s.xlsx", [("01", "EP1", "46", 59.0, " 86 ", 4, "others")]))
    assert (rows[0].onset, rows[0].apex, rows[0].offset) == (46, 59, 86)


# ---- bad input --------------------------------------------------------------------------

def _error(path: Path) -> str:
    with pytest.raises(DataError) as info:
        read_sheet(path)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert "nope.xlsx" in _error(tmp_path / "nope.xlsx")


def test_unreadable_file(tmp_path):
    path = tmp_path / "broken.xlsx"
    path.write_text("this is not a workbook")
    assert "broken.xlsx" in _error(path)


def test_empty_sheet(tmp_path):
    book = openpyxl.Workbook()
    book.active.title = "Sheet1"
    book.save(tmp_path / "empty.xlsx")
    assert "empty" in _error(tmp_path / "empty.xlsx")


def test_header_without_rows(tmp_path, write_sheet):
    assert "no data rows" in _error(write_sheet(tmp_path / "s.xlsx", []))


def test_missing_column_named(tmp_path, write_sheet):
    header = ["Subject", "Filename", None, "Onset", "ApexFrame", "OffsetFrame",
              None, "Action Units", "Estimated Emotion", None]
    message = _error(write_sheet(tmp_path / "s.xlsx", ROWS_2019[:1], header))
    assert "'OnsetFrame'" in message and "s.xlsx" in message


@pytest.mark.parametrize("column, index, value", [
    ("OnsetFrame", 2, "abc"), ("OffsetFrame", 4, None), ("ApexFrame", 3, "x"), ("ApexFrame", 3, 12.5),
])
def test_frame_not_a_number(tmp_path, write_sheet, column, index, value):
    bad = list(ROWS_2019[1])
    bad[index] = value
    message = _error(write_sheet(tmp_path / "s.xlsx", [ROWS_2019[0], tuple(bad)]))
    assert "row 3" in message and f"'{column}'" in message and "s.xlsx" in message


def test_apex_outside_clip(tmp_path, write_sheet):
    message = _error(write_sheet(tmp_path / "s.xlsx", [("01", "EP1", 10, 50, 40, 4, "others")]))
    assert "row 2" in message and "ApexFrame" in message and "50" in message


def test_onset_after_offset(tmp_path, write_sheet):
    message = _error(write_sheet(tmp_path / "s.xlsx", [ROWS_2019[0], ("01", "EP1", 50, "/", 40, 4, "others")]))
    assert "row 3" in message and "OnsetFrame 50" in message and "OffsetFrame 40" in message


def test_duplicate_subject_filename_names_both_rows(tmp_path, write_sheet):
    rows = [ROWS_2019[0], ROWS_2019[1], ("1", "EP02_01f", 1, 2, 3, 4, "others")]
    message = _error(write_sheet(tmp_path / "s.xlsx", rows))
    assert "rows 2 and 4" in message and "sub01 EP02_01f" in message


def test_same_filename_under_two_subjects_is_fine(tmp_path, write_sheet):
    rows = [("01", "EP02_01f", 1, 2, 3, 4, "others"), ("09", "EP02_01f", 1, 2, 3, 4, "others")]
    assert len(read_sheet(write_sheet(tmp_path / "s.xlsx", rows))[0]) == 2


def test_bad_action_unit_names_row_and_token(tmp_path, write_sheet):
    rows = [ROWS_2019[0], ("03", "EP1", 1, 2, 3, "4+Q7", "others")]
    message = _error(write_sheet(tmp_path / "s.xlsx", rows))
    assert "row 3" in message and "'Q7'" in message and "Action Units" in message


@pytest.mark.parametrize("subject", ["abc", 1.5, None])
def test_bad_subject(tmp_path, write_sheet, subject):
    message = _error(write_sheet(tmp_path / "s.xlsx", [ROWS_2019[0], (subject, "EP1", 1, 2, 3, 4, "others")]))
    assert "row 3" in message and "Subject" in message


def test_repeated_column_is_an_error(tmp_path, write_sheet):
    header = ["Subject", "Filename", "Subject ", "OnsetFrame", "ApexFrame", "OffsetFrame",
              None, "Action Units", "Estimated Emotion", None]
    assert "'Subject' appears twice" in _error(write_sheet(tmp_path / "s.xlsx", ROWS_2019[:1], header))


def test_blank_filename_and_emotion(tmp_path, write_sheet):
    assert "Filename" in _error(write_sheet(tmp_path / "a.xlsx", [("01", None, 1, 2, 3, 4, "others")]))
    assert "Estimated Emotion" in _error(write_sheet(tmp_path / "b.xlsx", [("01", "EP1", 1, 2, 3, 4, None)]))


# ---- finding the sheet ------------------------------------------------------------------

def test_find_sheet_places(tmp_path, write_sheet):
    root = tmp_path / "CASME2"
    (root / "Cropped" / "sub01").mkdir(parents=True)
    with pytest.raises(DataError, match="CASME2-coding"):
        find_sheet(root)
    nested = write_sheet(root / "docs" / "CASME2-coding-20140508.xlsx", ROWS_2014, "2014")
    assert find_sheet(root) == nested                        # one level down
    old = write_sheet(root / "CASME2-coding-20140508.xlsx", ROWS_2014, "2014")
    assert find_sheet(root) == old                           # raf_path itself first
    new = write_sheet(root / "CASME2-coding-20190701.xlsx", ROWS_2019)
    assert find_sheet(root) == new                           # latest official sheet
    assert find_sheet(root / "Cropped") == new               # raf_path at the subNN/ folder
    assert find_sheet(root, old) == old                      # explicit path wins


def test_find_sheet_simple_layout(tmp_path, write_sheet):
    (tmp_path / "sub01").mkdir()
    sheet = write_sheet(tmp_path / "data.xlsx", ROWS_2019)
    assert find_sheet(tmp_path) == sheet


def test_find_sheet_errors(tmp_path):
    with pytest.raises(DataError, match="--sheet"):
        find_sheet(tmp_path, tmp_path / "missing.xlsx")
    with pytest.raises(DataError, match="--raf_path"):
        find_sheet(tmp_path / "absent")
