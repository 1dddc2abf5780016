"""Frame layouts, class protocols and load_release on small synthetic releases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from data.errors import DataError
from data.layout import LAYOUTS, detect_layout, frame_path, layout_folder, resolve_layout
from data.protocols import PROTOCOLS, Protocol, apply_protocol, get_protocol
from data.release import au_multi_hot, load_release
from data.sheet import SheetRow

# (subject, filename, onset, apex, offset, aus, emotion)
ROWS = [
    ("01", "EP02_01f", 46, 59, 86, 12, "happiness"),
    ("01", "EP19_05f", 396, 416, 446, "4+7+L10", "disgust"),
    ("02", "EP02_01f", 10, 20, 40, "R12", "others"),
    ("02", "EP11_01", 5, 9, 30, "1+2", "surprise"),
    ("04", "EP12_01f", 100, "/", 170, "L1+L2", "disgust"),
    ("05", "EP03_06", 30, 30, 60, "4", "repression"),
    ("05", "EP07_01", 3, 6, 9, "4+L14", "fear"),
    ("09", "EP09f", 3, 6, 9, "4", "sadness"),
]

def _frames(row: tuple) -> list[int]:
    return [row[2]] + ([row[3]] if row[3] != "/" else []) + [row[4]]


@pytest.fixture
def release_dir(tmp_path, write_sheet, make_clip):
    """build(layout) -> raf_path with a sheet and the onset/apex/offset frames of ROWS."""
    def build(layout: str = "cropped", rows=ROWS, root: Path | None = None) -> Path:
        raf = root or tmp_path / f"CASME2_{layout}"
        frames_root = layout_folder(raf, layout)
        prefix = "reg_img" if layout.startswith("cropped") else "img"
        for row in rows:
            subject = f"sub{int(row[0]):02d}"
            make_clip(frames_root, subject, row[1], _frames(row), prefix)
        name = "data.xlsx" if layout == "simple" else "CASME2-coding-20190701.xlsx"
        write_sheet(raf / name, rows)
        return raf
    return build


# ---- layouts ----------------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_each_layout(release_dir, layout):
    raf = release_dir(layout)
    name, frames_root = detect_layout(raf)
    assert name == layout
    assert frames_root.resolve() == layout_folder(raf, layout).resolve()
    path = frame_path(frames_root, "sub01", "EP02_01f", 46)
    prefix = "reg_img" if layout.startswith("cropped") else "img"
    assert path is not None and path.name == f"{prefix}46.jpg"
    assert frame_path(frames_root, "sub01", "EP02_01f", 47) is None


@pytest.mark.parametrize("folder, expected", [
    ("Cropped", "cropped"), ("Cropped-updated/Cropped", "cropped-updated"),
    ("CASME2_RAW_selected", "raw"), (".", "simple"),
])
def test_raf_path_pointing_at_subject_folder(tmp_path, make_clip, folder, expected):
    frames_root = tmp_path / "rel" / folder
    prefix = "reg_img" if expected.startswith("cropped") else "img"
    make_clip(frames_root, "sub01", "EP1", [1], prefix)
    assert detect_layout(frames_root) == (expected, frames_root)


def test_png_and_bmp_frames_tolerated(tmp_path, make_clip):
    make_clip(tmp_path, "sub01", "EP1", [3], "img", ".png")
    make_clip(tmp_path, "sub01", "EP1", [4], "reg_img", ".bmp")
    assert frame_path(tmp_path, "sub01", "EP1", 3).name == "img3.png"
    assert frame_path(tmp_path, "sub01", "EP1", 4).name == "reg_img4.bmp"


def test_layout_override(release_dir, make_clip):
    raf = release_dir("cropped")
    make_clip(raf / "CASME2_RAW_selected", "sub01", "EP02_01f", [46, 59], "img")
    assert detect_layout(raf)[0] == "cropped"                # cropped faces preferred
    name, root = resolve_layout(raf, "raw")
    assert (name, root) == ("raw", raf / "CASME2_RAW_selected")
    assert resolve_layout(raf / "Cropped", "cropped") == ("cropped", raf / "Cropped")
    with pytest.raises(DataError, match="--layout cropped-updated"):
        resolve_layout(raf, "cropped-updated")


def test_unknown_layout_lists_valid_values(release_dir):
    with pytest.raises(DataError) as info:
        resolve_layout(release_dir("cropped"), "croped")
    message = str(info.value)
    assert "--layout" in message and "'croped'" in message
    assert all(name in message for name in LAYOUTS)


def test_layout_detection_failures(tmp_path):
    with pytest.raises(DataError, match="--raf_path") as info:
        detect_layout(tmp_path)
    assert str(tmp_path) in str(info.value) and "Cropped/subNN" in str(info.value)
    with pytest.raises(DataError, match="--raf_path .*not found"):
        detect_layout(tmp_path / "absent")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="--raf_path .*not a folder"):
        detect_layout(tmp_path / "file.txt")
    with pytest.raises(DataError, match="--raf_path"):
        load_release(tmp_path / "absent", PROTOCOLS["5class"])


# ---- protocols --------------------------------------------------------------------------

def _row(n: int, subject: str, filename: str, emotion: str) -> SheetRow:
    return SheetRow(n, subject, filename, 1, 2, 3, frozenset(), emotion)


def test_five_class(release_dir):
    release = load_release(release_dir("cropped"), get_protocol("5class"))
    assert [s.emotion for s in release.samples] == [
        "happiness", "disgust", "others", "surprise", "disgust", "repression"]
    assert [s.label for s in release.samples] == [0, 2, 4, 1, 2, 3]
    assert release.excluded == {"fear": 1, "sadness": 1}
    assert release.subject_list == ["sub01", "sub02", "sub04", "sub05"]
    assert release.class_counts() == {"happiness": 1, "surprise": 1, "disgust": 2,
                                      "repression": 1, "others": 1}


def test_three_class(release_dir):
    protocol = get_protocol("3class")
    release = load_release(release_dir("cropped"), protocol)
    assert protocol.classes == ("negative", "positive", "surprise")
    labels = {s.key: protocol.classes[s.label] for s in release.samples}
    assert labels == {("sub01", "EP02_01f"): "positive", ("sub01", "EP19_05f"): "negative",
                      ("sub02", "EP11_01"): "surprise", ("sub04", "EP12_01f"): "negative",
                      ("sub05", "EP03_06"): "negative", ("sub05", "EP07_01"): "negative",
                      ("sub09", "EP09f"): "negative"}
    assert release.excluded == {"others": 1}


def test_unknown_emotion_spelling_is_reported(release_dir):
    rows = ROWS + [("03", "EP01_2", 1, 2, 3, 4, "Hapiness"), ("03", "EP01_3", 1, 2, 3, 4, "hapiness")]
    release = load_release(release_dir("cropped", rows), get_protocol("5class"))
    assert release.excluded["hapiness"] == 2
    (warning,) = [w for w in release.warnings if "unknown emotion" in w]
    assert "'hapiness'" in warning and "2 row(s) (10, 11)" in warning


def test_megc2019_uses_the_shipped_list(release_dir):
    rows = [
        ("01", "EP02_01f", 46, 59, 86, 12, "happiness"),      # list: positive
        ("01", "EP19_05f", 396, 416, 446, "4+L10", "disgust"),  # list: negative
        ("02", "EP11_01", 5, 9, 30, "1+2", "surprise"),       # list: surprise
        ("04", "EP12_01f", 100, "/", 170, 4, "disgust"),      # not in the list
        ("02", "EP01_01", 1, 2, 3, 4, "others"),              # not in the list
    ]
    protocol = get_protocol("megc2019")
    release = load_release(release_dir("cropped", rows), protocol)
    assert [(s.key, protocol.classes[s.label]) for s in release.samples] == [
        (("sub01", "EP02_01f"), "positive"), (("sub01", "EP19_05f"), "negative"),
        (("sub02", "EP11_01"), "surprise")]
    assert release.excluded == {"disgust": 1, "others": 1}
    missing = [w for w in release.warnings if "megc2019 list entry" in w]
    assert len(missing) == 145 - 3
    assert any("sub26 EP18_51" in w for w in missing)
    assert len(protocol.fixed_labels()) == 145
    assert all(s.startswith("sub") and len(s) == 5 for s, _ in protocol.fixed_labels())


def test_fixed_list_label_wins_over_sheet_emotion(tmp_path):
    (tmp_path / "list.csv").write_text("subject,filename,label\n1,EP1,positive\n02,EP2,negative\n")
    protocol = Protocol("custom", ("negative", "positive", "surprise"),
                        emotion_to_class=PROTOCOLS["3class"].emotion_to_class,
                        fixed_list=tmp_path / "list.csv")
    rows = [_row(2, "sub01", "EP1", "disgust"), _row(3, "sub02", "EP2", "disgust")]
    selection = apply_protocol(rows, protocol)
    assert [label for _, label in selection.rows] == [1, 0]
    assert any("row 2" in w and "'positive'" in w for w in selection.warnings)


def test_unknown_protocol():
    with pytest.raises(DataError, match="--protocol 'seven'.*5class, 3class, megc2019"):
        get_protocol("seven")


def test_protocol_needs_two_classes_and_two_subjects():
    one_class = [_row(2, "sub01", "a", "happiness"), _row(3, "sub02", "b", "happiness")]
    with pytest.raises(DataError, match="1 class"):
        apply_protocol(one_class, PROTOCOLS["5class"])
    one_subject = [_row(2, "sub01", "a", "happiness"), _row(3, "sub01", "b", "disgust")]
    with pytest.raises(DataError, match="1 subject"):
        apply_protocol(one_subject, PROTOCOLS["5class"])
    others_only = [_row(2, "sub01", "a", "others"), _row(3, "sub02", "b", "others")]
    with pytest.raises(DataError, match="3class leaves 0 samples"):
        apply_protocol(others_only, PROTOCOLS["3class"])


# ---- load_release -----------------------------------------------------------------------

@pytest.mark.parametrize("layout", LAYOUTS)
def test_load_release_resolves_frames(release_dir, layout):
    raf = release_dir(layout)
    release = load_release(raf, PROTOCOLS["5class"])
    assert release.layout == layout and release.skipped == []
    assert release.sheet_path.parent == raf
    first = release.samples[0]
    assert first.onset_path.name.endswith("46.jpg") and first.apex_path.name.endswith("59.jpg")
    assert first.frame_dir == first.onset_path.parent
    assert first.frame_dir.parts[-2:] == ("sub01", "EP02_01f")
    slash = next(s for s in release.samples if s.key == ("sub04", "EP12_01f"))
    assert slash.apex is None and slash.apex_path is None
    assert any("'/'" in w for w in release.warnings)
    assert release.subject_list == ["sub01", "sub02", "sub04", "sub05"] and len(release.samples) == 6


def test_load_release_with_override_and_explicit_sheet(release_dir, write_sheet, tmp_path):
    raf = release_dir("raw")
    other = write_sheet(tmp_path / "elsewhere" / "mine.xlsx", ROWS[:4])
    release = load_release(raf, PROTOCOLS["5class"], sheet=other, layout="raw")
    assert release.sheet_path == other and len(release.samples) == 4


def test_missing_frame_skipped_or_strict(release_dir):
    raf = release_dir("cropped")
    gone = raf / "Cropped" / "sub01" / "EP19_05f" / "reg_img416.jpg"
    gone.unlink()
    release = load_release(raf, PROTOCOLS["5class"])
    assert ("sub01", "EP19_05f") not in {s.key for s in release.samples}
    assert len(release.samples) == 5 and len(release.skipped) == 1
    assert str(gone) in release.skipped[0] and "apex" in release.skipped[0]
    assert release.skipped[0] in release.warnings
    with pytest.raises(DataError, match="reg_img416.jpg"):
        load_release(raf, PROTOCOLS["5class"], strict=True)


def test_missing_clip_folder_skipped(release_dir):
    raf = release_dir("cropped")
    for frame in (raf / "Cropped" / "sub02" / "EP11_01").iterdir():
        frame.unlink()
    (raf / "Cropped" / "sub02" / "EP11_01").rmdir()
    release = load_release(raf, PROTOCOLS["5class"])
    assert len(release.skipped) == 1 and "EP11_01" in release.skipped[0]


def test_all_frames_missing_is_an_error(release_dir, tmp_path, write_sheet):
    raf = release_dir("cropped")
    write_sheet(raf / "CASME2-coding-20190701.xlsx",
                [("11", "EP1", 1, 2, 3, 4, "happiness"), ("12", "EP2", 1, 2, 3, 4, "disgust")])
    with pytest.raises(DataError, match="missing frames"):
        load_release(raf, PROTOCOLS["5class"])


def test_au_multi_hot_merges_sides(release_dir):
    release = load_release(release_dir("cropped"), PROTOCOLS["5class"])
    hot = au_multi_hot([s.aus for s in release.samples], (1, 2, 4, 10, 12))
    assert hot.dtype == np.float32 and hot.shape == (6, 5)
    np.testing.assert_array_equal(hot[:5], [
        [0, 0, 0, 0, 1],      # 12
        [0, 0, 1, 1, 0],      # 4+7+L10 (7 not a node)
        [0, 0, 0, 0, 1],      # R12
        [1, 1, 0, 0, 0],      # 1+2
        [1, 1, 0, 0, 0],      # L1+L2
    ])
