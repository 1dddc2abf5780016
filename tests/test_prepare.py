"""prepare.py: exporting a release as a motion-map folder, and apex spotting."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pytest

import data.export
import prepare
from data.apex import error_summary, spot_apex
from data.arrays import source_arrays
from data.export import export_release
from data.inputs import build_inputs, spot_face
from data.motion_maps import load_motion_maps
from data.protocols import get_protocol
from data.release import load_release
from data.synthetic import ClipRenderer, EMOTION_AUS, displacement_field, draw_face, plan_clips, subject_style
from data.action_units import parse_action_units
from helpers import loso_args

ROOT = Path(__file__).resolve().parents[1]
FIVE = get_protocol("5class")
RELEASE = dict(subjects=4, per_subject=6, size=(40, 48), seed=3, clip_len=(8, 12))


@pytest.fixture(scope="module")
def release_root(synthetic_release) -> Path:
    # Not the shared releases: an export of more than data.export.CHUNK samples (two chunks, for the
    # killed-export test), and the 2019 sheet's sadness and fear rows, which an export leaves out.
    return synthetic_release(**RELEASE)


@pytest.fixture
def release_copy(release_root, copy_release) -> Path:
    """A copy to damage."""
    return copy_release(release_root)


def export(release_root: Path, out: Path, cache: Path, **kw) -> None:
    release = load_release(release_root, FIVE, strict=True)
    export_release(release, out, cache_dir=cache, progress=False, **kw)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- export

@pytest.mark.parametrize("motion", ["diff", "flow"])
def test_default_export_gives_the_release_arrays(release_root, tmp_path, motion):
    before = {p: p.stat().st_mtime_ns for p in release_root.rglob("*")}
    export(release_root, tmp_path / "maps", tmp_path / "cache", motion=motion, size=32)
    assert {p: p.stat().st_mtime_ns for p in release_root.rglob("*")} == before   # the release is only read
    kw = dict(motion=motion, img_size=32, cache_dir=tmp_path / "cache", workers=0, strict=True, progress=False)
    want = source_arrays(load_release(release_root, FIVE), **kw)
    got = source_arrays(load_motion_maps(tmp_path / "maps", FIVE, img_size=32), motion=motion, img_size=32)
    assert got.motion.dtype == np.float32 and np.array_equal(got.motion, want.motion)
    assert np.array_equal(got.face, want.face) and np.array_equal(got.labels, want.labels)
    assert (got.subjects, got.names, got.aus) == (want.subjects, want.names, want.aus)
    assert want.subjects[0] == "sub01"


@pytest.mark.parametrize("style", ["default", "ststnet"])
def test_both_styles_read_back_with_the_release_counts(release_root, tmp_path, style):
    motion = "flow" if style == "ststnet" else "diff"
    export(release_root, tmp_path / "maps", tmp_path / "cache", style=style, motion=motion, size=48)
    release = load_release(release_root, FIVE)
    maps = load_motion_maps(tmp_path / "maps", FIVE, img_size=32)
    assert len(maps.names) == len(release.samples) and maps.class_counts() == release.class_counts()
    assert maps.subject_list == release.subject_list
    # both kinds of dataset give the same per-sample fields, in the same order
    assert (maps.names, maps.labels.tolist()) == (release.names, release.labels.tolist())
    header = (tmp_path / "maps" / "index.csv").read_text().splitlines()[0]
    assert header == "subject,sample,label,motion,face,aus,dataset"
    if style == "ststnet":
        flow = cv2.imread(str(tmp_path / "maps" / "sub01" / f"{release.samples[0].filename}_flow.png"))
        assert flow.shape == (28, 28, 3) and flow.dtype == np.uint8
        # min-max per channel: every channel spans 0..255
        assert (flow.reshape(-1, 3).min(0) == 0).all() and (flow.reshape(-1, 3).max(0) == 255).all()
        native = load_motion_maps(tmp_path / "maps", FIVE, img_size=28).motion     # (N, 3, 28, 28)
        assert (native.min(axis=(2, 3)) == -1).all() and (native.max(axis=(2, 3)) == 1).all()


def test_loso_on_the_export_predicts_as_on_the_release(release_root, tmp_path):
    done = cli("prepare.py", "export", "--raf_path", str(release_root), "--out", str(tmp_path / "maps"),
               "--size", "32", "--cache-dir", str(tmp_path / "cache"))
    assert done.returncode == 0, done.stderr
    assert "exported 22 samples" in done.stdout
    for name, source in (("on_release", release_root), ("on_export", tmp_path / "maps")):
        run = cli("CASME2_5.py", *loso_args(source, tmp_path, name, "--folds", "1,2"))
        assert run.returncode == 0, run.stderr
    predictions = [(tmp_path / name / "predictions.csv").read_text() for name in ("on_release", "on_export")]
    assert predictions[0] == predictions[1] and predictions[0].count("\n") > 5


def test_flow_export_recovers_a_known_shift(release_root, tmp_path, release_copy):
    release = load_release(release_copy, FIVE)
    sample = next(s for s in release.samples if s.apex is not None)
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.standard_normal((64, 72)).astype(np.float32), (0, 0), 2.0)
    texture = np.clip(128 + 60 * texture / texture.std(), 0, 255).astype(np.uint8)
    shift = 2                                                    # px to the right
    onset, apex = texture[:, 4:68], texture[:, 4 - shift:68 - shift]   # apex[x] = onset[x - 2]
    for path, grey in ((sample.onset_path, onset), (sample.apex_path, apex)):
        cv2.imwrite(str(path), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 100])
    export(release_copy, tmp_path / "maps", tmp_path / "cache", motion="flow", size=64)
    maps = np.load(tmp_path / "maps" / sample.subject / f"{sample.filename}_motion.npy")   # (3, 64, 64)
    u_px = maps[0, 8:-8, 8:-8] * 64 / 100                       # percent of the side -> px
    assert abs(float(np.median(u_px)) - shift) < 0.1 * shift
    assert abs(float(np.median(maps[1, 8:-8, 8:-8]))) < 0.1 * shift * 100 / 64


def test_a_killed_export_resumes_to_identical_files(release_root, tmp_path, monkeypatch):
    export(release_root, tmp_path / "whole", tmp_path / "cache", size=32)
    writes = {"n": 0}
    original = data.export.atomic_write_bytes

    def dying_write(path, content):
        writes["n"] += 1
        if writes["n"] > 35:                     # half-way through a sample of the second chunk
            raise KeyboardInterrupt
        original(path, content)

    monkeypatch.setattr(data.export, "atomic_write_bytes", dying_write)
    with pytest.raises(KeyboardInterrupt):
        export(release_root, tmp_path / "part", tmp_path / "cache", size=32)
    monkeypatch.undo()
    assert not (tmp_path / "part" / "index.csv").exists()
    (tmp_path / "part" / ".index.csv.x1y2.tmp").write_bytes(b"half")   # left by a kill mid-write
    assert prepare.main(["export", "--raf_path", str(release_root), "--out", str(tmp_path / "part"),
                         "--size", "32", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert folder_bytes(tmp_path / "part") == folder_bytes(tmp_path / "whole")


def _one_error(capsys) -> str:
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def test_bad_inputs_are_one_error_line(release_copy, tmp_path, capsys):
    base = ["export", "--raf_path", str(release_copy), "--cache-dir", str(tmp_path / "cache"), "--size", "32"]
    release = load_release(release_copy, FIVE)
    release.samples[0].onset_path.write_bytes(b"not a jpeg")
    assert prepare.main(base + ["--out", str(tmp_path / "a")]) == 2
    assert "cannot read onset frame" in _one_error(capsys)

    sheet = release.sheet_path
    book = openpyxl.load_workbook(sheet)
    book["Sheet1"]["D3"] = 10_000                               # OnsetFrame after OffsetFrame
    book.save(sheet)
    assert prepare.main(base + ["--out", str(tmp_path / "b")]) == 2
    assert "is after OffsetFrame" in _one_error(capsys)


def test_out_folder_with_other_settings_or_other_files(release_root, tmp_path, capsys):
    base = ["export", "--raf_path", str(release_root), "--cache-dir", str(tmp_path / "cache")]
    assert prepare.main(base + ["--out", str(tmp_path / "maps"), "--size", "32"]) == 0
    assert prepare.main(base + ["--out", str(tmp_path / "maps"), "--size", "48"]) == 2
    line = _one_error(capsys)
    assert "different settings" in line and "size 32 there, 48 now" in line
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    assert prepare.main(base + ["--out", str(tmp_path / "other")]) == 2
    assert "not empty" in _one_error(capsys)
    assert prepare.main(base + ["--out", str(tmp_path / "c"), "--style", "ststnet", "--motion", "diff"]) == 2
    assert "--style ststnet" in _one_error(capsys)


def test_npy_motion_maps_are_read_as_they_are(release_root, tmp_path):
    export(release_root, tmp_path / "maps", tmp_path / "cache", size=32)
    first = load_motion_maps(tmp_path / "maps", FIVE, img_size=32)
    path = tmp_path / "maps" / "sub01" / f"{first.names[0]}_motion.npy"
    values = np.load(path)                                      # (3, 32, 32)
    np.save(path, values.transpose(1, 2, 0) * 7.0)             # channels last, far outside [-1, 1]
    again = load_motion_maps(tmp_path / "maps", FIVE, img_size=32)
    assert np.array_equal(again.motion[0], values * 7.0)
    np.save(path, values[:2])                                   # two channels: not a motion map
    skipped = load_motion_maps(tmp_path / "maps", FIVE, img_size=32)
    assert len(skipped.names) == len(first.names) - 1 and "(3, H, W)" in skipped.skipped[0]


# --------------------------------------------------------------------------- apex spotting

def _clip_errors(sigma: float, n_clips: int = 10) -> list[int]:
    """Spotting error (frames) on clips whose 1-3 px motion peaks at a known frame."""
    errors = []
    for i in range(n_clips):
        rng = np.random.default_rng([7, i])
        face, _ = draw_face((64, 76), subject_style(7, i % 4 + 1))
        codes = list(EMOTION_AUS.values())[i % 5]
        aus = tuple(sorted(parse_action_units(codes[int(rng.integers(len(codes)))])))
        dx, dy = displacement_field((64, 76), aus, float(rng.uniform(1.0, 3.0)))
        render = ClipRenderer(face, dx, dy)
        length = int(rng.integers(20, 41))
        apex = int(rng.integers(length // 4, 3 * length // 4))
        frames = []
        for t in range(length):   # linear rise to the apex and fall to the offset
            strength = t / apex if t <= apex else (length - 1 - t) / (length - 1 - apex)
            img = render.face_at(strength) + rng.standard_normal((76, 64, 3)) * sigma
            frames.append(spot_face(np.clip(img + 0.5, 0, 255).astype(np.uint8), None))
        errors.append(spot_apex(list(range(length)), np.stack(frames)) - apex)
    return errors


@pytest.mark.parametrize("sigma, max_mean", [(1.5, 1.0), (4.0, 2.0), (8.0, 3.0)])
def test_spotting_lands_near_the_peak(sigma, max_mean):
    summary = error_summary(_clip_errors(sigma))
    assert summary["mean"] <= max_mean and summary["median"] <= 1 and summary["within5"] >= 0.8, summary


def test_sheet_without_apex_column_spots_every_apex(release_copy, tmp_path):
    sheet = next(release_copy.glob("*.xlsx"))
    book = openpyxl.load_workbook(sheet)
    book["Sheet1"].delete_cols(5)                               # ApexFrame
    book.save(sheet)
    release = load_release(release_copy, FIVE)
    assert all(s.apex is None for s in release.samples)
    assert sum("no ApexFrame column" in w for w in release.warnings) == 1
    truth = {(f"sub{c.subject:02d}", c.filename): c.true_apex for c in plan_clips(version="2019", **{
        k: RELEASE[k] for k in ("subjects", "per_subject", "seed", "clip_len")})}
    inputs = build_inputs(release, img_size=32, cache_dir=tmp_path / "cache", progress=False)
    notes = [w for w in inputs.warnings if "no annotated apex" in w]
    assert len(notes) == len(release.samples)
    spotted = [int(w.split("using frame ")[1].split()[0]) for w in notes]
    errors = [n - truth[s.key] for n, s in zip(spotted, release.samples)]
    assert error_summary(errors)["within5"] == 1.0


def test_spot_command_reports_and_writes_a_table(release_root, tmp_path):
    done = cli("prepare.py", "spot", "--raf_path", str(release_root), "--out", str(tmp_path / "spot.csv"))
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "spot.csv").read_text().splitlines()
    assert lines[0] == "subject,sample,onset,offset,annotated_apex,spotted_apex,error"
    annotated = [s for s in load_release(release_root, FIVE).samples if s.apex is not None]
    assert len(lines) == 1 + len(annotated)
    errors = [int(line.split(",")[-1]) for line in lines[1:]]
    summary = error_summary(errors)
    assert f"mean absolute error {summary['mean']:.2f} frames" in done.stdout and summary["within5"] == 1.0
    out = done.stdout.splitlines()
    groups = out[out.index("by clip length (frames):") + 1:out.index(next(l for l in out if l.startswith("largest")))]
    assert sum(int(line.split(": ")[1].split()[0]) for line in groups) == len(errors)   # every clip in one group
    worst = out[out.index(next(l for l in out if l.startswith("largest"))) + 1:]
    assert len(worst) == min(10, len(errors))
    assert abs(int(worst[0].rsplit("(", 1)[1].rstrip(")"))) == max(map(abs, errors))
