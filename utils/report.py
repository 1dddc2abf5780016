"""From fold results to the files of a run folder and the table printed at the end."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from utils.io import write_csv, write_json
from utils.metrics import confusion, pooled_metrics
from utils.plots import save_confusion_matrix

OPTIMISTIC_NOTE = ("each subject's best epoch chosen on that subject's own test data: "
                   "optimistic, not a valid result")


def pool(folds: Sequence[dict], labels: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """(sample indices, labels, predictions) of all folds, in fold order."""
    idx = [i for f in folds for i in f["indices"]]
    preds = [p for f in folds for p in f["preds"]]
    return idx, [int(labels[i]) for i in idx], preds


def oracle_metrics(folds: Sequence[dict], labels: Sequence[int], num_classes: int) -> dict:
    """The literature's test-selected figure: per fold, the epoch with the best test accuracy."""
    truth, chosen = [], []
    for f in folds:
        y = np.array([labels[i] for i in f["indices"]])
        per_epoch = np.array(f["oracle_preds"])  # (epochs, n)
        best = int(np.argmax((per_epoch == y).sum(axis=1)))
        truth += y.tolist()
        chosen += per_epoch[best].tolist()
    return {**pooled_metrics(truth, chosen, num_classes), "note": OPTIMISTIC_NOTE}


def write_results(run_dir: Path, folds: Sequence[dict], labels: Sequence[int], subjects: Sequence[str],
                  names: Sequence[str], classes: Sequence[str], extra: dict) -> tuple[dict, list[list]]:
    """Write predictions.csv, folds.csv, summary.json and confusion_matrix.png.

    Returns the summary and the per-fold rows (as in folds.csv).
    """
    num_classes = len(classes)
    idx, truth, preds = pool(folds, labels)
    summary = {**pooled_metrics(truth, preds, num_classes), "classes": list(classes), **extra}
    if folds and all(f.get("oracle_preds") for f in folds):
        summary["oracle_optimistic"] = oracle_metrics(folds, labels, num_classes)

    rows = []
    for f in folds:
        for i, pred, prob in zip(f["indices"], f["preds"], f["probs"]):
            rows.append([subjects[i], names[i], classes[labels[i]], classes[pred], *prob])
    write_csv(run_dir / "predictions.csv",
              ["subject", "sample", "label", "pred", *[f"p_{c}" for c in classes]], rows)

    fold_rows = []
    for f in folds:
        y = [labels[i] for i in f["indices"]]
        m = pooled_metrics(y, f["preds"], num_classes)
        fold_rows.append([f["subject"], m["n"], round(m["accuracy"], 4), round(m["uf1"], 4), round(m["uar"], 4),
                          f["selected_epoch"], f["train_samples"], f["seconds"]])
    write_csv(run_dir / "folds.csv",
              ["subject", "n", "accuracy", "uf1", "uar", "epoch", "train_samples", "seconds"], fold_rows)

    cm = confusion(truth, preds, num_classes)
    summary["confusion_matrix"] = cm.tolist()
    save_confusion_matrix(cm, classes, run_dir / "confusion_matrix.png",
                          title=f"pooled LOSO, n={len(truth)}, UF1 {summary['uf1']:.3f}, UAR {summary['uar']:.3f}")
    write_json(run_dir / "summary.json", summary)
    return summary, fold_rows


def format_table(summary: dict, fold_rows: Sequence[Sequence]) -> str:
    """Per-fold lines, then the pooled result (and the optimistic figure, labelled)."""
    lines = [f"{'fold':<10}{'n':>5}{'acc':>8}{'uf1':>8}{'uar':>8}"]
    for subject, n, acc, uf1, uar, *_ in fold_rows:
        lines.append(f"{subject:<10}{n:>5}{acc:>8.3f}{uf1:>8.3f}{uar:>8.3f}")
    lines.append("-" * 39)
    lines.append(f"{'pooled':<10}{summary['n']:>5}{summary['accuracy']:>8.3f}{summary['uf1']:>8.3f}"
                 f"{summary['uar']:>8.3f}   ({summary.get('selection', 'last epoch')})")
    if "oracle_optimistic" in summary:
        o = summary["oracle_optimistic"]
        lines.append(f"{'oracle*':<10}{o['n']:>5}{o['accuracy']:>8.3f}{o['uf1']:>8.3f}{o['uar']:>8.3f}")
        lines.append(f"* {OPTIMISTIC_NOTE}")
    return "\n".join(lines)
