"""One test (or a few) per class of hostile input: dataset strings as file names, state a
resumed run trusts, numeric and path flags, writable folders, weights and checkpoints,
untrainable folds, non-finite values, frames of different sizes and damaged cache entries.
The command-line view of the same classes is tests/test_hostile.py."""
from __future__ import annotations

import argparse
import copy
import math
import random
import re
import string
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cli import UsageError
from data import DataError, get_protocol, load_release
from data.arrays import check_finite
from data.inputs import build_inputs
from data.motion import motion_arrays
import fold_set
from engine import DatasetTensors, TrainingError, TrainSettings, make_optimizer, read_weights, untrainable
from fold_set import run_fold
from utils.checkpoint import RunFacts, checkpoint_problem, read_checkpoint
from helpers import FIVE_CLASS_DEFAULTS
from options import (NUMBER_RANGES, args_record, build_parser, check_args, check_numbers, folds_with_samples,
                     read_saved_args)
from models import ModelConfig, build_model
from utils.io import write_json, write_yaml
from utils.paths import file_stem, run_checkpoint_dir, write_problem
from utils.run_state import (SAMPLES_FILE, check_samples, checkpoint_path, fingerprint_changes, fold_problem,
                             fold_result_path, read_fold_result, sample_fingerprint)


def hostile_keys(n: int, seed: int) -> list[str]:
    """Subject texts a dataset may hold: traversal, absolute paths, control and non-ASCII characters."""
    rng = random.Random(seed)
    alphabet = string.printable + "/\\.\x00\x1f\u00e9\u4e2d\U0001F600\ud800"
    fixed = ["", ".", "..", "/", "../../x/folds/sub01", "/etc/passwd", "sub01", "Sub01", "sub01 ", "-rf",
             "a" * 300, "samm/006", "casme2/006", "\ud800", "CON", "nul.txt"]
    return fixed + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(n)]


# --------------------------------------------------------------------------- 1: file names

def test_any_subject_gives_a_distinct_safe_name_inside_its_folder(tmp_path):
    keys = sorted(set(hostile_keys(400, seed=0)))
    stems = [file_stem(k) for k in keys]
    assert len(set(stems)) == len(keys)  # two texts never share a file
    for key, stem in zip(keys, stems):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}-[0-9a-f]{10}", stem), (key, stem)
        for path, folder in ((fold_result_path(tmp_path / "run", key), tmp_path / "run" / "folds"),
                             (checkpoint_path(tmp_path / "ckpt", key), tmp_path / "ckpt")):
            assert path.resolve().parent == folder.resolve()
    assert file_stem("sub01").startswith("sub01-") and file_stem("samm/006").startswith("samm_006-")


def test_fold_results_round_trip_under_any_subject(tmp_path):
    for key in hostile_keys(60, seed=1):
        result = {"subject": key, "indices": [3, 4], "preds": [0, 1], "probs": [[0.9, 0.1], [0.2, 0.8]],
                  "epochs": 2, "train_samples": 6, "seconds": 0.5, "selected_epoch": 2, "oracle_preds": []}
        write_json(fold_result_path(tmp_path, key), result)
        assert read_fold_result(fold_result_path(tmp_path, key), key, [3, 4], 2, 2) == result
    with pytest.raises(DataError, match="holds fold 'sub01', not 'sub02'"):
        read_fold_result(fold_result_path(tmp_path, "sub01"), "sub02", [3, 4], 2, 2)


# --------------------------------------------------------------------------- 3: checkpoint folders

def test_two_run_folders_of_one_name_never_share_checkpoints(tmp_path, monkeypatch):
    a, b = run_checkpoint_dir(tmp_path / "ck", tmp_path / "a" / "exp1"), run_checkpoint_dir(tmp_path / "ck", tmp_path / "b" / "exp1")
    assert a != b and a.name.startswith("exp1-") and b.name.startswith("exp1-") and a.parent == b.parent
    monkeypatch.chdir(tmp_path)
    assert run_checkpoint_dir(tmp_path / "ck", Path("a/exp1")) == a  # the same folder, however it is written


