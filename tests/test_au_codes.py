"""Action-unit codes: every code of SAMM's FACS sheet, stray words, and AUs outside the graph."""
from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.action_units import ActionUnit, format_action_units, parse_action_units
from data.errors import DataError
from data.motion_maps import load_motion_maps
from data.protocols import get_protocol
from data.release import au_multi_hot, aus_outside
from data.sheet import read_sheet
from run_data import print_dataset
from utils.face_regions import DEFAULT_AUS

# Every distinct cell of the 'Action Units' column of SAMM_Micro_FACS_Codes_v2.xlsx (97),
# as the sheet stores it (numbers for lone AUs), with its parse: (AU, side, intensity).
SAMM_CODES = [
    (12, {(12, "", "")}),
    (17, {(17, "", "")}),
    (20, {(20, "", "")}),
    (24, {(24, "", "")}),
    (26, {(26, "", "")}),
    (31, {(31, "", "")}),
    (38, {(38, "", "")}),
    (4, {(4, "", "")}),
    (5, {(5, "", "")}),
    (7, {(7, "", "")}),
    (9, {(9, "", "")}),
    ("(R6 or R12) + R15", {(6, "R", ""), (15, "R", "")}),
    ("(R6 or R12)+R15", {(6, "R", ""), (15, "R", "")}),
    ("1+2", {(1, "", ""), (2, "", "")}),
    ("10A/B", {(10, "", "A")}),
    ("12+15 ", {(12, "", ""), (15, "", "")}),
    ("12+24", {(12, "", ""), (24, "", "")}),
    ("12+39", {(12, "", ""), (39, "", "")}),
    ("12A", {(12, "", "A")}),
    ("12A+ref(24)", {(12, "", "A")}),
    ("12B", {(12, "", "B")}),
    ("12C", {(12, "", "C")}),
    ("13+39", {(13, "", ""), (39, "", "")}),
    ("13+T18+39", {(13, "", ""), (18, "T", ""), (39, "", "")}),
    ("14+25+26", {(14, "", ""), (25, "", ""), (26, "", "")}),
    ("15A+17", {(15, "", "A"), (17, "", "")}),
    ("1A+2B+L14C", {(1, "", "A"), (2, "", "B"), (14, "L", "C")}),
    ("24+38", {(24, "", ""), (38, "", "")}),
    ("25+26", {(25, "", ""), (26, "", "")}),
    ("2C", {(2, "", "C")}),
    ("4+13+T18+39", {(4, "", ""), (13, "", ""), (18, "T", ""), (39, "", "")}),
    ("4+6+7+9+43E", {(4, "", ""), (6, "", ""), (7, "", ""), (9, "", ""), (43, "", "E")}),
    ("4+7", {(4, "", ""), (7, "", "")}),
    ("4+7+43", {(4, "", ""), (7, "", ""), (43, "", "")}),
    ("4A", {(4, "", "A")}),
    ("4A/B", {(4, "", "A")}),
    ("4B+7B+43E", {(4, "", "B"), (7, "", "B"), (43, "", "E")}),
    ("4D+9B", {(4, "", "D"), (9, "", "B")}),
    ("4D+ref(6)+7C+43E", {(4, "", "D"), (7, "", "C"), (43, "", "E")}),
    ("5A", {(5, "", "A")}),
    ("5B", {(5, "", "B")}),
    ("5B+24", {(5, "", "B"), (24, "", "")}),
    ("5C", {(5, "", "C")}),
    ("7+12", {(7, "", ""), (12, "", "")}),
    ("7+20+26", {(7, "", ""), (20, "", ""), (26, "", "")}),
    ("7A", {(7, "", "A")}),
    ("7B", {(7, "", "B")}),
    ("7B+ ref(43)", {(7, "", "B")}),
    ("7B+56", {(7, "", "B"), (56, "", "")}),
    ("7C", {(7, "", "C")}),
    ("7C+A12B", {(7, "", "C"), (12, "A", "B")}),
    ("7D", {(7, "", "D")}),
    ("7D+ref(43)", {(7, "", "D")}),
    ("8+25", {(8, "", ""), (25, "", "")}),
    ("A/L12", {(12, "A", "")}),
    ("A1", {(1, "A", "")}),
    ("A12", {(12, "A", "")}),
    ("A12+A7", {(7, "A", ""), (12, "A", "")}),
    ("A14C", {(14, "A", "C")}),
    ("A1B+A2C", {(1, "A", "B"), (2, "A", "C")}),
    ("A7", {(7, "A", "")}),
    ("A9+12", {(9, "A", ""), (12, "", "")}),
    ("A9E+ref(10)", {(9, "A", "E")}),
    ("B18+25", {(18, "B", ""), (25, "", "")}),
    ("L10", {(10, "L", "")}),
    ("L12 + 61", {(12, "L", ""), (61, "", "")}),
    ("L12 or L14", {(12, "L", "")}),
    ("L12A", {(12, "L", "A")}),
    ("L12A+25", {(12, "L", "A"), (25, "", "")}),
    ("L12C", {(12, "L", "C")}),
    ("L14", {(14, "L", "")}),
    ("L14C", {(14, "L", "C")}),
    ("L2", {(2, "L", "")}),
    ("L20+21", {(20, "L", ""), (21, "", "")}),
    ("L2A", {(2, "L", "A")}),
    ("L2C+12", {(2, "L", "C"), (12, "", "")}),
    ("L4", {(4, "L", "")}),
    ("L7A", {(7, "L", "A")}),
    ("R10", {(10, "R", "")}),
    ("R10A+25+26", {(10, "R", "A"), (25, "", ""), (26, "", "")}),
    ("R12 or R14", {(12, "R", "")}),
    ("R14", {(14, "R", "")}),
    ("R14+17+soft focus", {(14, "R", ""), (17, "", "")}),
    ("R14+R17", {(14, "R", ""), (17, "R", "")}),
    ("R14A or 17A or 24A", {(14, "R", "A")}),
    ("R2", {(2, "R", "")}),
    ("R20", {(20, "R", "")}),
    ("R20B", {(20, "R", "B")}),
    ("R2A", {(2, "R", "A")}),
    ("R2B", {(2, "R", "B")}),
    ("R6A+R12", {(6, "R", "A"), (12, "R", "")}),
    ("T18+39", {(18, "T", ""), (39, "", "")}),
    ("T23", {(23, "T", "")}),
    ("ref(5)+20C+25+26", {(20, "", "C"), (25, "", ""), (26, "", "")}),
    ("ref(7B)+43", {(43, "", "")}),
    ("ref(7B)+43C", {(43, "", "C")}),
    ("ref(L10)+A12B", {(12, "A", "B")}),
]


