"""Hostile input against every tool's command line, one family of spellings per class of problem.

Each case runs `python SCRIPT ARGS` in its own process (tests/cli_runner.py, through
test_hostile.Runner) and must end with exit status 2, exactly one `error:` line holding the
expected words (the file, row or flag at fault), no traceback, nothing written outside the
case's own folder and the earlier results byte-identical. Warning families (degenerate clips,
maps built another way) end with exit status 0 and one `warning:` line instead.
"""
from __future__ import annotations

import csv
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import openpyxl
import pytest
import torch
import yaml

from data.protocols import get_protocol
from data.synthetic import generate_release, write_motion_map_folder
from helpers import FAST
from test_hostile import Result, Runner, snapshot
from utils.paths import run_checkpoint_dir, seed_folder
from utils.run_state import checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
TRAIN, PREDICT, PREPARE, COMPARE = (ROOT / name for name in ("CASME2_5.py", "predict.py", "prepare.py",
                                                              "compare.py"))


@dataclass
class World:
    root: Path
    release: Path        # 3 subjects x 4 samples, CASME II layout
    maps: Path           # its difference images as a motion-map folder (PNG, fixed scale)
    flow: Path           # its optical flow as STSTNet-style PNGs (min-max per image and channel)
    flow_fixed: Path     # its optical flow as PNGs on the fixed scale
    done: Path           # a finished one-fold run on `maps`
    model: Path          # model.pt trained on `maps` (--final-only)
    flow_model: Path     # model.pt trained on `flow` (--final-only)
    flow_ckpt: Path      # a fold checkpoint trained on `flow`
    env: dict[str, str]
    runner: Runner

    def run(self, script: Path, argv: list, case: Path) -> Result:
        return self.runner.run([str(a) for a in argv], self.env, case, script)


def per_image_png(fixed: Path, out: Path) -> Path:
    """A copy of a motion-map folder whose motion PNGs are min-max normalised per image and channel."""
    shutil.copytree(fixed, out)
    for path in out.rglob("*_motion.png"):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).astype(np.float64)
        low, high = image.min((0, 1)), image.max((0, 1))
        cv2.imwrite(str(path), np.round(255 * (image - low) / np.maximum(high - low, 1)).astype(np.uint8))
    return out


def train(w_root: Path, runner: Runner, env: dict, data: Path, name: str, *extra: str) -> Path:
    run = w_root / name
    made = runner.run(["--raf_path", str(data), "--checkpoint-dir", str(w_root / "ckpt"), "--output", str(run),
                       *FAST, "--epochs", "1", *extra], env, w_root, TRAIN)
    assert made.code == 0, made.out
    return run


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("families")
    release = generate_release(root / "release", subjects=3, per_subject=4, size=(32, 40), seed=3,
                               clip_len=(6, 8), emotions=("happiness", "surprise"))
    protocol = get_protocol("5class")
    maps = write_motion_map_folder(release, root / "maps", protocol, img_size=32, cache_dir=root / "cache")
    fixed = write_motion_map_folder(release, root / "flow-fixed", protocol, img_size=32, kind="flow",
                                    cache_dir=root / "cache")
    flow = per_image_png(fixed, root / "flow")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root / "home"), "AMGCN_CACHE": str(root / "envcache")}
    runner = Runner()
    done = train(root, runner, env, maps, "done", "--folds", "1")
    model = train(root, runner, env, maps, "final", "--final-only") / "model.pt"
    flow_model = train(root, runner, env, flow, "flow-final", "--final-only", "--motion", "flow",
                       "--center-maps") / "model.pt"
    flow_run = train(root, runner, env, flow, "flow-fold", "--folds", "1", "--motion", "flow", "--center-maps")
    flow_ckpt = checkpoint_path(run_checkpoint_dir(root / "ckpt", flow_run), "sub01")
    assert model.is_file() and flow_model.is_file() and flow_ckpt.is_file()
    (root / "cases").mkdir()
    yield World(root, release, maps, flow, fixed, done, model, flow_model, flow_ckpt, env, runner)
    runner.close()


