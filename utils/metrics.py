"""Pooled LOSO metrics in the MEGC convention, computed with scikit-learn.

The predictions of all folds are pooled first; accuracy, UF1 (unweighted mean of
per-class F1) and UAR (unweighted mean of per-class recall) are then computed once
over the pool. Averaging per-fold scores is a different, non-standard number.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score


def pooled_metrics(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> dict:
    """accuracy, uf1, uar and n over pooled predictions.

    Classes absent from both labels and predictions are left out of the means (their F1
    and recall are undefined), as in the MEGC evaluation scripts.
    """
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    present = sorted(set(labels.tolist()))
    return {
        "accuracy": float(accuracy_score(labels, preds)),
        "uf1": float(f1_score(labels, preds, labels=present, average="macro", zero_division=0)),
        "uar": float(recall_score(labels, preds, labels=present, average="macro", zero_division=0)),
        "n": int(labels.size),
    }


def confusion(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    return confusion_matrix(labels, preds, labels=list(range(num_classes)))
