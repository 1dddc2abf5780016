"""One LOSO fold, end to end: fold statistics, a fresh model, a fixed schedule, a test.

The held-out subject is used for one thing only: the final prediction. Everything the
fold learns or chooses (AU adjacency, motion normalisation, weights, the validation
epoch) comes from its training subjects.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from models import ModelConfig, build_model, compute_loss, cooccurrence_adjacency
from utils.io import atomic_torch_save
from utils.metrics import pooled_metrics

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POSITION_GRID = 14  # the position branch sees the onset face at 14x14


class TrainingError(RuntimeError):
    """A fold cannot go on (for example a non-finite loss); the message says why."""


@dataclass
class ReleaseTensors:
    """Model inputs of every sample, built once per run and kept on the device.

    motion: (N, 3, S, S) float32 motion map (difference image or flow)
    face:   (N, 3, 14, 14) float32, ImageNet-normalised onset face at the position grid
            (zeros when the dataset has no faces; the position branch is then off)
    labels: (N,) int64; au: (N, K) float32 multi-hot over the model's AU nodes
    flip_signs: (1, 3, 1, 1) sign of each motion channel when a sample is mirrored
    """

    motion: torch.Tensor
    face: torch.Tensor
    labels: torch.Tensor
    au: torch.Tensor
    subjects: list[str]
    names: list[str]
    flip_signs: torch.Tensor

    @classmethod
    def from_arrays(cls, motion: np.ndarray, face: np.ndarray | None, labels: np.ndarray, au: np.ndarray,
                    subjects: list[str], names: list[str], device: torch.device,
                    flip_signs: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> "ReleaseTensors":
        motion_t = torch.from_numpy(np.asarray(motion, dtype=np.float32)).to(device)  # (N, 3, S, S)
        if face is None:
            face_t = torch.zeros(len(motion_t), 3, POSITION_GRID, POSITION_GRID, device=device)
        else:
            face_t = torch.from_numpy(face).to(device=device, dtype=torch.float32) / 255.0  # (N, 3, S, S)
            face_t = F.adaptive_avg_pool2d(face_t, POSITION_GRID)  # (N, 3, 14, 14)
            mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
            face_t = (face_t - mean) / std
        return cls(
            motion=motion_t.contiguous(memory_format=torch.channels_last),
            face=face_t.contiguous(),
            labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device),
            au=torch.from_numpy(np.asarray(au, dtype=np.float32)).to(device),
            subjects=list(subjects),
            names=list(names),
            flip_signs=torch.tensor(flip_signs, dtype=torch.float32, device=device).view(1, 3, 1, 1),
        )

    def indices(self, subjects: set[str]) -> torch.Tensor:
        idx = [i for i, s in enumerate(self.subjects) if s in subjects]
        return torch.tensor(idx, dtype=torch.long, device=self.labels.device)


@dataclass
class TrainSettings:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    optimizer: str
    eval_batch_size: int = 256
    val_subjects: int = 0
    report_oracle: bool = False
    checkpoint_interval: float = 60.0  # seconds between fold checkpoints (the last epoch is always saved)
    pretrained: Path | None = None
    amp: bool = False  # bf16 autocast; only pays on GPUs with bf16 units
    compile: bool = False


@dataclass
class FoldResult:
    subject: str
    indices: list[int]          # rows of ReleaseTensors tested in this fold
    preds: list[int]
    probs: list[list[float]]
    epochs: int
    train_samples: int
    seconds: float
    selected_epoch: int          # the epoch whose weights made `preds`
    oracle_preds: list[list[int]] = field(default_factory=list)  # per epoch; only with --report-oracle

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def fold_seed(seed: int, subject: str) -> int:
    """Seed of one fold: depends on the run seed and the held-out subject, not on the rank."""
    return (seed * 1_000_003 + zlib.crc32(subject.encode())) % (2**31)


def choose_validation_subjects(train_subjects: list[str], k: int, seed: int) -> list[str]:
    if k <= 0:
        return []
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train_subjects), generator=g).tolist()
    return sorted(train_subjects[i] for i in order[:k])


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}")


def load_pretrained(model: torch.nn.Module, path: Path) -> tuple[int, int]:
    """Copy every tensor of `path` whose name and shape match; returns (loaded, total)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise TrainingError("no tensor matches this model's parameter names and shapes")
    model.load_state_dict(matched, strict=False)
    return len(matched), len(own)