# --------------------------------------------------------------------------- set-up helpers

def train_argv(w: World, case: Path, *extra, data: Path | None = None) -> list:
    return ["--raf_path", data or w.maps, "--cache-dir", case / "cache", "--checkpoint-dir", case / "ckpt",
            "--output", case / "run", *FAST, *extra]


def edited_maps(w: World, case: Path, edit: Callable[[list[dict]], None], source: Path | None = None) -> Path:
    """A copy of a motion-map folder whose index.csv rows went through `edit` (in place)."""
    maps = shutil.copytree(source or w.maps, case / "maps")
    with (maps / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    edit(rows)
    with (maps / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return maps


def set_cell(column: str, value: object, row: int = 0) -> Callable[[list[dict]], None]:
    def edit(rows: list[dict]) -> None:
        rows[row][column] = value
    return edit


def with_datasets(names: list[str]) -> Callable[[list[dict]], None]:
    """Every line gets dataset 'samm', except the first ones, which get `names`."""
    def edit(rows: list[dict]) -> None:
        for k, row in enumerate(rows):
            row["dataset"] = names[k] if k < len(names) else "samm"
    return edit


def edited_release(w: World, case: Path, column: str, value: object) -> Path:
    """A copy of the release whose sheet's first data row holds `value` in `column`."""
    release = shutil.copytree(w.release, case / "release", symlinks=True)
    sheet = next(release.glob("*.xlsx"))
    book = openpyxl.load_workbook(sheet)
    sheet_rows = book.active
    header = [c.value for c in sheet_rows[1]]
    sheet_rows.cell(row=2, column=header.index(column) + 1, value=value)
    book.save(sheet)
    return release


def outside_folder(w: World, case: Path) -> Path:
    """A folder outside the dataset holding an image, for symbolic links to point at."""
    target = case / "elsewhere"
    target.mkdir()
    shutil.copyfile(next(w.maps.rglob("*_motion.png")), target / "x.png")
    return target


def motion_cell(value: str) -> Callable[[World, Path], list]:
    return lambda w, c: train_argv(w, c, data=edited_maps(w, c, set_cell("motion", value)))


def motion_symlink(w: World, case: Path) -> list:
    maps = edited_maps(w, case, set_cell("motion", "link/x.png"))
    (maps / "link").symlink_to(outside_folder(w, case), target_is_directory=True)
    return train_argv(w, case, data=maps)


def filename_cell(value: str, script: Path = TRAIN) -> Callable[[World, Path], list]:
    def setup(w: World, case: Path) -> list:
        release = edited_release(w, case, "Filename", value)
        if script == PREPARE:
            return ["export", "--raf_path", release, "--out", case / "out", "--cache-dir", case / "cache"]
        return train_argv(w, case, data=release)
    return setup


def filename_symlink(w: World, case: Path) -> list:
    release = edited_release(w, case, "Filename", "EPlink")
    (release / "Cropped" / "sub01" / "EPlink").symlink_to(outside_folder(w, case), target_is_directory=True)
    return train_argv(w, case, data=release)


def big_npy(value: float) -> Callable[[World, Path], list]:
    def setup(w: World, case: Path) -> list:
        maps = edited_maps(w, case, set_cell("motion", "big.npy", row=2))
        np.save(maps / "big.npy", np.full((3, 32, 32), value, np.float32))
        return train_argv(w, case, data=maps)
    return setup


def copy_run(w: World, case: Path, name: str = "run") -> Path:
    return shutil.copytree(w.done, case / name)


def edit_args(run: Path, **changes) -> None:
    saved = yaml.safe_load((run / "args.yaml").read_text())
    saved.update(changes)
    (run / "args.yaml").write_text(yaml.safe_dump(saved))


def resume_argv(run: Path, case: Path, *extra) -> list:
    return ["--resume", run, "--checkpoint-dir", case / "ckpt", "--device", "cpu", *extra]


def seeds_parent(w: World, case: Path, **changes) -> list:
    """A finished --seeds parent (seed0, seed1, the aggregate summary) whose args.yaml went through `changes`."""
    parent = case / "parent"
    for seed in (0, 1):
        shutil.copytree(w.done, seed_folder(parent, seed))
    (parent / "summary.json").write_text("{}\n")
    shutil.copyfile(w.done / "args.yaml", parent / "args.yaml")
    edit_args(parent, **{"output": str(parent), "seeds": [0, 1], **changes})
    return resume_argv(parent, case)


def loso_with(w: World, case: Path, remove: tuple[str, ...] = (), **changes) -> list:
    run = copy_run(w, case)
    for name in remove:
        shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
    edit_args(run, **changes)
    return resume_argv(run, case)


def predictions_repeated(w: World, case: Path, line: int) -> list:
    run = copy_run(w, case, "copied")
    lines = (run / "predictions.csv").read_text().splitlines(keepends=True)
    (run / "predictions.csv").write_text("".join(lines + [lines[line - 1]]))
    return [w.done, run]


def damaged_model(change: Callable[[dict], None]) -> Callable[[World, Path], list]:
    def setup(w: World, case: Path) -> list:
        record = torch.load(w.model, weights_only=True)
        change(record)
        torch.save(record, case / "model.pt")
        return ["--model", case / "model.pt", *diff_map(w)]
    return setup


def preprocessing(**changes) -> Callable[[dict], None]:
    return lambda record: record["preprocessing"].update(changes)


def a_file(case: Path) -> Path:
    path = case / "a-file"
    path.write_text("not a folder\n")
    return path


def clip_folder(w: World) -> Path:
    return next(p for p in (w.release / "Cropped" / "sub01").iterdir() if p.is_dir())


def diff_map(w: World) -> list:
    """--motion-map and --face of one difference image of the motion-map folder."""
    return ["--motion-map", next(w.maps.rglob("*_motion.png")), "--face", next(w.maps.rglob("*_face.jpg"))]


def predict_map(w: World, *extra) -> list:
    return ["--model", w.model, *diff_map(w), *extra]


# --------------------------------------------------------------------------- the families

Case = tuple[Path, Callable[[World, Path], list], str]   # (script, set-up returning argv, words of the error line)
FAMILIES: dict[str, dict[str, Case]] = {
    "path leaves the dataset": {
        "motion-dotdot": (TRAIN, motion_cell("../maps/sub01/x.png"), "line 2: 'motion' '../maps/sub01/x.png' climbs"),
        "motion-absolute": (TRAIN, motion_cell("/etc/passwd"), "line 2: 'motion' '/etc/passwd' is absolute"),
        "motion-backslash": (TRAIN, motion_cell("..\\..\\x.png"),
                             "line 2: 'motion' '..\\\\..\\\\x.png' holds a backslash"),
        "motion-symlink": (TRAIN, motion_symlink, "line 2: 'motion' 'link/x.png' leads out"),
        "face-dotdot": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, set_cell("face", "a/../../f.jpg"))),
                        "line 2: 'face'"),
        "filename-dotdot": (TRAIN, filename_cell("../../../../evil"), "row 2, column 'Filename'"),
        "filename-absolute": (TRAIN, filename_cell("/tmp/evil"), "row 2, column 'Filename'"),
        "filename-backslash": (TRAIN, filename_cell("..\\evil"), "row 2, column 'Filename'"),
        "filename-symlink": (TRAIN, filename_symlink, "'EPlink' leads out"),
        "export-filename-dotdot": (PREPARE, filename_cell("../../../evil", PREPARE), "row 2, column 'Filename'"),
        "export-filename-absolute": (PREPARE, filename_cell("/tmp/evil", PREPARE), "row 2, column 'Filename'"),
    },
    "dataset name": {
        "blank": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, with_datasets([""]))),
                  "line 2: blank 'dataset' while line 3"),
        "spaces": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, with_datasets(["samm", "  "]))),
                   "line 3: blank 'dataset' while line 2"),
        "tab": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, with_datasets(["sa\tmm"]))),
                "line 2: 'dataset' 'sa\\tmm' holds a control character"),
        "newline": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, with_datasets(["sa\nmm"]))),
                    "'dataset' 'sa\\nmm' holds a control character"),
        "slash": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, with_datasets(["samm/sub02"]))),
                  "line 2: 'dataset' 'samm/sub02' holds a '/'"),
    },
    "argument set does not match the folder": {
        "seeds-parent-lost-seeds": (TRAIN, lambda w, c: seeds_parent(w, c, seeds=None),
                                    "holds a --seeds run, but"),
        "seeds-parent-says-final-only": (TRAIN, lambda w, c: seeds_parent(w, c, seeds=None, final_only=True,
                                                                        folds=None), "describes a --final-only run"),
        "loso-says-seeds": (TRAIN, lambda w, c: loso_with(w, c, seeds=[0, 1]), "holds a LOSO run, but"),
        "summary-without-samples": (TRAIN, lambda w, c: loso_with(w, c, remove=("samples.json", "folds")),
                                    "holds summary.json but neither samples.json"),
    },
    "AU cell": {
        "nested-parentheses": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(
            w, c, set_cell("aus", "(" * 400 + "4" + ")" * 400))), "line 2, column 'aus'"),
        "nested-ref": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(
            w, c, set_cell("aus", "ref(" * 120 + "4" + ")" * 120))), "line 2, column 'aus'"),
        "open-ref": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, set_cell("aus", "ref(" * 300))),
                     "line 2, column 'aus'"),
        "long-number": (TRAIN, lambda w, c: train_argv(w, c, data=edited_maps(w, c, set_cell("aus", "4" * 5000))),
                        "line 2, column 'aus'"),
        "sheet-nested": (TRAIN, lambda w, c: train_argv(w, c, data=edited_release(
            w, c, "Action Units", "(" * 350 + "4" + ")" * 350)), "row 2, column 'Action Units'"),
        "sheet-long-number": (TRAIN, lambda w, c: train_argv(w, c, data=edited_release(w, c, "Action Units",
                                                                                       "1" * 5000)),
                              "row 2, column 'Action Units'"),
    },
    "number out of range": {
        "predict-batch-zero": (PREDICT, lambda w, c: predict_map(w, "--batch-size", "0"), "--batch-size"),
        "predict-batch-huge": (PREDICT, lambda w, c: predict_map(w, "--batch-size", "10000000000"), "--batch-size"),
        "predict-frame-huge": (PREDICT, lambda w, c: ["--model", w.model, "--clip", clip_folder(w), "--onset",
                                                      "9" * 30, "--apex", "1"], "--onset '9999"),
        "export-size-huge": (PREPARE, lambda w, c: ["export", "--raf_path", w.release, "--out", c / "out",
                                                    "--size", "100000"], "--size 100000: must be from 8 to 2048"),
        "export-size-zero": (PREPARE, lambda w, c: ["export", "--raf_path", w.release, "--out", c / "out",
                                                    "--size", "0"], "--size 0"),
        "export-workers-negative": (PREPARE, lambda w, c: ["export", "--raf_path", w.release, "--out", c / "out",
                                                           "--workers", "-1"], "--workers"),
        "compare-seed-negative": (COMPARE, lambda w, c: [w.done, w.done, "--seed", "-1"], "--seed"),
        "compare-seed-huge": (COMPARE, lambda w, c: [w.done, w.done, "--seed", str(2**40)], "--seed"),
        "compare-rounds-zero": (COMPARE, lambda w, c: [w.done, w.done, "--rounds", "0"], "--rounds"),
        "offset-frame-huge": (TRAIN, lambda w, c: train_argv(w, c, data=edited_release(w, c, "OffsetFrame", 10**15)),
                              "row 2, column 'OffsetFrame'"),
        "offset-frame-float": (TRAIN, lambda w, c: train_argv(w, c, data=edited_release(w, c, "OffsetFrame", 1e300)),
                               "row 2, column 'OffsetFrame'"),
        "offset-frame-digits": (TRAIN, lambda w, c: train_argv(w, c, data=edited_release(w, c, "OffsetFrame",
                                                                                         "9" * 40)),
                                "row 2, column 'OffsetFrame'"),
        "npy-3e38": (TRAIN, big_npy(3e38), "big.npy holds values beyond"),
        "npy-minus-3e38": (TRAIN, big_npy(-3e38), "big.npy holds values beyond"),
        "npy-1e6": (TRAIN, big_npy(1e6), "big.npy holds values beyond"),
    },
    "output file cannot be written": {
        "json-a-folder": (COMPARE, lambda w, c: [w.done, w.done, "--json", c], "--json"),
        "json-under-a-file": (COMPARE, lambda w, c: [w.done, w.done, "--json", a_file(c) / "x.json"],
                              "a-file is a file"),
        "json-read-only": (COMPARE, lambda w, c: [w.done, w.done, "--json", "/sys/amgcn.json"], "--json /sys"),
        "plot-a-folder": (COMPARE, lambda w, c: [w.done, w.done, "--plot", c], "--plot"),
        "plot-under-a-file": (COMPARE, lambda w, c: [w.done, w.done, "--plot", a_file(c) / "x.png"],
                              "a-file is a file"),
        "csv-a-folder": (PREDICT, lambda w, c: predict_map(w, "--csv", c), "--csv"),
    },
    "repeated predictions row": {
        "first-row": (COMPARE, lambda w, c: predictions_repeated(w, c, 2), "lines 2 and"),
        "last-row": (COMPARE, lambda w, c: predictions_repeated(w, c, 5), "lines 5 and"),
    },
    "flags that exclude each other": {
        "final-only-seeds": (TRAIN, lambda w, c: train_argv(w, c, "--final-only", "--seeds", "0,1"), "--seeds"),
        "final-only-folds": (TRAIN, lambda w, c: train_argv(w, c, "--final-only", "--folds", "1"), "--folds"),
    },
    "damaged model file": {
        "preprocessing-empty": (PREDICT, damaged_model(lambda r: r.update(preprocessing={})), "img_size None"),
        "img-size-text": (PREDICT, damaged_model(preprocessing(img_size="32")), "img_size '32'"),
        "img-size-huge": (PREDICT, damaged_model(preprocessing(img_size=10**9)), "img_size 1000000000"),
        "motion-unknown": (PREDICT, damaged_model(preprocessing(motion="optical")), "motion 'optical'"),
        "protocol-unknown": (PREDICT, damaged_model(preprocessing(protocol=7)), "protocol 7"),
        "maps-record-damaged": (PREDICT, damaged_model(preprocessing(maps={"file_kind": 3})), "preprocessing: maps"),
        "preprocessing-a-list": (PREDICT, damaged_model(lambda r: r.update(preprocessing=[1])), "not a mapping"),
    },
    "resume with another thread count": {
        "saved-threads-past-the-cores": (TRAIN, lambda w, c: loso_with(w, c, threads=100000),
                                         "args.yaml: the run used --threads 100000"),
    },
    "maps of another kind": {
        "diff-png-to-flow-model": (PREDICT, lambda w, c: ["--model", w.flow_model, *diff_map(w)],
                                   "look like difference images"),
        "diff-png-said-flow": (PREDICT, lambda w, c: ["--model", w.flow_model, *diff_map(w), "--map-kind", "flow"],
                               "look like difference images"),
        "diff-folder-to-flow-model": (PREDICT, lambda w, c: ["--model", w.flow_model, "--raf_path", w.maps],
                                      "look like difference images"),
        "diff-folder-to-flow-checkpoint": (PREDICT, lambda w, c: ["--model", w.flow_ckpt, "--raf_path", w.maps],
                                           "look like difference images"),
        "flow-folder-to-diff-model": (PREDICT, lambda w, c: ["--model", w.model, "--raf_path", w.flow],
                                      "look like flow maps"),
    },
}
CASES = {f"{family}: {name}": case for family, cases in FAMILIES.items() for name, case in cases.items()}
NEEDS_SYS = {"output file cannot be written: json-read-only"}


