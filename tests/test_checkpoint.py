"""Fold checkpoints (utils.checkpoint): one record per fold, alone or in a group; the earlier layout resumes
exactly (one file per fold) or is refused in one line (one file per group)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from engine import TrainSettings
from fold_set import run_fold, run_fold_group
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main
from models import ModelConfig, build_model
from tests.test_fold_group import CPU, FACTS, paths, tensors
from utils.checkpoint import checkpoint_problem
from utils.model_file import FOLD_FORMAT, record_problem
from utils.paths import run_checkpoint_dir
from utils.run_state import checkpoint_path

CFG = ModelConfig(num_classes=3, img_size=16, width=0.0625, vit_depth=1)
SETTINGS = TrainSettings(epochs=3, batch_size=6, lr=1e-3, weight_decay=1e-4, optimizer="adam",
                         checkpoint_interval=0.0)


def stop_after_epoch_2(record: dict) -> None:
    if record["epoch"] == 2:
        raise KeyboardInterrupt


def earlier_layout(ckpt: dict) -> dict:
    """A checkpoint as the earlier layout wrote it: the training state and the run's arguments, no model description."""
    kept = {k: ckpt[k] for k in ("model", "optimizer", "scheduler", "epoch", "subject", "best", "oracle_preds")}
    return {**kept, "args": {}, "motion_scale": ckpt["motion_scale"]}


def test_a_group_keeps_one_full_record_per_fold(tmp_path):
    data = tensors(CFG, {f"s{i}": 6 for i in range(4)})
    run_fold_group(["s1", "s2"], data, CFG, SETTINGS, 0, CPU, paths(tmp_path, ["s1", "s2"]), FACTS)
    for subject in ("s1", "s2"):
        ckpt = torch.load(tmp_path / f"{subject}.pt", weights_only=True)
        assert ckpt["format"] == FOLD_FORMAT and record_problem(ckpt) is None
        assert (ckpt["subject"], ckpt["epoch"], ckpt["config"]["arch"]) == (subject, 3, CFG.arch)
        assert ckpt["training"]["subjects"] == sorted({"s0", "s1", "s2", "s3"} - {subject})
        assert checkpoint_problem(ckpt, build_model(CFG), subject, 3) is None   # its optimiser slice fits one model
        assert ckpt["optimizer"]["state"]


def test_a_group_checkpoint_resumes_as_a_fold_alone(tmp_path):
    """A fold's record from a group holds what its own optimiser would: the fold goes on alone from it."""
    data = tensors(CFG, {f"s{i}": 6 for i in range(4)})
    unbroken = run_fold("s1", data, CFG, SETTINGS, 0, CPU, tmp_path / "alone.pt", FACTS)
    with pytest.raises(KeyboardInterrupt):
        run_fold_group(["s1", "s2"], data, CFG, SETTINGS, 0, CPU, paths(tmp_path / "g", ["s1", "s2"]), FACTS,
                       on_epoch=stop_after_epoch_2)
    resumed = run_fold("s1", data, CFG, SETTINGS, 0, CPU, tmp_path / "g" / "s1.pt", FACTS)
    assert np.allclose(resumed.probs, unbroken.probs, atol=5e-3)


def test_a_checkpoint_of_the_earlier_layout_resumes_exactly(tmp_path):
    data = tensors(CFG, {f"s{i}": 6 for i in range(4)})
    unbroken = run_fold("s1", data, CFG, SETTINGS, 0, CPU, tmp_path / "a.pt", FACTS)
    path = tmp_path / "b.pt"
    with pytest.raises(KeyboardInterrupt):
        run_fold("s1", data, CFG, SETTINGS, 0, CPU, path, FACTS, on_epoch=stop_after_epoch_2)
    torch.save(earlier_layout(torch.load(path, weights_only=True)), path)
    resumed = run_fold("s1", data, CFG, SETTINGS, 0, CPU, path, FACTS)
    assert resumed.probs == unbroken.probs
    assert torch.load(path, weights_only=True)["format"] == FOLD_FORMAT   # rewritten in this layout


def test_a_group_checkpoint_of_the_earlier_layout_is_refused_in_one_line(loso_release, tmp_path, capsys):
    args = loso_args(loso_release, tmp_path, "run", "--folds", "sub01")
    assert main("5class", FIVE_CLASS_DEFAULTS, args) == 0
    folder = run_checkpoint_dir(tmp_path / "ckpt", tmp_path / "run")
    old = checkpoint_path(folder, "sub02+sub03")
    torch.save({"subjects": ["sub02", "sub03"], "epoch": 1, "params": {}, "buffers": {}}, old)
    capsys.readouterr()
    assert main("5class", FIVE_CLASS_DEFAULTS, ["--resume", str(tmp_path / "run")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("error")] == lines[-1:]    # one error line, after the warnings
    assert "sub02, sub03" in lines[-1] and "earlier layout" in lines[-1] and str(old) in lines[-1]
