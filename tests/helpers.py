"""Shared by the end-to-end tests: command lines for LOSO runs that finish in seconds."""
from __future__ import annotations

from pathlib import Path

FIVE_CLASS_DEFAULTS = dict(batch_size=32, lr=0.0008, epochs=100)
# Small images, two epochs and a narrow one-block ViT: a run of a few folds trains in seconds on 2 CPU cores.
FAST = ["--img-size", "32", "--epochs", "2", "--batch_size", "16", "--device", "cpu", "--embed-dim", "64",
        "--vit-depth", "1"]


def loso_args(raf_path: Path, tmp: Path, name: str, *extra: str) -> list[str]:
    """Entry-script arguments with every file the run writes kept under `tmp`."""
    return ["--raf_path", str(raf_path), "--cache-dir", str(tmp / "cache"), "--checkpoint-dir", str(tmp / "ckpt"),
            "--output", str(tmp / name), *FAST, *extra]
