"""Pooled LOSO metrics in the MEGC convention.

The predictions of all folds are pooled first; accuracy, UF1 (unweighted mean of
per-class F1) and UAR (unweighted mean of per-class recall) are then computed once
over the pool. Averaging per-fold scores is a different, non-standard number.
The figures come from the confusion matrix (scikit-learn's), so that many of them can be
summed and scored at once (utils/comparison.py's bootstrap); tests check them against
scikit-learn's f1_score and recall_score.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix


def pooled_metrics(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> dict:
    """accuracy, uf1, uar and n over pooled predictions (see confusion_scores)."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = confusion_scores(confusion(labels, np.asarray(preds, dtype=np.int64), num_classes))
    return {**{k: float(v) for k, v in scores.items()}, "n": int(labels.size)}


def confusion_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """accuracy, uf1 and uar of confusion matrices (..., C, C), rows = true class.

    Classes without samples are left out of the means (their F1 and recall are undefined),
    as in the MEGC evaluation scripts; a class predicted but never true still costs accuracy
    and the other classes' precision. Works on a stack of matrices at once (the bootstrap's).
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)                          # (..., C)
    true, predicted = cm.sum(-1), cm.sum(-2)
    present = true > 0
    f1 = np.where(present, 2 * tp / np.maximum(true + predicted, 1), 0.0)
    recall = np.where(present, tp / np.maximum(true, 1), 0.0)
    classes = np.maximum(present.sum(-1), 1)
    return {"accuracy": tp.sum(-1) / np.maximum(true.sum(-1), 1),
            "uf1": f1.sum(-1) / classes, "uar": recall.sum(-1) / classes}


def confusion(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    return confusion_matrix(labels, preds, labels=list(range(num_classes)))