# --------------------------------------------------------------------------- 2: resume state

def test_fingerprint_changes_say_what_changed():
    classes = ["happiness", "surprise"]
    saved = sample_fingerprint(["sub01", "sub02", "sub02"], ["EP01", "EP01", "EP02"], [0, 1, 0], classes,
                               {"img_size": 32})
    current = sample_fingerprint(["sub01", "sub02", "sub03", "sub03", "sub03"], ["EP01", "EP02", "X1", "X2", "X3"],
                                 [1, 0, 0, 0, 0], classes, {"img_size": 64})
    changes = fingerprint_changes(saved, current)
    assert "3 sample(s) added: sub03/X1, sub03/X2, sub03/X3" in changes
    assert "1 removed: sub02/EP01" in changes and "1 relabelled: sub01/EP01 (happiness -> surprise)" in changes
    assert "img_size 32 -> 64" in changes
    assert fingerprint_changes(saved, saved) is None
    reordered = dict(saved, samples=saved["samples"][::-1])
    assert fingerprint_changes(saved, reordered) == "the same samples in another order"


def test_samples_file_is_recorded_then_guards_the_run(tmp_path):
    fingerprint = sample_fingerprint(["sub01", "sub02"], ["a", "b"], [0, 1], ["x", "y"], {"img_size": 32})
    check_samples(tmp_path, fingerprint, has_results=False)
    assert (tmp_path / SAMPLES_FILE).is_file()
    check_samples(tmp_path, fingerprint, has_results=True)
    other = sample_fingerprint(["sub01"], ["a"], [0], ["x", "y"], {"img_size": 32})
    with pytest.raises(DataError, match="1 removed: sub02/b"):
        check_samples(tmp_path, other, has_results=True)
    (tmp_path / SAMPLES_FILE).write_text('{"settings": {}, "samples": [["a", "b"]]}')
    with pytest.raises(DataError, match="sample 0 is not"):
        check_samples(tmp_path, fingerprint, has_results=True)
    (tmp_path / SAMPLES_FILE).unlink()
    with pytest.raises(DataError, match="samples.json is missing"):
        check_samples(tmp_path, fingerprint, has_results=True)


GOOD_FOLD = {"subject": "sub01", "indices": [0, 1], "preds": [0, 2], "probs": [[0.5, 0.2, 0.3], [0.1, 0.1, 0.8]],
             "epochs": 3, "train_samples": 5, "seconds": 1.5, "selected_epoch": 3, "oracle_preds": [[0, 1]]}


@pytest.mark.parametrize("change, message", [
    ({"preds": None}, "'preds'"), ({"preds": [0, 3]}, "'preds'"), ({"preds": [0, True]}, "'preds'"),
    ({"probs": [[0.5, 0.2], [0.1, 0.9]]}, "'probs'"), ({"probs": [[math.nan, 0, 1], [0, 0, 1]]}, "'probs'"),
    ({"indices": [0, 2]}, "other samples"), ({"subject": "sub02"}, "holds fold"), ({"epochs": 2}, "epochs"),
    ({"selected_epoch": 0}, "selected_epoch"), ({"seconds": -1}, "seconds"), ({"train_samples": "5"}, "train_samples"),
    ({"oracle_preds": [[0]]}, "oracle_preds"), ({"oracle_preds": 3}, "oracle_preds"),
    ({"val_uf1": 1.5}, "val_uf1"), ({"val_uf1": "0.5"}, "val_uf1"),
])
def test_damaged_fold_results_say_what_is_wrong(change, message):
    assert fold_problem(GOOD_FOLD, "sub01", [0, 1], 3, 3) is None
    assert fold_problem({**GOOD_FOLD, "val_uf1": 0.25}, "sub01", [0, 1], 3, 3) is None
    assert message in fold_problem({**GOOD_FOLD, **change}, "sub01", [0, 1], 3, 3)
    assert "missing key(s) probs" in fold_problem({k: v for k, v in GOOD_FOLD.items() if k != "probs"},
                                                  "sub01", [0, 1], 3, 3)


