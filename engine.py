"""The epoch loop and evaluation: dataset tensors, fold statistics, a fresh model, one epoch, class probabilities.

fold_set drives the epochs of a fold, of folds trained together and of the final model. Everything a
fold learns or chooses (AU adjacency, motion normalisation, weights, the validation epoch) comes
from its training subjects.
"""
from __future__ import annotations

import math
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from augment import Batch, mirror, training_batches
from models import ClassTerms, ModelConfig, build_model, compute_loss, cooccurrence_adjacency
from utils.io import error_text

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrainingError(RuntimeError):
    """A fold cannot go on (for example a non-finite loss); the message says why."""


@dataclass
class DatasetTensors:
    """Model inputs of every sample, built once per run and kept on the device.

    motion: (N, 3M, S, S) float32: M motion maps (difference image or flow) stacked
    face:   (N, 3, g, g) float32, ImageNet-normalised onset face at the position grid g
            (zeros when the dataset has no faces; the position branch is then off)
    labels: (N,) int64; au: (N, K) float32 multi-hot over the model's AU nodes
    au_known: (N,) bool, True where the sample's AUs were coded (rows without coding are
            left out of the AU loss and of the adjacency statistics)
    flip_signs: (1, 3M, 1, 1) sign of each motion channel when a sample is mirrored
    """

    motion: torch.Tensor
    face: torch.Tensor
    labels: torch.Tensor
    au: torch.Tensor
    au_known: torch.Tensor
    subjects: list[str]
    names: list[str]
    flip_signs: torch.Tensor
    datasets: list[str]           # (N,) each sample's dataset; empty for a single unnamed dataset

    @classmethod
    def from_arrays(cls, motion: np.ndarray, face: np.ndarray | None, labels: np.ndarray, au: np.ndarray,
                    subjects: list[str], names: list[str], device: torch.device, grid: int,
                    flip_signs: tuple[float, ...] = (1.0, 1.0, 1.0),
                    au_known: np.ndarray | None = None, datasets: list[str] | None = None) -> "DatasetTensors":
        """`grid`: the position branch's token grid (ModelConfig.grid); faces are pooled to it once.
        `au_known` (N,) bool: which samples have AU coding (default: all)."""
        motion_t = torch.from_numpy(np.asarray(motion, dtype=np.float32)).to(device)  # (N, 3M, S, S)
        if face is None:
            face_t = torch.zeros(len(motion_t), 3, grid, grid, device=device)
        else:
            face_t = torch.from_numpy(face).to(device=device, dtype=torch.float32) / 255.0  # (N, 3, S, S)
            face_t = F.adaptive_avg_pool2d(face_t, grid)  # (N, 3, g, g)
            mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
            face_t = (face_t - mean) / std
        return cls(
            motion=motion_t.contiguous(memory_format=torch.channels_last),
            face=face_t.contiguous(),
            labels=torch.from_numpy(np.asarray(labels, dtype=np.int64)).to(device),
            au=torch.from_numpy(np.asarray(au, dtype=np.float32)).to(device),
            au_known=(torch.ones(len(motion_t), dtype=torch.bool) if au_known is None
                      else torch.from_numpy(np.asarray(au_known, dtype=bool))).to(device),
            subjects=list(subjects),
            names=list(names),
            flip_signs=torch.tensor(flip_signs, dtype=torch.float32, device=device).view(1, -1, 1, 1),
            datasets=list(datasets or []),
        )

    def indices(self, subjects: set[str]) -> torch.Tensor:
        idx = [i for i, s in enumerate(self.subjects) if s in subjects]
        return torch.tensor(idx, dtype=torch.long, device=self.labels.device)


@dataclass
class TrainSettings:
    epochs: int       # epochs, batch_size, lr: each entry script gives its protocol's (CASME2_*.py DEFAULTS)
    batch_size: int
    lr: float
    weight_decay: float = 1e-4
    optimizer: str = "adam"
    eval_batch_size: int = 256
    val_subjects: int = 0
    report_oracle: bool = False
    checkpoint_interval: float = 60.0  # seconds between fold checkpoints (the last epoch is always saved)
    pretrained: Path | None = None
    class_balance: bool = False  # weight the cross-entropy by inverse class frequency of the fold's training set
    logit_adjust: float = 0.0  # tau: tau * log(class prior of the fold's training set) added to the logits in the loss
    amp: bool = False  # bf16 autocast; only pays on GPUs with bf16 units
    compile: bool = False
    shift: int = 0  # each training motion map moved by up to this many pixels (face alignment jitter)
    mixup: float = 0.0  # Beta(a, a) mixing of sample pairs within a batch; 0 = off
    erase: float = 0.0  # probability that a training map loses one square region (set to no motion)
    tta_flip: bool = False  # test on each map and its mirror image, their class probabilities averaged


