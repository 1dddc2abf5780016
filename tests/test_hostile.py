"""Hostile but fair input through the command line: one table of cases, each run as
`python CASME2_5.py ARGS` in its own process (forked by tests/cli_runner.py from a warm
interpreter; one case is also run as a plain subprocess to show the two agree).

For every case: the documented exit status (2 for bad input), exactly one `error:` line
naming the flag, file or row, no traceback, nothing written outside the case's own folder,
and every earlier run (the finished run made once per module, earlier cases' folders)
byte-identical. Almost all cases fail before training starts.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
import torch
import yaml

from data.protocols import get_protocol
from data.synthetic import generate_release, write_motion_map_folder
from helpers import FAST
from utils.paths import file_stem, run_checkpoint_dir
from utils.run_state import checkpoint_path, fold_result_path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "CASME2_5.py"
TIMEOUT = 120


@dataclass
class Result:
    code: int
    out: str            # stdout and stderr together

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.out.splitlines() if "error:" in line]


class Runner:
    """Sends command lines to one tests/cli_runner.py process (see its docstring)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "cli_runner.py")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self, argv: list[str], env: dict[str, str], folder: Path, script: Path = SCRIPT) -> Result:
        out, err = folder / "stdout.txt", folder / "stderr.txt"
        request = {"script": str(script), "argv": argv, "env": env, "cwd": str(ROOT),
                   "stdout": str(out), "stderr": str(err), "timeout": TIMEOUT}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        code = json.loads(self.proc.stdout.readline())["code"]
        text = out.read_text() + err.read_text()
        out.unlink()
        err.unlink()
        return Result(code, text)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@dataclass
class World:
    root: Path
    release: Path       # 3 subjects x 4 samples, CASME II layout
    maps: Path          # the same samples as a motion-map folder
    cache: Path
    done: Path          # a finished one-fold run on `maps`
    done_ckpt: Path     # its checkpoint of fold sub01
    env: dict[str, str]
    runner: Runner


def cli(w: World, case: Path, *extra: str, data: Path | None = None, cache: bool = True) -> list[str]:
    """A new run whose files all go under `case`; later flags in `extra` win."""
    return ["--raf_path", str(data or w.maps), *(["--cache-dir", str(w.cache)] if cache else []),
            "--checkpoint-dir", str(case / "ckpt"), "--output", str(case / "run"), *FAST, *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("hostile")
    release = generate_release(root / "release", subjects=3, per_subject=4, size=(32, 40), seed=3,
                               clip_len=(6, 8), emotions=("happiness", "surprise"))
    maps = write_motion_map_folder(release, root / "maps", get_protocol("5class"), img_size=32,
                                   cache_dir=root / "cache")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root / "home"), "AMGCN_CACHE": str(root / "envcache")}
    w = World(root, release, maps, root / "cache", root / "done", Path(), env, Runner())
    made = w.runner.run(["--raf_path", str(maps), "--checkpoint-dir", str(root / "ckpt"), "--output", str(w.done),
                         *FAST, "--folds", "1", "--epochs", "1"], env, root)
    assert made.code == 0, made.out
    w.done_ckpt = checkpoint_path(run_checkpoint_dir(root / "ckpt", w.done), "sub01")
    assert w.done_ckpt.is_file()
    (root / "cases").mkdir()
    yield w
    w.runner.close()


