"""Tests of utils/report.py's training curves and the log reader they rest on."""
from __future__ import annotations

import json

import pytest

from utils.io import append_jsonl, read_jsonl
from utils.plots import save_training_curves
from utils.report import epoch_curves


def record(fold: str, epoch: int, loss: float, acc: float, val: float | None = None) -> dict:
    r = {"fold": fold, "epoch": epoch, "train_loss": loss, "train_acc": acc, "lr": 0.001, "seconds": 0.1}
    return r if val is None else {**r, "val_uf1": val}


def test_curves_average_folds_per_epoch_and_count_a_resumed_epoch_once(tmp_path):
    log = tmp_path / "log.jsonl"
    for r in (record("a", 1, 1.0, 0.4, 0.3), record("b", 1, 3.0, 0.6, 0.5),
              record("a", 2, 0.9, 0.5, 0.2),             # a's epoch 2 before a kill ...
              record("a", 2, 0.5, 0.7, 0.4),             # ... and again after the resume: this one counts
              record("b", 2, 1.5, 0.9, 0.6), record("final", 1, 9.0, 0.0)):
        append_jsonl(log, r)
    with open(log, "a") as fh:
        fh.write('{"fold": "b", "epo')                  # a line cut short by a full disk
    records = read_jsonl(log)
    assert len(records) == 6
    curves = epoch_curves(records, skip_fold="final")
    assert curves["epoch"] == [1.0, 2.0]
    assert curves["train_loss"] == pytest.approx([2.0, 1.0])
    assert curves["train_acc"] == pytest.approx([0.5, 0.8])
    assert curves["val_uf1"] == pytest.approx([0.4, 0.5])
    save_training_curves(curves, tmp_path / "curves.png", title="mean over 2 folds")
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_curves_without_validation_subjects_have_no_validation_line():
    records = [record("a", 1, 1.0, 0.4), record("b", 1, 2.0, 0.6)]
    curves = epoch_curves(records, skip_fold="final")
    assert set(curves) == {"epoch", "train_loss", "train_acc"}
    assert epoch_curves([json.loads('{"fold": "final", "epoch": 1, "train_loss": 1}')], skip_fold="final") == {
        "epoch": []}