@pytest.mark.parametrize("name", list(CASES))
def test_refused_with_one_line_and_nothing_written(world, name):
    if name in NEEDS_SYS and not Path("/sys").is_dir():
        pytest.skip("needs Linux's read-only /sys")
    script, setup, needle = CASES[name]
    case = world.root / "cases" / name.replace(": ", "-").replace(" ", "-")
    case.mkdir()
    argv = setup(world, case)
    before, own_before = snapshot(world.root, case), snapshot(case, case / "cache")
    result = world.run(script, argv, case)
    print(f"{name}: exit {result.code}: {' | '.join(result.error_lines)}")
    assert "Traceback" not in result.out, result.out
    assert result.code == 2, result.out
    assert len(result.error_lines) == 1, result.out
    assert result.error_lines[0].startswith("error: ") and needle in result.error_lines[0], result.error_lines
    assert snapshot(world.root, case) == before   # earlier results byte-identical, nothing written elsewhere
    assert snapshot(case, case / "cache") == own_before
    assert not (case / "out").exists() and not (case / "run").exists() or argv[0] == "--resume"


# --------------------------------------------------------------------------- warnings, and what now works

def tiny_frames(case: Path) -> tuple[Path, Path]:
    onset, apex = case / "onset.png", case / "apex.png"
    cv2.imwrite(str(onset), np.full((1, 1, 3), 90, np.uint8))
    cv2.imwrite(str(apex), np.full((1, 1, 3), 160, np.uint8))
    return onset, apex


