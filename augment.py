"""Training-time augmentation: mirroring, shifts, erased squares and mixup, applied as batches are drawn.

Every draw comes from the epoch's generator, and an option off draws nothing, so runs without it keep
their random stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Protocol

import numpy as np
import torch
import torch.nn.functional as F


class SampleTensors(Protocol):
    """What batches are cut from: engine.DatasetTensors has these (named here so augment sits below engine)."""
    motion: torch.Tensor                # (N, 3M, S, S)
    face: torch.Tensor                  # (N, 3, g, g)
    flip_signs: torch.Tensor            # (1, 3M, 1, 1): -1 on each map's u channel


def mirror(x: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """Maps `x` (B, C, H, W) mirrored left-right; `signs` (1, C, 1, 1) flips channels whose
    meaning mirrors too (a flow map's horizontal component)."""
    return x.flip(-1) if signs is None else x.flip(-1) * signs


def random_flip(x: torch.Tensor, flip: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror the samples marked in `flip` (B,) left-right (see mirror)."""
    return torch.where(flip.view(-1, 1, 1, 1), mirror(x, signs), x)


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each map of `x` (B, C, S, S) moved by its own whole-pixel offset in [-max_shift, max_shift]
    along both axes; what moves in from the border is zero (no motion)."""
    b, _, h, w = x.shape
    offsets = torch.randint(-max_shift, max_shift + 1, (2, b), generator=generator).to(x.device)  # (2, B)
    padded = F.pad(x, (max_shift,) * 4)                                   # (B, C, S + 2m, S + 2m)
    rows = (max_shift + offsets[0]).view(b, 1) + torch.arange(h, device=x.device)  # (B, S)
    cols = (max_shift + offsets[1]).view(b, 1) + torch.arange(w, device=x.device)  # (B, S)
    batch = torch.arange(b, device=x.device).view(b, 1, 1)
    moved = padded.permute(0, 2, 3, 1)[batch, rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, S, S, C)
    return moved.permute(0, 3, 1, 2)                                     # (B, C, S, S), channels-last strides


def random_erase(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Each map of `x` (B, C, S, S) with probability `p` has one square, a quarter to half the map's
    side, set to zero (no motion) in every channel: no single region may carry the class alone."""
    b, _, h, w = x.shape
    hit = torch.rand(b, generator=generator) < p                           # (B,)
    side = torch.randint(max(1, min(h, w) // 4), max(1, min(h, w) // 2) + 1, (b,), generator=generator)
    top = (torch.rand(b, generator=generator) * (h - side + 1)).long()     # (B,) inside the map
    left = (torch.rand(b, generator=generator) * (w - side + 1)).long()
    rows, cols = torch.arange(h), torch.arange(w)
    in_rows = (rows >= top[:, None]) & (rows < (top + side)[:, None])      # (B, S)
    in_cols = (cols >= left[:, None]) & (cols < (left + side)[:, None])    # (B, S)
    erased = hit[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :]  # (B, S, S)
    return x.masked_fill(erased[:, None].to(x.device), 0.0)


@dataclass
class Batch:
    """One training batch. With mixup, sample i is `lam` of row idx[i] and 1 - lam of row
    partner[i]; its loss is mixed the same way."""
    idx: torch.Tensor                   # (B,) rows of DatasetTensors
    motion: torch.Tensor                # (B, 3M, S, S)
    face: torch.Tensor                  # (B, 3, g, g)
    partner: torch.Tensor | None = None  # (B,) rows mixed in, or None
    lam: float = 1.0


def batches_per_epoch(samples: int, batch_size: int) -> int:
    """How many batches training_batches yields for `samples`: a last batch of one is left out
    (batch norm cannot train on it)."""
    return samples // batch_size + (samples % batch_size >= 2)


def training_batches(data: SampleTensors, train_idx: torch.Tensor, motion_scale: torch.Tensor, batch_size: int,
                     generator: torch.Generator, device: torch.device, shift: int = 0, mixup: float = 0.0,
                     erase: float = 0.0) -> Iterator[Batch]:
    """One epoch's batches in a random order, each sample mirrored with p=0.5, then moved by up
    to `shift` pixels, erased in one square with probability `erase` and mixed with a partner
    (`mixup` > 0) when asked.

    Indexes the device tensors, so no sample passes through Python; batches_per_epoch says
    how many batches there are. The options draw from `generator` only when
    on, so runs without them keep their random stream.
    """
    order = torch.randperm(len(train_idx), generator=generator).to(device)
    flips = (torch.rand(len(train_idx), generator=generator) < 0.5).to(device)
    mix_weights = (np.random.default_rng(int(torch.randint(2**31, (1,), generator=generator)))
                   .beta(mixup, mixup, size=math.ceil(len(train_idx) / batch_size)) if mixup > 0 else None)
    perm = train_idx[order]
    for start in range(0, batches_per_epoch(len(perm), batch_size) * batch_size, batch_size):
        idx = perm[start:start + batch_size]
        flip = flips[start:start + len(idx)]
        motion = random_flip(data.motion[idx], flip, data.flip_signs) / motion_scale  # (B, 3M, S, S)
        face = random_flip(data.face[idx], flip)                      # (B, 3, g, g)
        if shift > 0:
            motion = random_shift(motion, shift, generator)
        if erase > 0:
            motion = random_erase(motion, erase, generator)
        if mix_weights is None:
            yield Batch(idx, motion, face)
            continue
        lam = float(mix_weights[start // batch_size])
        partner = torch.randperm(len(idx), generator=generator).to(device)
        yield Batch(idx, lam * motion + (1 - lam) * motion[partner], lam * face + (1 - lam) * face[partner],
                    idx[partner], lam)

