"""`prepare.py combine`: motion-map folders copied into one composite folder (data.combine)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import prepare
from data import DataError, get_protocol
from data.combine import combine_folders
from data.motion_maps import load_motion_maps
from data.synthetic import write_motion_map_folder

FIVE = get_protocol("5class")


@pytest.fixture(autouse=True)
def cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("AMGCN_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def two_folders(tiny_release, tmp_path) -> tuple[Path, Path]:
    first = write_motion_map_folder(tiny_release, tmp_path / "first", FIVE, img_size=32)
    second = write_motion_map_folder(tiny_release, tmp_path / "second", FIVE, img_size=32, kind="flow")
    return first, second


def _edit_index(folder: Path, edit) -> None:
    path = folder / "index.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = list(rows[0])
    edit(rows, fields)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_a_composite_reads_as_both_folders_with_their_subjects_kept_apart(two_folders, tmp_path):
    first, second = two_folders
    n = combine_folders([("samm", first), ("smic", second)], tmp_path / "both")
    both = load_motion_maps(tmp_path / "both", FIVE, img_size=32)
    parts = [load_motion_maps(folder, FIVE, img_size=32) for folder in two_folders]
    assert n == len(both.labels) == sum(len(p.labels) for p in parts)
    np.testing.assert_array_equal(both.motion, np.concatenate([p.motion for p in parts]))
    np.testing.assert_array_equal(both.face, np.concatenate([p.face for p in parts]))
    assert both.subjects == [f"samm/{s}" for s in parts[0].subjects] + [f"smic/{s}" for s in parts[1].subjects]
    assert both.aus == parts[0].aus + parts[1].aus
    assert len(both.subject_list) == 2 * len(parts[0].subject_list)   # the same names, two datasets


def test_bad_sources_are_refused_before_anything_is_written(two_folders, tmp_path):
    first, second = two_folders
    out = tmp_path / "out"
    with pytest.raises(DataError, match="'SAMM'"):
        combine_folders([("SAMM", first), ("smic", second)], out)
    with pytest.raises(DataError, match="distinct names"):
        combine_folders([("samm", first), ("samm", second)], out)
    _edit_index(second, lambda rows, fields: rows[3].update(motion="../first/index.csv"))
    with pytest.raises(DataError, match=r"line 5, motion: .*climbs out"):
        combine_folders([("samm", first), ("smic", second)], out)
    assert not out.exists()

    def add_map(rows, fields):
        fields.append("motion_2")
        for row in rows:
            row["motion_2"] = row["face"]
    _edit_index(first, add_map)
    with pytest.raises(DataError, match="different map columns"):
        combine_folders([("samm", first), ("smic", second)], out)
    assert not out.exists()


def test_a_composite_or_a_full_folder_is_not_combined_again(two_folders, tmp_path):
    first, second = two_folders
    combine_folders([("samm", first), ("smic", second)], tmp_path / "both")
    with pytest.raises(DataError, match="already a composite"):
        combine_folders([("both", tmp_path / "both"), ("smic", second)], tmp_path / "again")
    with pytest.raises(DataError, match="not an empty folder"):
        combine_folders([("samm", first), ("smic", second)], tmp_path / "both")


def test_combine_command_ends_bad_input_with_one_line(two_folders, tmp_path, capsys):
    first, second = two_folders
    assert prepare.main(["combine", "--out", str(tmp_path / "ok"), f"samm={first}", f"smic={second}"]) == 0
    assert "combined" in capsys.readouterr().out
    assert prepare.main(["combine", "--out", str(tmp_path / "x"), f"samm={first}", f"smic={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "index.csv" in err[0]