def one_frame_clip(w: World, case: Path) -> list:
    clip = case / "clip"
    clip.mkdir()
    shutil.copyfile(next(clip_folder(w).glob("*.jpg")), clip / "img1.jpg")
    return ["--model", w.model, "--clip", clip, "--onset", "1", "--apex", "1"]


def clip_frames(w: World, onset: int, apex: int) -> list:
    numbers = sorted(int("".join(filter(str.isdigit, p.stem))) for p in clip_folder(w).glob("*.jpg"))
    return ["--model", w.model, "--clip", clip_folder(w), "--onset", numbers[onset], "--apex", numbers[apex]]


WARNINGS: dict[str, tuple[Callable[[World, Path], list], str]] = {
    "onset-is-apex-frame": (lambda w, c: clip_frames(w, 0, 0), "are the same file"),
    "onset-is-apex-file": (lambda w, c: ["--model", w.model, "--onset", next(clip_folder(w).glob("*.jpg")),
                                         "--apex", next(clip_folder(w).glob("*.jpg"))], "are the same file"),
    "apex-before-onset": (lambda w, c: clip_frames(w, 3, 1), "comes before --onset"),
    "one-frame-clip": (one_frame_clip, "holds a single frame"),
    "1x1-frames": (lambda w, c: ["--model", w.model, "--onset", tiny_frames(c)[0], "--apex", c / "apex.png"],
                   "is 1x1 px"),
    "fixed-flow-to-per-image-model": (lambda w, c: ["--model", w.flow_model, "--raf_path", w.flow_fixed],
                                      "built another way than the model's training maps: these maps are on a "
                                      "fixed scale"),
}


