"""The pictures of a run: the confusion matrix (counts and row-normalised side by side) and the
training curves (loss; training accuracy and validation UF1, averaged over folds)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.io import atomic_write_bytes  # noqa: E402


def write_png(fig: plt.Figure, path: Path) -> None:
    """Lay out, render and write `fig` in one atomic step, then free it."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def save_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm, dtype=float), where=rows > 0)
    n = len(class_names)
    fig, axes = plt.subplots(1, 2, figsize=(4 + 2.2 * n, 1.5 + 1.0 * n))
    for ax, mat, fmt, name in ((axes[0], cm, "d", "counts"), (axes[1], norm, ".2f", "row-normalised")):
        ax.imshow(mat, cmap="Blues", vmin=0, vmax=max(mat.max(), 1e-9))
        ax.set_title(name)
        ax.set_xticks(range(n), class_names, rotation=45, ha="right")
        ax.set_yticks(range(n), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        for i in range(n):
            for j in range(n):
                value = format(mat[i, j], fmt)
                dark = mat[i, j] > 0.5 * max(mat.max(), 1e-9)
                ax.text(j, i, value, ha="center", va="center", color="white" if dark else "black")
    if title:
        fig.suptitle(title)
    write_png(fig, path)


def save_training_curves(curves: dict[str, list[float]], path: Path, title: str = "") -> None:
    """Two panels over epochs: training loss; training accuracy and, when logged, validation UF1."""
    fig, (loss_ax, score_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    epochs = curves["epoch"]
    loss_ax.plot(epochs, curves["train_loss"], color="tab:red")
    loss_ax.set_title("training loss")
    score_ax.plot(epochs, curves["train_acc"], color="tab:blue", label="training accuracy")
    if "val_uf1" in curves:
        score_ax.plot(epochs, curves["val_uf1"], color="tab:green", label="validation UF1")
    score_ax.set_ylim(0, 1)
    score_ax.set_title("scores")
    score_ax.legend(loc="lower right")
    for ax in (loss_ax, score_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    write_png(fig, path)


def save_comparison(result: dict, path: Path) -> None:
    """compare.py's figures as a forest plot: per part and metric, B - A (mean over seeds), its subject
    bootstrap 95% interval as a bar and each seed's difference as a dot; zero marked."""
    rows = [(name, m, part[m]) for name, part in [("all", result["all"]), *result.get("parts", {}).items()]
            for m in ("uf1", "uar")]
    fig, ax = plt.subplots(figsize=(7, 0.9 + 0.45 * len(rows)))
    for y, (_, _, f) in enumerate(rows):
        low, high = f["bootstrap_95"]
        ax.plot([low, high], [y, y], color="tab:blue", lw=2)
        ax.plot(f["b_minus_a"], y, "o", color="tab:blue", ms=7)
        ax.plot(f["per_seed"], [y] * len(f["per_seed"]), "|", color="black", ms=10)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(range(len(rows)), [f"{name} {m.upper()}" for name, m, _ in rows])
    ax.invert_yaxis()
    ax.set_xlabel("B - A  (dot: mean over seeds; bar: subject bootstrap 95%; ticks: each seed)")
    ax.set_title(f"B = {Path(result['b']).name}  vs  A = {Path(result['a']).name}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    write_png(fig, path)