def _autocast(device: torch.device, enabled: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def _random_flip(x: torch.Tensor, flip: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """Mirror the samples marked in `flip` (B,) left-right; `signs` (1, C, 1, 1) flips
    channels whose meaning mirrors too (a flow map's horizontal component)."""
    mirrored = x.flip(-1) if signs is None else x.flip(-1) * signs
    return torch.where(flip.view(-1, 1, 1, 1), mirrored, x)


def train_one_epoch(model: torch.nn.Module, data: ReleaseTensors, train_idx: torch.Tensor,
                    motion_scale: torch.Tensor, optimizer: torch.optim.Optimizer, cfg: ModelConfig,
                    settings: TrainSettings, generator: torch.Generator, device: torch.device) -> dict:
    """One pass over the training samples in a random order; returns mean loss and accuracy."""
    model.train()
    order = torch.randperm(len(train_idx), generator=generator).to(device)
    flips = (torch.rand(len(train_idx), generator=generator) < 0.5).to(device)
    perm = train_idx[order]
    # Running sums stay on the device: reading them every step would make the host wait for
    # the accelerator after each batch (compute_loss's logged floats are the only read left).
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for start in range(0, len(perm), settings.batch_size):
        idx = perm[start:start + settings.batch_size]
        if len(idx) < 2:  # batch norm cannot train on a single sample
            continue
        flip = flips[start:start + len(idx)]
        motion = _random_flip(data.motion[idx], flip, data.flip_signs) / motion_scale  # (B, 3, S, S)
        face = _random_flip(data.face[idx], flip)                      # (B, 3, 14, 14)
        labels = data.labels[idx]
        with _autocast(device, settings.amp):
            outputs = model(motion, face)
        loss, parts = compute_loss({k: (v.float() if v is not None else None) for k, v in outputs.items()},
                                   labels, data.au[idx], cfg)
        if not math.isfinite(parts["total"]):  # compute_loss has read the value already: no extra wait
            raise TrainingError(f"the training loss became {parts['total']}; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach().double() * len(idx)  # as the float sum of loss.item() * n did
        correct += (outputs["logits"].detach().argmax(1) == labels).sum()
        seen += len(idx)
    return {"loss": total_loss.item() / max(seen, 1), "acc": correct.item() / max(seen, 1)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: ReleaseTensors, idx: torch.Tensor, motion_scale: torch.Tensor,
             settings: TrainSettings, device: torch.device) -> torch.Tensor:
    """Class probabilities (n, C) of the samples `idx`, in that order."""
    model.eval()
    chunks = []
    for start in range(0, len(idx), settings.eval_batch_size):
        batch = idx[start:start + settings.eval_batch_size]
        with _autocast(device, settings.amp):
            logits = model(data.motion[batch] / motion_scale, data.face[batch])["logits"]
        chunks.append(torch.softmax(logits.float(), dim=1))
    return torch.cat(chunks).cpu()


def run_fold(subject: str, data: ReleaseTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
             device: torch.device, checkpoint_path: Path, args_record: dict,
             on_epoch: Callable[[dict], None] = lambda record: None) -> FoldResult:
    """Train a fresh model without `subject`, then predict `subject`'s samples.

    Resumes from `checkpoint_path` when it holds a partial run of this fold. Each epoch
    re-seeds its own random streams, so a resumed fold is identical to an unbroken one.
    """
    started = time.time()
    seed = fold_seed(seed, subject)
    train_subjects = sorted(set(data.subjects) - {subject})
    val_subjects = choose_validation_subjects(train_subjects, settings.val_subjects, seed)
    fit_subjects = set(train_subjects) - set(val_subjects)
    train_idx, test_idx = data.indices(fit_subjects), data.indices({subject})
    val_idx = data.indices(set(val_subjects))

    # Fold statistics from the training samples only.
    adjacency = cooccurrence_adjacency(data.au[train_idx].cpu(), cfg.adj_threshold, cfg.adj_reweight)
    motion_scale = data.motion[train_idx].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)  # (1, 3, 1, 1)

    torch.manual_seed(seed)
    model = build_model(cfg)
    if settings.pretrained is not None:
        load_pretrained(model, settings.pretrained)
    model.set_adjacency(adjacency)
    model = model.to(device=device, memory_format=torch.channels_last)
    optimizer = make_optimizer(settings.optimizer, model.parameters(), settings.lr, settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    step_model = torch.compile(model) if settings.compile else model

    start_epoch, best = 0, {"score": -math.inf, "epoch": 0, "state": None}
    oracle_preds: list[list[int]] = []
    if checkpoint_path.exists():
        ckpt = torch.load(checkpoint_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        start_epoch = ckpt["epoch"]
        best = ckpt.get("best", best)
        oracle_preds = ckpt.get("oracle_preds", [])

    last_save = time.time()
    for epoch in range(start_epoch, settings.epochs):
        t0 = time.time()
        torch.manual_seed(seed + 7919 * (epoch + 1))  # dropout and friends, per epoch
        generator = torch.Generator().manual_seed(seed + epoch)
        stats = train_one_epoch(step_model, data, train_idx, motion_scale, optimizer, cfg, settings, generator, device)
        scheduler.step()
        record = {"fold": subject, "epoch": epoch + 1, "train_loss": round(stats["loss"], 5),
                  "train_acc": round(stats["acc"], 4), "lr": optimizer.param_groups[0]["lr"]}
        if len(val_idx):
            val_probs = evaluate(step_model, data, val_idx, motion_scale, settings, device)
            val = pooled_metrics(data.labels[val_idx].cpu(), val_probs.argmax(1), cfg.num_classes)
            record["val_uf1"] = round(val["uf1"], 4)
            if val["uf1"] > best["score"]:
                best = {"score": val["uf1"], "epoch": epoch + 1,
                        "state": {k: v.detach().clone() for k, v in model.state_dict().items()}}
        if settings.report_oracle:
            oracle_preds.append(evaluate(step_model, data, test_idx, motion_scale, settings, device).argmax(1).tolist())
        record["seconds"] = round(time.time() - t0, 3)
        done = epoch + 1 == settings.epochs
        if done or time.time() - last_save >= settings.checkpoint_interval:
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "subject": subject,
                               "args": args_record, "best": best, "oracle_preds": oracle_preds}, checkpoint_path)
            last_save = time.time()
        on_epoch(record)

    selected_epoch = settings.epochs
    if len(val_idx) and best["state"] is not None:
        model.load_state_dict(best["state"])
        selected_epoch = best["epoch"]
    probs = evaluate(model, data, test_idx, motion_scale, settings, device)
    return FoldResult(
        subject=subject,
        indices=test_idx.tolist(),
        preds=probs.argmax(1).tolist(),
        probs=[[round(p, 6) for p in row] for row in probs.tolist()],
        epochs=settings.epochs,
        train_samples=len(train_idx),
        seconds=round(time.time() - started, 2),
        selected_epoch=selected_epoch,
        oracle_preds=oracle_preds,
    )