@pytest.mark.parametrize("name", list(WARNINGS))
def test_doubtful_input_is_predicted_with_a_warning(world, name):
    setup, needle = WARNINGS[name]
    case = world.root / "cases" / f"warn-{name}"
    case.mkdir()
    result = world.run(PREDICT, setup(world, case), case)
    print(f"{name}: exit {result.code}: {result.out[-400:]}")
    assert result.code == 0 and not result.error_lines and "Traceback" not in result.out, result.out
    assert [line for line in result.out.splitlines() if needle in line][0].startswith("warning: "), result.out


def test_flow_pngs_predict_as_they_trained_and_explain(world):
    """A model trained on per-image-normalised flow PNGs predicts that folder, one map (explained) and,
    as a fold checkpoint, the folder again: no refusal, no warning."""
    case = world.root / "cases" / "flow-png"
    case.mkdir()
    one_map = next(world.flow.rglob("*_motion.png"))
    for argv in (["--model", world.flow_model, "--raf_path", world.flow],
                 ["--model", world.flow_model, "--motion-map", one_map, "--face",
                  one_map.with_name(one_map.name.replace("_motion.png", "_face.jpg")), "--explain", case / "why"],
                 ["--model", world.flow_ckpt, "--raf_path", world.flow]):
        result = world.run(PREDICT, argv, case)
        assert result.code == 0 and "warning" not in result.out and "error" not in result.out, result.out
    assert len(list((case / "why").glob("*.png"))) == 1
    reading = torch.load(world.flow_model, weights_only=True)["preprocessing"]["maps"]
    assert (reading["file_kind"], reading["normalisation"], reading["centred"], reading["count"]) == \
        ("png", "per-image", True, 1)