@dataclass
class FoldResult:
    subject: str
    indices: list[int]          # rows of DatasetTensors tested in this fold
    preds: list[int]
    probs: list[list[float]]
    epochs: int
    train_samples: int
    seconds: float
    selected_epoch: int          # the epoch whose weights made `preds`
    oracle_preds: list[list[int]] = field(default_factory=list)  # per epoch; only with --report-oracle
    val_uf1: float | None = None  # the validation subjects' UF1 at the last epoch; only with --val-subjects

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


def fold_subjects(subject: str, subjects: list[str], val_subjects: int, seed: int) -> tuple[list[str], list[str]]:
    """(fitting, validation) subjects of the fold holding out `subject`; `seed` is the fold's seed."""
    train = sorted(set(subjects) - {subject})
    val = choose_validation_subjects(train, val_subjects, seed)
    return [s for s in train if s not in val], val


def untrainable(subject: str, data: "DatasetTensors", settings: "TrainSettings", seed: int) -> str | None:
    """Why the fold holding out `subject` could never reach the optimiser, or None.

    `seed` is the run's seed. Batches of one sample are skipped (batch norm cannot train on
    them), so a fold needs batches of 2 and at least 2 fitting samples.
    """
    if settings.batch_size < 2:
        return f"--batch_size {settings.batch_size}: batches of one sample are skipped, so nothing would train"
    fit, val = fold_subjects(subject, data.subjects, settings.val_subjects, fold_seed(seed, subject))
    n = len(data.indices(set(fit)))
    if n < 2:
        return (f"fold {subject} would train on {n} sample(s) ({len(fit)} subject(s) left after "
                f"--val-subjects {settings.val_subjects}); at least 2 are needed")
    return None


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) weights n / (C * n_c) of a training set's labels (scikit-learn's 'balanced'); 0 for an absent class."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, len(labels) / (num_classes * counts.clamp(min=1)), torch.zeros_like(counts))


def class_terms(labels: torch.Tensor, num_classes: int, settings: TrainSettings) -> ClassTerms:
    """The cross-entropy's class weights and logit offsets of a fold's training labels (each None when off).

    The prior of a class absent from the training set counts it once, keeping the offsets finite.
    """
    weights = balanced_class_weights(labels, num_classes) if settings.class_balance else None
    offsets = None
    if settings.logit_adjust:
        counts = torch.bincount(labels, minlength=num_classes).float().clamp(min=1)
        offsets = settings.logit_adjust * torch.log(counts / counts.sum())
    return ClassTerms(weights, offsets)


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The named tensors of a weights file: a state dict, or a checkpoint holding one under 'model'.

    TrainingError, saying what the file holds instead, for anything else.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            raise TrainingError("holds Python objects that weights-only loading refuses; "
                                "save model.state_dict() instead") from None
        raise TrainingError(f"not a PyTorch weights file ({error_text(e)})") from None
    except Exception as e:  # a foreign or damaged file fails in many ways (zip, pickle, EOF, keys)
        raise TrainingError(f"not a PyTorch weights file ({error_text(e)})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise TrainingError(f"holds a {type(state).__name__}, not a mapping of tensor names to tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, torch.Tensor):
            raise TrainingError(f"entry {name!r} is not a named tensor (a {type(value).__name__})")
    return state


