"""Seeded random streams of the synthetic-release generator, one per (seed, keys)."""
from __future__ import annotations

import zlib

import numpy as np


def _rng(seed: int, *keys: object) -> np.random.Generator:
    """Independent, reproducible stream per (seed, keys): order of generation never matters."""
    words = [int(seed) & 0xFFFFFFFF] + [zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(words))
