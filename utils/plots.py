"""The confusion-matrix picture of a run: counts and row-normalised side by side."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or assumed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.io import atomic_write_bytes  # noqa: E402


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
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