def load_pretrained(model: torch.nn.Module, path: Path) -> tuple[int, int]:
    """Copy every tensor of `path` whose name and shape match; returns (loaded, total)."""
    state = read_weights(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched:
        raise TrainingError("no tensor matches this model's parameter names and shapes")
    for name, value in matched.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise TrainingError(f"tensor {name} holds NaN or infinite values")
    model.load_state_dict(matched, strict=False)
    return len(matched), len(own)



def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on `device` when enabled (shared by single folds and folds trained together)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def batch_loss(outputs: dict, batch: Batch, data: DatasetTensors, cfg: ModelConfig,
               classes: ClassTerms | None) -> tuple[torch.Tensor, dict[str, float]]:
    """compute_loss of `outputs` on `batch`'s targets (mixed like its inputs under mixup)."""
    outputs = {k: (v.float() if v is not None else None) for k, v in outputs.items()}
    loss, parts = compute_loss(outputs, data.labels[batch.idx], data.au[batch.idx], cfg, classes,
                               data.au_known[batch.idx])
    if batch.partner is None:
        return loss, parts
    other, other_parts = compute_loss(outputs, data.labels[batch.partner], data.au[batch.partner], cfg,
                                      classes, data.au_known[batch.partner])
    mixed = {k: batch.lam * parts[k] + (1 - batch.lam) * other_parts[k] for k in parts}
    return batch.lam * loss + (1 - batch.lam) * other, mixed


def train_one_epoch(model: torch.nn.Module, data: DatasetTensors, train_idx: torch.Tensor,
                    motion_scale: torch.Tensor, optimizer: torch.optim.Optimizer, cfg: ModelConfig,
                    settings: TrainSettings, generator: torch.Generator, device: torch.device,
                    classes: ClassTerms | None = None) -> dict:
    """One pass over the training samples in a random order; returns mean loss and accuracy."""
    model.train()
    # Running sums stay on the device: reading them every step would make the host wait for
    # the accelerator after each batch (compute_loss's logged floats are the only read left).
    total_loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for batch in training_batches(data, train_idx, motion_scale, settings.batch_size, generator, device,
                                  settings.shift, settings.mixup, settings.erase):
        idx, labels = batch.idx, data.labels[batch.idx]
        with autocast(device, settings.amp):
            outputs = model(batch.motion, batch.face)
        loss, parts = batch_loss(outputs, batch, data, cfg, classes)
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
def evaluate(model: torch.nn.Module, data: DatasetTensors, idx: torch.Tensor, motion_scale: torch.Tensor,
             settings: TrainSettings, device: torch.device) -> torch.Tensor:
    """Class probabilities (n, C) of the samples `idx`, in that order."""
    model.eval()
    chunks = []
    for start in range(0, len(idx), settings.eval_batch_size):
        batch = idx[start:start + settings.eval_batch_size]
        with autocast(device, settings.amp):
            probs, _ = class_probabilities(model, data.motion[batch] / motion_scale, data.face[batch],
                                           data.flip_signs, settings.tta_flip)
        chunks.append(probs)
    return torch.cat(chunks).cpu()


def class_probabilities(model: torch.nn.Module, motion: torch.Tensor, face: torch.Tensor, flip_signs: torch.Tensor,
                        with_mirror: bool) -> tuple[torch.Tensor, dict]:
    """(class probabilities (B, C), the model's outputs on the maps as given).

    `with_mirror` (--tta-flip) averages the probabilities with those of the mirror images: the
    training mirrors half the samples, so the class is taken to be the same on both; the average
    is the prediction made exactly mirror-invariant (if the class is, that never raises the expected log loss).
    """
    outputs = model(motion, face)
    probs = torch.softmax(outputs["logits"].float(), dim=1)
    if with_mirror:
        probs = (probs + torch.softmax(model(mirror(motion, flip_signs), mirror(face))["logits"].float(), dim=1)) / 2
    return probs, outputs


def fold_statistics(data: DatasetTensors, train_idx: torch.Tensor, cfg: ModelConfig, settings: TrainSettings
                    ) -> tuple[torch.Tensor, torch.Tensor, ClassTerms]:
    """(adjacency (K, K), motion_scale (1, 3M, 1, 1), the loss's class terms) from the training samples only."""
    coded_idx = train_idx[data.au_known[train_idx]]
    adjacency = cooccurrence_adjacency(data.au[coded_idx].cpu(), cfg.adj_threshold, cfg.adj_reweight)
    classes = class_terms(data.labels[train_idx], cfg.num_classes, settings)
    motion_scale = data.motion[train_idx].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)  # (1, 3M, 1, 1)
    return adjacency, motion_scale, classes


def fresh_model(cfg: ModelConfig, settings: TrainSettings, adjacency: torch.Tensor, seed: int,
                device: torch.device) -> torch.nn.Module:
    """A model initialised from `seed` (and --pretrained), with the adjacency installed, on `device`."""
    torch.manual_seed(seed)
    model = build_model(cfg)
    if settings.pretrained is not None:
        load_pretrained(model, settings.pretrained)
    model.set_adjacency(adjacency)
    return model.to(device=device, memory_format=torch.channels_last)


def seed_epoch(seed: int, epoch: int) -> torch.Generator:
    """Re-seed dropout and friends for `epoch` (0-based) and return the generator of its order and flips."""
    torch.manual_seed(seed + 7919 * (epoch + 1))
    return torch.Generator().manual_seed(seed + epoch)


def fold_optimizer(params, settings: TrainSettings
                   ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.CosineAnnealingLR]:
    """The optimiser of --optimizer, --lr and --weight_decay with the cosine schedule over --epochs."""
    optimizer = make_optimizer(settings.optimizer, params, settings.lr, settings.weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)


def epoch_record(subject: str, epoch: int, stats: dict, optimizer: torch.optim.Optimizer) -> dict:
    """The log.jsonl line of one fold's epoch (`epoch` 0-based), before validation and timing."""
    return {"fold": subject, "epoch": epoch + 1, "train_loss": round(stats["loss"], 5),
            "train_acc": round(stats["acc"], 4), "lr": optimizer.param_groups[0]["lr"]}