def snapshot(root: Path, skip: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under `root` outside `skip`."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and skip not in p.parents}


# --------------------------------------------------------------------------- case set-ups

def copy_done(w: World, case: Path, *, partial: bool = False) -> Path:
    """A copy of the finished run in `case`; partial: its fold result gone, its checkpoint in place."""
    run = case / "run"
    shutil.copytree(w.done, run)
    if partial:
        for name in ("folds", "summary.json", "predictions.csv", "folds.csv", "confusion_matrix.png"):
            shutil.rmtree(run / name) if (run / name).is_dir() else (run / name).unlink()
        target = checkpoint_path(run_checkpoint_dir(case / "ckpt", run), "sub01")
        target.parent.mkdir(parents=True)
        shutil.copyfile(w.done_ckpt, target)
    return run


def resume(run: Path, case: Path, *extra: str) -> list[str]:
    return ["--resume", str(run), "--checkpoint-dir", str(case / "ckpt"), "--device", "cpu", *extra]


def edit_args(run: Path, edit: Callable[[dict], None]) -> None:
    saved = yaml.safe_load((run / "args.yaml").read_text())
    edit(saved)
    (run / "args.yaml").write_text(yaml.safe_dump(saved))


def resume_with_args_text(text: str) -> Callable:
    def setup(w: World, case: Path) -> list[str]:
        run = copy_done(w, case)
        (run / "args.yaml").write_text(text)
        return resume(run, case)
    return setup


def resume_with_args(edit: Callable[[dict], None]) -> Callable:
    def setup(w: World, case: Path) -> list[str]:
        run = copy_done(w, case)
        edit_args(run, edit)
        return resume(run, case)
    return setup


def resume_with_fold_file(edit: Callable[[dict], object]) -> Callable:
    def setup(w: World, case: Path) -> list[str]:
        run = copy_done(w, case)
        path = fold_result_path(run, "sub01")
        result = json.loads(path.read_text())
        path.write_text(str(edit(result)))
        return resume(run, case)
    return setup


def resume_with_checkpoint(edit: Callable[[Path], None]) -> Callable:
    def setup(w: World, case: Path) -> list[str]:
        run = copy_done(w, case, partial=True)
        edit(checkpoint_path(run_checkpoint_dir(case / "ckpt", run), "sub01"))
        return resume(run, case)
    return setup


def edit_checkpoint(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        ckpt = torch.load(path, weights_only=True)
        torch.save(change(ckpt) or ckpt, path)
    return edit


def reshaped(ckpt: dict) -> None:
    name = next(iter(ckpt["model"]))
    ckpt["model"][name] = torch.zeros(7, 7)


def probs_of_wrong_length(result: dict) -> str:
    result["probs"] = [row[:-1] for row in result["probs"]]
    return json.dumps(result)


def nan_probs(result: dict) -> str:
    result["probs"][0][0] = float("nan")
    return json.dumps(result)


def copy_maps(w: World, case: Path, edit: Callable[[list[dict]], list[dict] | None]) -> Path:
    """A copy of the motion-map folder whose index.csv rows went through `edit`."""
    maps = shutil.copytree(w.maps, case / "maps")
    with (maps / "index.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rows = edit(rows) or rows
    with (maps / "index.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return maps


def data_changed(w: World, case: Path) -> list[str]:
    def edit(rows: list[dict]) -> list[dict]:
        added = dict(rows[1], sample="EP99_new")
        return [r for r in rows if r is not rows[5]] + [added]
    maps = copy_maps(w, case, edit)
    run = copy_done(w, case)
    edit_args(run, lambda a: a.update(raf_path=str(maps)))
    return resume(run, case)


def nan_motion_map(w: World, case: Path) -> list[str]:
    def edit(rows: list[dict]) -> None:
        rows[2]["motion"] = "nan.tiff"
    maps = copy_maps(w, case, edit)
    image = np.zeros((32, 32, 3), np.float32)
    image[3, 4] = np.nan
    assert cv2.imwrite(str(maps / "nan.tiff"), image)
    return cli(w, case, "--strict", data=maps)


def control_character_subject(w: World, case: Path) -> list[str]:
    def edit(rows: list[dict]) -> None:
        rows[0]["subject"] = "sub01\nerror: forged"
    return cli(w, case, data=copy_maps(w, case, edit))


def broken_release(w: World, case: Path, subjects: tuple[str, ...]) -> Path:
    """A copy of the release whose frames of `subjects` are not images."""
    release = shutil.copytree(w.release, case / "release")
    for subject in subjects:
        for frame in (release / "Cropped" / subject).rglob("*.jpg"):
            frame.write_bytes(b"not a jpeg")
    return release


def pretrained(content: Callable[[Path], None]) -> Callable:
    def setup(w: World, case: Path) -> list[str]:
        path = case / "weights.pt"
        content(path)
        return cli(w, case, "--pretrained", str(path))
    return setup


class Opaque:
    """An object weights-only loading refuses."""


def nan_weights(w: World) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        state = torch.load(w.done_ckpt, weights_only=True)["model"]
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = torch.full_like(state[name], float("nan"))
        torch.save(state, path)
    return write


def samples_json_corrupt(w: World, case: Path) -> list[str]:
    run = copy_done(w, case)
    (run / "samples.json").write_text("{")
    return resume(run, case)


def saved_checkpoint_dir_is_a_file(w: World, case: Path) -> list[str]:
    run = copy_done(w, case)
    edit_args(run, lambda a: a.update(checkpoint_dir=str(a_file(case))))
    return ["--resume", str(run), "--device", "cpu"]


def a_file(case: Path) -> Path:
    path = case / "a-file"
    path.write_text("not a folder\n")
    return path


# id -> (set-up returning argv, expected exit status, text the error line must hold)
CASES: dict[str, tuple[Callable[[World, Path], list[str]], int, str]] = {
    "lr-inf": (lambda w, c: cli(w, c, "--lr", "inf"), 2, "--lr"),
    "lr-nan": (lambda w, c: cli(w, c, "--lr", "nan"), 2, "--lr"),
    "lr-zero": (lambda w, c: cli(w, c, "--lr", "0"), 2, "--lr"),
    "weight-decay-nan": (lambda w, c: cli(w, c, "--weight-decay", "nan"), 2, "--weight-decay"),
    "weight-decay-negative": (lambda w, c: cli(w, c, "--weight-decay", "-1"), 2, "--weight-decay"),
    "au-loss-weight-nan": (lambda w, c: cli(w, c, "--au-loss-weight", "nan"), 2, "--au-loss-weight"),
    "au-loss-weight-negative": (lambda w, c: cli(w, c, "--au-loss-weight", "-5"), 2, "--au-loss-weight"),
    "checkpoint-interval-nan": (lambda w, c: cli(w, c, "--checkpoint-interval", "nan"), 2, "--checkpoint-interval"),
    "checkpoint-interval-negative": (lambda w, c: cli(w, c, "--checkpoint-interval", "-1"), 2,
                                     "--checkpoint-interval"),
    "threads-huge": (lambda w, c: cli(w, c, "--threads", "100000"), 2, "--threads"),
    "workers-huge": (lambda w, c: cli(w, c, "--workers", "100000"), 2, "--workers"),
    "epochs-zero": (lambda w, c: cli(w, c, "--epochs", "0"), 2, "--epochs"),
    "epochs-fraction": (lambda w, c: cli(w, c, "--epochs", "2.5"), 2, "--epochs"),
    "batch-size-one": (lambda w, c: cli(w, c, "--batch_size", "1"), 2, "--batch_size"),
    "eval-batch-size-zero": (lambda w, c: cli(w, c, "--eval-batch-size", "0"), 2, "--eval-batch-size"),
    "img-size-huge": (lambda w, c: cli(w, c, "--img-size", "100000"), 2, "--img-size"),
    "embed-dim-not-multiple": (lambda w, c: cli(w, c, "--embed-dim", "30"), 2, "--embed-dim"),
    "seed-negative": (lambda w, c: cli(w, c, "--seed", "-1"), 2, "--seed"),
    "seeds-huge": (lambda w, c: cli(w, c, "--seeds", "0,99999999999"), 2, "--seeds"),
    "val-subjects-negative": (lambda w, c: cli(w, c, "--val-subjects", "-1"), 2, "--val-subjects"),
    "val-subjects-leave-none": (lambda w, c: cli(w, c, "--val-subjects", "2"), 2, "--val-subjects"),
    "folds-empty": (lambda w, c: cli(w, c, "--folds", ""), 2, "--folds"),
    "folds-comma": (lambda w, c: cli(w, c, "--folds", ","), 2, "--folds"),
    "folds-unknown": (lambda w, c: cli(w, c, "--folds", "sub99"), 2, "--folds"),
    "layout-unknown": (lambda w, c: cli(w, c, "--layout", "weird", data=w.release), 2, "--layout"),
    "device-unknown": (lambda w, c: cli(w, c, "--device", "tpu"), 2, "--device"),
    "output-empty": (lambda w, c: cli(w, c, "--output", ""), 2, "--output"),
    "cache-dir-empty": (lambda w, c: cli(w, c, "--cache-dir", ""), 2, "--cache-dir"),
    "checkpoint-dir-empty": (lambda w, c: cli(w, c, "--checkpoint-dir", ""), 2, "--checkpoint-dir"),
    "raf-path-empty": (lambda w, c: cli(w, c, "--raf_path", ""), 2, "--raf_path"),
    "raf-path-missing": (lambda w, c: cli(w, c, data=c / "nowhere"), 2, "--raf_path"),
    "output-is-a-file": (lambda w, c: cli(w, c, "--output", str(a_file(c))), 2, "a-file is a file"),
    "output-read-only": (lambda w, c: cli(w, c, "--output", "/sys/amgcn-run"), 2, "--output /sys/amgcn-run"),
    "checkpoint-dir-is-a-file": (lambda w, c: cli(w, c, "--checkpoint-dir", str(a_file(c))), 2,
                                 "--checkpoint-dir"),
    "checkpoint-dir-read-only": (lambda w, c: cli(w, c, "--checkpoint-dir", "/sys/amgcn-ckpt"), 2,
                                 "--checkpoint-dir /sys/amgcn-ckpt"),
    "cache-dir-is-a-file": (lambda w, c: cli(w, c, "--cache-dir", str(a_file(c)), data=w.release), 2,
                            "--cache-dir"),
    "output-holds-a-run": (lambda w, c: cli(w, c, "--output", str(w.done)), 2, "already holds a run"),
    "pretrained-text": (pretrained(lambda p: p.write_text("hello")), 2, "--pretrained"),
    "pretrained-empty": (pretrained(lambda p: p.write_bytes(b"")), 2, "--pretrained"),
    "pretrained-list": (pretrained(lambda p: torch.save([torch.zeros(2)], p)), 2, "--pretrained"),
    "pretrained-non-tensor": (pretrained(lambda p: torch.save({"conv.weight": 3}, p)), 2, "--pretrained"),
    "pretrained-object": (pretrained(lambda p: torch.save({"x": Opaque()}, p)), 2, "--pretrained"),
    "pretrained-folder": (lambda w, c: cli(w, c, "--pretrained", str(c)), 2, "--pretrained"),
    "resume-missing": (lambda w, c: resume(c / "nothing", c), 2, "--resume"),
    "args-yaml-invalid": (resume_with_args_text("lr: [1, 2\n"), 2, "args.yaml"),
    "args-yaml-list": (resume_with_args_text("- a\n- b\n"), 2, "args.yaml"),
    "args-yaml-unknown-key": (resume_with_args(lambda a: a.update(colour="blue")), 2, "args.yaml: unknown key"),
    "args-yaml-lr-nan": (resume_with_args(lambda a: a.update(lr=float("nan"))), 2, "args.yaml: --lr"),
    "args-yaml-epochs-text": (resume_with_args(lambda a: a.update(epochs="two")), 2, "args.yaml: epochs"),
    "args-yaml-layout-unknown": (resume_with_args(lambda a: a.update(layout="weird")), 2, "args.yaml: layout"),
    "fold-file-truncated": (resume_with_fold_file(lambda r: json.dumps(r)[:40]), 2, file_stem("sub01") + ".json"),
    "fold-file-wrong-shape": (resume_with_fold_file(probs_of_wrong_length), 2, file_stem("sub01") + ".json"),
    "fold-file-nan": (resume_with_fold_file(nan_probs), 2, file_stem("sub01") + ".json"),
    "fold-file-a-list": (resume_with_fold_file(lambda r: "[1, 2]"), 2, file_stem("sub01") + ".json"),
    "checkpoint-truncated": (resume_with_checkpoint(lambda p: p.write_bytes(p.read_bytes()[:300])), 2,
                             file_stem("sub01") + ".pt"),
    "checkpoint-wrong-keys": (resume_with_checkpoint(edit_checkpoint(lambda c: {"weights": c["model"]})), 2,
                              file_stem("sub01") + ".pt"),
    "checkpoint-wrong-shape": (resume_with_checkpoint(edit_checkpoint(reshaped)), 2, file_stem("sub01") + ".pt"),
    "checkpoint-bad-epoch": (resume_with_checkpoint(edit_checkpoint(lambda c: c.update(epoch=99))), 2,
                             file_stem("sub01") + ".pt"),
    "samples-json-corrupt": (samples_json_corrupt, 2, "samples.json"),
    "data-changed-since-start": (data_changed, 2, "1 sample(s) added: sub"),
    "checkpoint-dir-saved-is-a-file": (saved_checkpoint_dir_is_a_file, 2, "--checkpoint-dir"),
    "motion-map-nan-strict": (nan_motion_map, 2, "nan.tiff holds NaN"),
    "subject-control-character": (control_character_subject, 2, "index.csv line 2"),
    "folds-subject-all-skipped": (lambda w, c: cli(w, c, "--folds", "2", "--cache-dir", str(c / "cache"),
                                                   data=broken_release(w, c, ("sub02",))), 2, "sub02 was skipped"),
    "no-readable-sample": (lambda w, c: cli(w, c, "--cache-dir", str(c / "cache"),
                                            data=broken_release(w, c, ("sub01", "sub02", "sub03"))), 2,
                           "after skipping 12 sample(s)"),
}
CASES["pretrained-nan-tensor"] = (lambda w, c: pretrained(nan_weights(w))(w, c), 2, "NaN")
CASES["amgcn-cache-is-a-file"] = (lambda w, c: cli(w, c, data=w.release, cache=False), 2, "AMGCN_CACHE")
ENV_CHANGES = {"amgcn-cache-is-a-file": lambda c: {"AMGCN_CACHE": str(a_file(c))}}
NEEDS_SYS = {"output-read-only", "checkpoint-dir-read-only"}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_cleanly_and_touches_nothing_else(world, name):
    if name in NEEDS_SYS and not Path("/sys").is_dir():
        pytest.skip("needs Linux's read-only /sys")
    setup, expected_code, needle = CASES[name]
    case = world.root / "cases" / name
    case.mkdir()
    argv = setup(world, case)
    env = {**world.env, **ENV_CHANGES.get(name, lambda c: {})(case)}
    before, own_before = snapshot(world.root, case), snapshot(case, case / "cache")
    result = world.runner.run(argv, env, case)
    print(f"{name}: exit {result.code}: {' | '.join(result.error_lines)}")
    assert "Traceback" not in result.out, result.out
    assert result.code == expected_code, result.out
    assert len(result.error_lines) == 1, result.out
    assert result.error_lines[0].startswith("error: ") and needle in result.error_lines[0], result.error_lines
    assert snapshot(world.root, case) == before  # earlier runs byte-identical, nothing written elsewhere
    # a refusal leaves no trace, not even in its own folder (where only a case's own cache may fill)
    assert snapshot(case, case / "cache") == own_before
    if argv[0] != "--resume":
        assert not (case / "run").exists() and not (case / "ckpt").exists()


def test_a_plain_subprocess_gives_the_same_answer(world):
    case = world.root / "cases" / "plain-subprocess"
    case.mkdir()
    argv = cli(world, case, "--lr", "inf")
    forked = world.runner.run(argv, world.env, case)
    plain = subprocess.run([sys.executable, str(SCRIPT), *argv], cwd=ROOT, env=world.env, capture_output=True,
                           text=True, timeout=TIMEOUT)
    assert (plain.returncode, plain.stdout + plain.stderr) == (forked.code, forked.out)


def test_subjects_that_look_like_paths_stay_inside_the_run(world):
    """Documented behaviour: any subject text works; its files are named by file_stem."""
    case = world.root / "cases" / "path-like-subjects"
    case.mkdir()
    names = {"sub01": "../../x/folds/sub01", "sub02": str(world.root / "evil"), "sub03": "sub03"}
    maps = copy_maps(world, case, lambda rows: [dict(r, subject=names[r["subject"]]) for r in rows])
    before = snapshot(world.root, case)
    result = world.runner.run(cli(world, case, "--folds", names["sub01"], "--epochs", "1", data=maps),
                              world.env, case)
    assert result.code == 0 and not result.error_lines and "Traceback" not in result.out, result.out
    assert snapshot(world.root, case) == before
    written = {p for p in case.rglob("*") if p.is_file()}
    assert written and all(p.is_relative_to(case / "run") or p.is_relative_to(case / "ckpt")
                           or p.is_relative_to(maps) for p in written)
    assert fold_result_path(case / "run", names["sub01"]).is_file()
    assert json.loads((case / "run" / "summary.json").read_text())["folds"] == [names["sub01"]]


def test_skipped_samples_are_reported_by_a_training_run(world):
    case = world.root / "cases" / "skipped-sample"
    case.mkdir()
    maps = copy_maps(world, case, lambda rows: None)
    missing = maps / "sub02" / next(p.name for p in (maps / "sub02").glob("*_motion.png"))
    missing.unlink()
    result = world.runner.run(cli(world, case, "--folds", "1", "--epochs", "1", data=maps), world.env, case)
    assert result.code == 0, result.out
    assert any(line.startswith("warning: ") and str(missing) in line for line in result.out.splitlines())
    assert "skipped samples: 1" in result.out
    skipped = json.loads((case / "run" / "summary.json").read_text())["skipped"]
    assert len(skipped) == 1 and str(missing) in skipped[0]


def test_a_bad_checkpoint_dir_is_fixed_on_resume(world):
    case = world.root / "cases" / "relocated-checkpoints"
    case.mkdir()
    run = copy_done(world, case)
    edit_args(run, lambda a: a.update(checkpoint_dir=str(a_file(case))))
    refused = world.runner.run(["--resume", str(run), "--device", "cpu"], world.env, case)
    assert refused.code == 2 and "--checkpoint-dir" in refused.error_lines[0], refused.out
    fixed = world.runner.run(resume(run, case), world.env, case)
    assert fixed.code == 0 and not fixed.error_lines, fixed.out
    assert yaml.safe_load((run / "args.yaml").read_text())["checkpoint_dir"] == str(case / "ckpt")