def test_the_table_holds_each_samm_code_once():
    assert len(SAMM_CODES) == 97 and len({cell for cell, _ in SAMM_CODES}) == 97


@pytest.mark.parametrize("cell, expected", SAMM_CODES)
def test_every_samm_code(cell, expected):
    parsed = parse_action_units(cell)
    assert parsed == frozenset(expected)
    assert all(isinstance(unit, ActionUnit) for unit in parsed)
    assert parse_action_units(format_action_units(parsed)) == parsed   # the text form reads back


@pytest.mark.parametrize("cell, expected", [
    ("none", set()), ("", set()), (None, set()), (float("nan"), set()),
    (43.0, {ActionUnit(43)}), ("50+58", {ActionUnit(50), ActionUnit(58)}),
    ("AU12c", {ActionUnit(12, "", "C")}), ("u14", {ActionUnit(14, "U")}),
    ("12?", {ActionUnit(12)}),                                   # SAMM's 'unclear offset' mark
    ("12/14", {ActionUnit(12)}), ("(4+7) or 9", {ActionUnit(4), ActionUnit(7)}),
])
def test_other_forms(cell, expected):
    assert parse_action_units(cell) == frozenset(expected)


@pytest.mark.parametrize("cell, message", [
    ("4+X5", "'X5'"), ("4+", "''"), ("L", "'L'"), ("A/L", "'A/L'"), ("0", "'0'"),
    ("ref(X5)+4", "'X5'"),            # ref's content is checked though not scored
    ("12 or 4-7", "'4-7'"),           # so is every alternative
    ("(4+7", "unbalanced"), ("4)+7", "unbalanced"),
])
def test_malformed_codes_are_errors(cell, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace("+", r"\+")):
        parse_action_units(cell)