def test_dataset_names_that_differ_only_in_case_and_spaces_are_one_dataset(world):
    case = world.root / "cases" / "dataset-case"
    case.mkdir()
    maps = edited_maps(world, case, lambda rows: [r.update(dataset=("CASME2 " if k % 2 else "casme2"))
                                                  for k, r in enumerate(rows)])
    result = world.run(TRAIN, train_argv(world, case, "--dry-run", data=maps), case)
    assert result.code == 0, result.out
    assert "LOSO folds (3): sub01, sub02, sub03" in result.out, result.out


def test_resume_keeps_the_runs_thread_count_and_notes_another(world):
    case = world.root / "cases" / "threads"
    case.mkdir()
    run = copy_run(world, case)
    saved = yaml.safe_load((run / "args.yaml").read_text())["threads"]
    assert isinstance(saved, int) and saved >= 1   # the count used, not 0 (which means "this machine's")
    before = snapshot(run / "folds", run / "nothing"), (run / "predictions.csv").read_bytes()
    again = world.run(TRAIN, resume_argv(run, case), case)
    assert again.code == 0 and "note: --threads" not in again.out, again.out
    if (os.cpu_count() or 1) < 2:
        pytest.skip("another thread count needs two cores")
    other = world.run(TRAIN, resume_argv(run, case, "--threads", "2" if saved == 1 else "1"), case)
    notes = [line for line in other.out.splitlines() if line.startswith("note: --threads")]
    assert other.code == 0 and len(notes) == 1 and "not be bit-identical" in notes[0], other.out
    assert (snapshot(run / "folds", run / "nothing"), (run / "predictions.csv").read_bytes()) == before


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_written_files_keep_the_umasks_mode(world, umask):
    case = world.root / "cases" / f"umask-{umask:o}"
    case.mkdir()
    out = case / "cmp.json"
    done = subprocess.run([sys.executable, str(COMPARE), str(world.done), str(world.done), "--json", str(out),
                           "--rounds", "10"], cwd=ROOT, env=world.env, capture_output=True, text=True,
                          preexec_fn=lambda: os.umask(umask), timeout=120)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