@pytest.mark.parametrize("saved, message", [
    ({"epochs": "two"}, "epochs: 'two' is not an integer"), ({"lr": True}, "lr: True is not a number"),
    ({"compile": "yes"}, "compile: 'yes' is not true or false"), ({"layout": "weird"}, "layout: 'weird' is not one of"),
    ({"class_balance": "no"}, "class_balance: 'no' is not true or false"),
    ({"checkpoint_dir": ""}, "checkpoint_dir: '' is not text"), ({"checkpoint_dir": None}, "must not be empty"),
    ({"colour": "blue"}, "unknown key(s) colour"), (["a"], "not a mapping"),
    ({"seeds": "x"}, "seeds: 'x' is not a value of this flag"), ({"seeds": [1, 1]}, "seeds: [1, 1]"),
])
def test_saved_arguments_are_checked_like_flags(tmp_path, saved, message):
    parser = build_parser("5class", FIVE_CLASS_DEFAULTS)
    path = tmp_path / "args.yaml"
    write_yaml(path, saved)
    with pytest.raises(UsageError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        read_saved_args(parser, path)
    path.write_text("lr: [1, 2\n")
    with pytest.raises(UsageError, match="cannot be read"):
        read_saved_args(parser, path)
    record = args_record(parser.parse_args(["--raf_path", "data", "--seeds", "0,1", "--folds", "1"]))
    write_yaml(path, record)
    assert read_saved_args(parser, path) == record  # what a run writes, it reads back


# --------------------------------------------------------------------------- 7: flags

def test_every_numeric_flag_is_finite_and_in_range():
    parser = build_parser("5class", FIVE_CLASS_DEFAULTS)
    numeric = {a.dest for a in parser._actions if a.type in (int, float)}
    assert numeric - set(NUMBER_RANGES) <= {"width", "dropout"}  # those two check_args bounds itself
    base = parser.parse_args(["--raf_path", "data"])
    for dest, (flag, low, high, *_why) in NUMBER_RANGES.items():
        for bad in (math.nan, math.inf, -math.inf, low - 1, high + 1):
            args = copy.copy(base)
            setattr(args, dest, bad)
            with pytest.raises(UsageError, match=re.escape(flag)):
                check_numbers(args)
        for good in (low, high):
            setattr(args, dest, good)
            check_numbers(args)
    for dest, flag in (("width", "--width"), ("dropout", "--dropout")):
        with pytest.raises(UsageError, match=flag):
            check_args(argparse.Namespace(**{**vars(base), dest: math.nan}))


def test_empty_path_and_folds_values_are_refused():
    parser = build_parser("5class", FIVE_CLASS_DEFAULTS)
    for flag in ("--output", "--cache-dir", "--checkpoint-dir", "--raf_path", "--sheet", "--pretrained", "--resume"):
        with pytest.raises(UsageError, match=f"argument {flag}.*must not be empty"):
            parser.parse_args(["--raf_path", "data", flag, " "])
    for folds in ("", ",", " , "):
        with pytest.raises(UsageError, match="--folds"):
            check_args(parser.parse_args(["--raf_path", "data", "--folds", folds]))


# --------------------------------------------------------------------------- 8: folders

def test_write_problem_names_the_file_in_the_way(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert write_problem(blocker) == f"{blocker} is a file, not a folder"
    assert write_problem(blocker / "deeper" / "run") == f"{blocker} is a file, not a folder"
    assert write_problem(tmp_path / "new" / "run") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # checking created nothing
    if Path("/sys").is_dir():
        assert "cannot create files in /sys" in write_problem(Path("/sys/amgcn"))


def test_a_cache_entry_replaced_by_a_folder_is_worked_around(tiny_release, tmp_path):
    release = load_release(tiny_release, get_protocol("5class"))
    first = build_inputs(release, img_size=16, cache_dir=tmp_path / "cache", progress=False)
    entry = sorted((tmp_path / "cache").glob("*.npy"))[0]
    entry.unlink()
    entry.mkdir()
    again = build_inputs(release, img_size=16, cache_dir=tmp_path / "cache", progress=False)
    assert [w for w in again.warnings if "cannot be written" in w and str(entry) in w]
    np.testing.assert_array_equal(first.apex, again.apex)


# --------------------------------------------------------------------------- 10: cache checksums, frame sizes

def test_a_damaged_cache_entry_is_rebuilt_with_a_warning(tiny_release, tmp_path):
    release = load_release(tiny_release, get_protocol("5class"))
    first = build_inputs(release, img_size=16, cache_dir=tmp_path / "cache", progress=False)
    entry = sorted((tmp_path / "cache").glob("*.npy"))[1]
    data = bytearray(entry.read_bytes())
    data[200] ^= 0xFF  # one pixel, same length: only the checksum can tell
    entry.write_bytes(bytes(data))
    again = build_inputs(release, img_size=16, cache_dir=tmp_path / "cache", progress=False)
    assert again.cache_misses == 1 and [w for w in again.warnings if "damaged" in w and str(entry) in w]
    np.testing.assert_array_equal(first.onset, again.onset)
    np.testing.assert_array_equal(first.apex, again.apex)
    third = build_inputs(release, img_size=16, cache_dir=tmp_path / "cache", progress=False)
    assert third.cache_misses == 0 and not [w for w in third.warnings if "damaged" in w]
    # flow entries carry their own checksum
    flow, _ = motion_arrays(first, "flow", cache_dir=tmp_path / "cache", method="farneback")
    flow_entry = sorted((tmp_path / "cache" / "motion").glob("*.npy"))[0]
    flow_entry.write_bytes(flow_entry.read_bytes()[:-1] + b"\0")
    flow_again, notices = motion_arrays(first, "flow", cache_dir=tmp_path / "cache", method="farneback")
    assert [n for n in notices if "damaged" in n and str(flow_entry) in n]
    np.testing.assert_array_equal(flow, flow_again)


def test_frames_of_different_sizes_in_one_clip_are_reported(tiny_release, copy_release, tmp_path):
    release = load_release(copy_release(tiny_release), get_protocol("5class"))
    sample = next(s for s in release.samples if s.apex_path is not None)
    frame = cv2.imread(str(sample.apex_path))
    cv2.imwrite(str(sample.apex_path), cv2.resize(frame, (frame.shape[1] * 2, frame.shape[0])))
    inputs = build_inputs(release, img_size=16, cache_dir=tmp_path / "cache", progress=False)
    h, w = frame.shape[:2]
    assert [x for x in inputs.warnings if sample.filename in x and f"is {2 * w}x{h} px but onset frame" in x]


# --------------------------------------------------------------------------- 9: weights, checkpoints

def tiny_config() -> ModelConfig:
    return ModelConfig(num_classes=3, img_size=32, embed_dim=64, vit_depth=1, vit_heads=4)


@pytest.mark.parametrize("write, message", [
    (lambda p: p.write_text("hello"), "not a PyTorch weights file"),
    (lambda p: p.write_bytes(b""), "not a PyTorch weights file"),
    (lambda p: torch.save([torch.zeros(2)], p), "holds a list"),
    (lambda p: torch.save({"w": 3}, p), "'w' is not a named tensor"),
    (lambda p: torch.save({"w": argparse.Namespace()}, p), "weights-only loading refuses"),
])
def test_weights_files_that_are_not_weights_are_named(tmp_path, write, message):
    path = tmp_path / "w.pt"
    write(path)
    with pytest.raises(TrainingError, match=message):
        read_weights(path)


def checkpoint_of(model: torch.nn.Module, subject: str = "sub01") -> dict:
    optimizer = make_optimizer("adam", model.parameters(), 1e-3, 0.0)
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()  # fills the optimiser's per-parameter state
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "epoch": 2, "subject": subject, "best": {"score": -math.inf, "epoch": 0, "state": None}, "oracle_preds": []}


def test_checkpoints_are_checked_against_the_fold_and_model(tmp_path):
    model = build_model(tiny_config())
    good = checkpoint_of(model)
    assert checkpoint_problem(good, model, "sub01", 3) is None
    name = next(iter(good["model"]))
    one_param = next(iter(good["optimizer"]["state"]))
    cases = {
        "missing key(s) optimizer": {k: v for k, v in good.items() if k != "optimizer"},
        "belongs to fold 'sub02'": {**good, "subject": "sub02"},
        "'epoch' 4 is not an epoch of 1..3": {**good, "epoch": 4},
        "'epoch' True": {**good, "epoch": True},
        f"tensor {name} has shape (2,)": {**good, "model": {**good["model"], name: torch.zeros(2)}},
        f"tensor {name} holds NaN": {**good, "model": {**good["model"], name: good["model"][name] * math.nan}},
        "has shape (1,), the parameter's": {**good, "optimizer": {**good["optimizer"], "state": {
            one_param: {**good["optimizer"]["state"][one_param], "exp_avg": torch.zeros(1)}}}},
        "not a checkpoint (a list": [good],
    }
    for message, ckpt in cases.items():
        assert message in checkpoint_problem(ckpt, model, "sub01", 3)
    path = tmp_path / "c.pt"
    torch.save(good, path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(DataError, match=re.escape(str(path)) + ": cannot be read"):
        read_checkpoint(path, model, "sub01", 3)


# --------------------------------------------------------------------------- 4, 5, 6: skips, untrainable folds, non-finite values

def tiny_tensors(subjects: list[str]) -> DatasetTensors:
    n = len(subjects)
    rng = np.random.default_rng(0)
    return DatasetTensors.from_arrays(rng.normal(size=(n, 3, 32, 32)).astype(np.float32), None,
                                      np.arange(n) % 3, np.zeros((n, 9), np.float32), subjects,
                                      [f"s{i}" for i in range(n)], torch.device("cpu"), tiny_config().grid)


def test_a_requested_fold_without_readable_samples_is_an_error():
    assert folds_with_samples(["sub01", "sub02"], ["sub01"], requested=False) == ["sub01"]
    with pytest.raises(UsageError, match="every sample of sub02 was skipped"):
        folds_with_samples(["sub01", "sub02"], ["sub01"], requested=True)


def test_folds_that_could_never_train_are_refused_before_training():
    data = tiny_tensors(["a", "a", "b", "b", "c", "c"])
    settings = TrainSettings(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, optimizer="adam")
    assert untrainable("a", data, settings, 0) is None
    assert "--batch_size 1" in untrainable("a", data, TrainSettings(**{**vars(settings), "batch_size": 1}), 0)
    assert "--val-subjects 2" in untrainable("a", data, TrainSettings(**{**vars(settings), "val_subjects": 2}), 0)
    with pytest.raises(TrainingError, match="--batch_size 1"):
        run_fold("a", data, tiny_config(), TrainSettings(**{**vars(settings), "batch_size": 1}), 0,
                 torch.device("cpu"), Path("unused.pt"), RunFacts([], {}, {}))


def test_non_finite_predictions_are_never_returned(tmp_path, monkeypatch):
    data = tiny_tensors(["a", "a", "b", "b", "c", "c"])
    settings = TrainSettings(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, optimizer="adam")
    monkeypatch.setattr(fold_set, "evaluate", lambda model, data, idx, *rest: torch.full((len(idx), 3), math.nan))
    with pytest.raises(TrainingError, match="predictions for a are not finite"):
        run_fold("a", data, tiny_config(), settings, 0, torch.device("cpu"), tmp_path / "a.pt", RunFacts(["a", "b", "c"], {}, {}))


def test_non_finite_motion_maps_are_caught_naming_the_sample():
    motion = np.zeros((3, 3, 4, 4), np.float32)
    check_finite(motion, ["s1", "s2", "s3"], ["a", "b", "c"], "maps")
    motion[1, 2, 0, 0] = math.inf
    motion[2, 0, 1, 1] = math.nan
    with pytest.raises(DataError, match=r"maps: the motion map of s2 b holds NaN or infinite values \(and 1 more\)"):
        check_finite(motion, ["s1", "s2", "s3"], ["a", "b", "c"], "maps")