def test_stray_words_go_to_the_callback():
    seen: list[str] = []
    assert parse_action_units("R14+17+soft focus", seen.append) == {ActionUnit(14, "R"), ActionUnit(17)}
    assert len(seen) == 1 and "'soft focus'" in seen[0]
    assert parse_action_units("soft focus") == frozenset()   # without a callback: dropped quietly
    assert format_action_units([]) == "none"


# ---- the readers name the row of a skipped word ------------------------------------------

def test_sheet_warning_names_the_row(tmp_path, write_sheet):
    rows = [("01", "EP01", 1, 2, 3, "4D+ref(6)+7C", "disgust"),
            ("02", "EP02", 1, 2, 3, "R14+17+soft focus", "happiness")]
    parsed, warnings = read_sheet(write_sheet(tmp_path / "CASME2-coding-20190701.xlsx", rows))
    assert parsed[0].aus == {ActionUnit(4, "", "D"), ActionUnit(7, "", "C")}
    assert parsed[1].aus == {ActionUnit(14, "R"), ActionUnit(17)}
    assert len(warnings) == 1
    assert "row 3" in warnings[0] and "sub02 EP02" in warnings[0] and "'soft focus'" in warnings[0]


def _motion_map_folder(root: Path, lines: list[tuple[str, str, str, str]]) -> Path:
    """index.csv with (subject, sample, label, aus) lines and one tiny motion image each."""
    root.mkdir()
    with (root / "index.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["subject", "sample", "label", "motion", "face", "aus"])
        for subject, sample, label, aus in lines:
            cv2.imwrite(str(root / f"{sample}.png"), np.full((8, 8, 3), 128, np.uint8))
            writer.writerow([subject, sample, label, f"{sample}.png", "", aus])
    return root


def test_motion_maps_warning_names_the_line_and_dry_run_counts_outside_aus(tmp_path, capsys):
    folder = _motion_map_folder(tmp_path / "maps", [
        ("01", "a", "negative", "4+7B+43E"),
        ("02", "b", "positive", "R14+17+soft focus"),
        ("02", "c", "surprise", "1+2+ref(43)+L7+R7"),
    ])
    data = load_motion_maps(folder, get_protocol("3class"), img_size=8)
    assert data.aus[2] == {ActionUnit(1), ActionUnit(2), ActionUnit(7, "L"), ActionUnit(7, "R")}
    assert len(data.warnings) == 1
    assert "line 3" in data.warnings[0] and "'soft focus'" in data.warnings[0]
    print_dataset(data, ["sub01", "sub02"], DEFAULT_AUS)
    out = capsys.readouterr().out
    assert "AUs outside the graph's nodes (not used as labels): AU7 2, AU43 1\n" in out
    assert "warning: " in out and "'soft focus'" in out


# ---- labels: AUs on the graph's nodes, and those outside it ---------------------------------

def test_multi_hot_ignores_side_and_intensity():
    sets = [parse_action_units(c) for c in ("A1B+T2", "L12C+R12", "43E", "none")]
    np.testing.assert_array_equal(au_multi_hot(sets, (1, 2, 12)), [
        [1, 1, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]])


def test_aus_outside_counts_samples_not_codes():
    sets = [parse_action_units(c) for c in ("4+L7+R7A", "7B+43E+56", "43", "12", "none")]
    # AU7 on two sides of one sample counts once; graph nodes (4, 12) are not listed
    assert aus_outside(sets, (4, 12)) == {7: 2, 43: 2, 56: 1}
    assert list(aus_outside(sets, (4, 12))) == [7, 43, 56]     # most frequent first
    assert aus_outside(sets, (4, 7, 12, 43, 56)) == {}


@pytest.mark.parametrize("cell", ["(" * 240 + "4" + ")" * 240, "ref(" * 90 + "7" + ")" * 90 + "+4",
                                  "(" * 120 + "R6 or R12" + ")" * 120 + "+4"])
def test_deep_nesting_within_the_length_limit_is_read_without_recursion(cell):
    import sys
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100)   # a recursive reader would need a frame per level
    try:
        assert parse_action_units(cell) <= {ActionUnit(4), ActionUnit(6, "R")}
        assert ActionUnit(4) in parse_action_units(cell)
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize("cell", ["4" * 5000, "AU" + "9" * 4, "(" * 300 + "4" + ")" * 300, 1e300, 10 ** 400])
def test_cells_past_the_bounds_are_one_data_error(cell):
    with pytest.raises(DataError):
        parse_action_units(cell)
