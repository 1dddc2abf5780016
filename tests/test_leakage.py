"""The per-fold statistics (AU adjacency, motion scale, class terms) read the training subjects only.

Each check changes one subject's data: the held-out subject's change must leave the statistics as
they were, a training subject's change must move them (so the check can fail)."""
from __future__ import annotations

import numpy as np
import torch

from engine import DatasetTensors, TrainSettings, fold_statistics
from models import ModelConfig

SUBJECTS = [f"sub{i % 5 + 1:02d}" for i in range(40)]
HELD_OUT = "sub03"
CFG = ModelConfig(num_classes=3, img_size=16)
SETTINGS = TrainSettings(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, optimizer="adam",
                         class_balance=True, logit_adjust=1.0)


def tensors(au: np.ndarray, motion: np.ndarray, labels: np.ndarray) -> DatasetTensors:
    return DatasetTensors.from_arrays(motion, None, labels, au, SUBJECTS, [f"s{i}" for i in range(40)],
                                      torch.device("cpu"), grid=CFG.grid)


def statistics(au: np.ndarray, motion: np.ndarray, labels: np.ndarray) -> tuple:
    data = tensors(au, motion, labels)
    train_idx = data.indices(set(SUBJECTS) - {HELD_OUT})
    adjacency, scale, classes = fold_statistics(data, train_idx, CFG, SETTINGS)
    return adjacency, scale, classes.weights, classes.offsets


def rows_of(subject: str) -> np.ndarray:
    return np.array([s == subject for s in SUBJECTS])


def base_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    au = (rng.random((40, len(CFG.aus))) < 0.35).astype(np.float32)
    motion = rng.normal(size=(40, 3, 8, 8)).astype(np.float32)
    labels = rng.integers(0, 3, size=40)
    return au, motion, labels


def changed(arrays: tuple, subject: str) -> tuple:
    """Every array of `subject`'s rows changed: AUs flipped, motion scaled up, labels shifted."""
    au, motion, labels = (a.copy() for a in arrays)
    rows = rows_of(subject)
    au[rows] = 1.0 - au[rows]
    motion[rows] *= 5.0
    labels[rows] = (labels[rows] + 1) % 3
    return au, motion, labels


def test_held_out_subject_changes_no_statistic() -> None:
    arrays = base_arrays()
    for before, after in zip(statistics(*arrays), statistics(*changed(arrays, HELD_OUT))):
        assert torch.equal(before, after)


def test_a_training_subject_moves_every_statistic() -> None:
    arrays = base_arrays()
    for before, after in zip(statistics(*arrays), statistics(*changed(arrays, "sub02"))):
        assert not torch.equal(before, after)
