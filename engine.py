"""One LOSO fold, end to end: fold statistics, a fresh model, a fixed schedule, a test.

The held-out subject is used for one thing only: the final prediction. Everything the
fold learns or chooses (AU adjacency, motion normalisation, weights, the validation
epoch) comes from its training subjects.
"""
from __future__ import annotations

import math
import pickle
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from data.errors import DataError
from models import ClassTerms, ModelConfig, build_model, compute_loss, cooccurrence_adjacency
from utils.io import atomic_torch_save, error_text
from utils.metrics import pooled_metrics
from utils.run_state import keys_problem

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


CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "subject")


def _state_problem(name: str, state: object, own: dict[str, torch.Tensor]) -> str | None:
    """What keeps `state` from being loaded into a model whose state dict is `own`, or None."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return f"'{name}' is not a mapping of tensor names to tensors"
    missing, unknown = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unknown:
        return (f"'{name}' holds other tensors than this model "
                f"({len(missing)} missing{', e.g. ' + missing[0] if missing else ''}; {len(unknown)} unknown)")
    for key, value in state.items():
        if value.shape != own[key].shape:
            return f"'{name}' tensor {key} has shape {tuple(value.shape)}, the model's is {tuple(own[key].shape)}"
        if value.is_floating_point() and not torch.isfinite(value).all():
            return f"'{name}' tensor {key} holds NaN or infinite values"
    return None


def _optimizer_problem(state: object, model: torch.nn.Module) -> str | None:
    if not (isinstance(state, dict) and isinstance(state.get("state"), dict)
            and isinstance(state.get("param_groups"), list)):
        return "'optimizer' is not an optimiser state"
    shapes = [p.shape for p in model.parameters()]
    for index, entry in state["state"].items():
        if not (isinstance(index, int) and 0 <= index < len(shapes) and isinstance(entry, dict)):
            return f"'optimizer' has state for parameter {index!r}, which this model lacks"
        for key, value in entry.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape != shapes[index]:
                return (f"'optimizer' {key} of parameter {index} has shape {tuple(value.shape)}, "
                        f"the parameter's is {tuple(shapes[index])}")
    return None


def checkpoint_problem(ckpt: object, model: torch.nn.Module, subject: str, epochs: int) -> str | None:
    """What is wrong with a fold checkpoint for this run's fold `subject` and `model`, or None."""
    problem = keys_problem(ckpt, CHECKPOINT_KEYS, "a checkpoint")
    if problem:
        return problem
    if ckpt["subject"] != subject:
        return f"belongs to fold {ckpt['subject']!r}, not {subject!r}"
    epoch = ckpt["epoch"]
    if not (isinstance(epoch, int) and not isinstance(epoch, bool) and 1 <= epoch <= epochs):
        return f"'epoch' {epoch!r} is not an epoch of 1..{epochs}"
    own = model.state_dict()
    problem = _state_problem("model", ckpt["model"], own) or _optimizer_problem(ckpt["optimizer"], model)
    if problem:
        return problem
    if not isinstance(ckpt["scheduler"], dict):
        return "'scheduler' is not a scheduler state"
    best = ckpt.get("best", {"state": None, "epoch": 0, "score": -math.inf})
    if not (isinstance(best, dict) and {"state", "epoch", "score"} <= set(best)):
        return "'best' is not a best-epoch record"
    if best["state"] is not None and (problem := _state_problem("best", best["state"], own)):
        return problem
    if not isinstance(ckpt.get("oracle_preds", []), list):
        return "'oracle_preds' is not a list"
    return None


def read_checkpoint(path: Path, model: torch.nn.Module, subject: str, epochs: int,
                    device: torch.device | str = "cpu") -> dict:
    """The checkpoint of fold `subject` at `path`, checked against `model` and the schedule.

    DataError naming the file when it is damaged or belongs to something else.
    """
    hint = f"delete it to restart fold {subject}"
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # a damaged file fails in many ways (zip, pickle, EOF, keys)
        raise DataError(f"checkpoint {path}: cannot be read ({error_text(e)}); {hint}") from None
    problem = checkpoint_problem(ckpt, model, subject, epochs)
    if problem:
        raise DataError(f"checkpoint {path}: {problem}; {hint}")
    return ckpt


def autocast(device: torch.device, enabled: bool):
    """bf16 autocast on `device` when enabled (shared by single folds and folds trained together)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=enabled)


def mirror(x: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
    """Maps `x` (B, C, H, W) mirrored left-right; `signs` (1, C, 1, 1) flips channels whose
    meaning mirrors too (a flow map's horizontal component)."""
    return x.flip(-1) if signs is None else x.flip(-1) * signs


def _random_flip(x: torch.Tensor, flip: torch.Tensor, signs: torch.Tensor | None = None) -> torch.Tensor:
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


def training_batches(data: DatasetTensors, train_idx: torch.Tensor, motion_scale: torch.Tensor, batch_size: int,
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
        motion = _random_flip(data.motion[idx], flip, data.flip_signs) / motion_scale  # (B, 3M, S, S)
        face = _random_flip(data.face[idx], flip)                      # (B, 3, g, g)
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


FINAL_FOLD = "final"   # the name the final model's epochs carry in log.jsonl; also keys its seed


@dataclass
class TrainedModel:
    """A model trained on every sample, with the statistics its inputs need."""
    model: torch.nn.Module
    adjacency: torch.Tensor       # (K, K) AU co-occurrence adjacency of the training samples
    motion_scale: torch.Tensor    # (1, 3, 1, 1) per-channel standard deviation the motion is divided by
    train_samples: int
    seconds: float


def train_final(data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int, device: torch.device,
                on_epoch: Callable[[dict], None] = lambda record: None) -> TrainedModel:
    """Train one model on every sample with the folds' recipe (statistics, schedule, seeding); `seed` is the run's.

    Nothing is held out, so there is no epoch to choose: --val-subjects does not apply and the last epoch is kept.
    """
    started = time.time()
    train_idx = torch.arange(len(data.labels), device=data.labels.device)
    if settings.batch_size < 2 or len(train_idx) < 2:
        raise TrainingError("the final model needs --batch_size of at least 2 and at least 2 samples")
    seed = fold_seed(seed, FINAL_FOLD)
    adjacency, motion_scale, classes = fold_statistics(data, train_idx, cfg, settings)
    model = fresh_model(cfg, settings, adjacency, seed, device)
    optimizer, scheduler = fold_optimizer(model.parameters(), settings)
    step_model = torch.compile(model) if settings.compile else model
    for epoch in range(settings.epochs):
        t0 = time.time()
        stats = train_one_epoch(step_model, data, train_idx, motion_scale, optimizer, cfg, settings,
                                seed_epoch(seed, epoch), device, classes)
        scheduler.step()
        on_epoch({**epoch_record(FINAL_FOLD, epoch, stats, optimizer), "seconds": round(time.time() - t0, 3)})
    return TrainedModel(model=model, adjacency=adjacency, motion_scale=motion_scale, train_samples=len(train_idx),
                        seconds=round(time.time() - started, 2))


# --------------------------------------------------------------------------- one fold, step by step

@dataclass
class FoldPlan:
    """What one fold trains on, chooses its epoch on and tests, with its statistics."""
    subject: str
    seed: int                           # the fold's own seed (fold_seed)
    train_idx: torch.Tensor             # (n_fit,) rows of the fitting subjects
    val_idx: torch.Tensor               # (n_val,) rows of the validation subjects (empty without --val-subjects)
    test_idx: torch.Tensor              # (n_test,) rows of the held-out subject
    motion_scale: torch.Tensor          # (1, 3, 1, 1)
    classes: ClassTerms


def plan_fold(subject: str, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
              device: torch.device) -> tuple[FoldPlan, torch.nn.Module]:
    """The fold's split, its statistics from the fitting samples and its fresh model; `seed` is the run's."""
    problem = untrainable(subject, data, settings, seed)
    if problem:
        raise TrainingError(problem)
    seed = fold_seed(seed, subject)
    fit_subjects, val_subjects = fold_subjects(subject, data.subjects, settings.val_subjects, seed)
    train_idx = data.indices(set(fit_subjects))
    adjacency, motion_scale, classes = fold_statistics(data, train_idx, cfg, settings)
    plan = FoldPlan(subject, seed, train_idx, data.indices(set(val_subjects)), data.indices({subject}),
                    motion_scale, classes)
    return plan, fresh_model(cfg, settings, adjacency, seed, device)


def no_best() -> dict:
    """The best-epoch record before any validation (`last`: the latest epoch's validation UF1)."""
    return {"score": -math.inf, "epoch": 0, "state": None, "last": None}


@dataclass
class FoldState:
    """What a fold carries from epoch to epoch, and what its checkpoint holds."""
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    epoch: int = 0                      # epochs done
    best: dict = field(default_factory=no_best)
    oracle_preds: list[list[int]] = field(default_factory=list)


def resume_fold(path: Path, state: FoldState, subject: str, settings: TrainSettings, device: torch.device) -> None:
    """Load the fold checkpoint at `path` into `state`; DataError naming the file when it does not fit."""
    ckpt = read_checkpoint(path, state.model, subject, settings.epochs, device)
    try:
        state.model.load_state_dict(ckpt["model"])
        state.optimizer.load_state_dict(ckpt["optimizer"])
        state.scheduler.load_state_dict(ckpt["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"checkpoint {path}: does not fit this run ({error_text(e)}); "
                        f"delete it to restart fold {subject}") from None
    state.epoch = ckpt["epoch"]
    state.best = ckpt.get("best", state.best)
    state.oracle_preds = ckpt.get("oracle_preds", [])


def save_fold(path: Path, state: FoldState, plan: FoldPlan, args_record: dict) -> None:
    """The fold checkpoint: enough to resume exactly, and the motion scale predict.py needs."""
    atomic_torch_save({"model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
                       "scheduler": state.scheduler.state_dict(), "epoch": state.epoch, "subject": plan.subject,
                       "args": args_record, "best": state.best, "oracle_preds": state.oracle_preds,
                       "motion_scale": plan.motion_scale.flatten().cpu()}, path)


def validation_step(model: torch.nn.Module, keep: torch.nn.Module, data: DatasetTensors, plan: FoldPlan,
                    best: dict, epoch: int, cfg: ModelConfig, settings: TrainSettings,
                    device: torch.device) -> tuple[float, dict]:
    """(validation UF1 of `model` after `epoch` (0-based), the best-epoch record).

    The record takes a copy of `keep`'s weights (the uncompiled module of `model`) when this epoch beats it,
    and this epoch's UF1 as `last`.
    """
    val_probs = evaluate(model, data, plan.val_idx, plan.motion_scale, settings, device)
    uf1 = pooled_metrics(data.labels[plan.val_idx].cpu(), val_probs.argmax(1), cfg.num_classes)["uf1"]
    if uf1 > best["score"]:
        best = {"score": uf1, "epoch": epoch + 1, "state": {k: v.detach().clone() for k, v in keep.state_dict().items()}}
    return uf1, {**best, "last": uf1}


def fold_epoch(step_model: torch.nn.Module, state: FoldState, plan: FoldPlan, data: DatasetTensors,
               cfg: ModelConfig, settings: TrainSettings, device: torch.device) -> dict:
    """Train epoch `state.epoch`, validate it (and test it, with --report-oracle); its log record."""
    t0, epoch = time.time(), state.epoch
    stats = train_one_epoch(step_model, data, plan.train_idx, plan.motion_scale, state.optimizer, cfg, settings,
                            seed_epoch(plan.seed, epoch), device, plan.classes)
    state.scheduler.step()
    record = epoch_record(plan.subject, epoch, stats, state.optimizer)
    if len(plan.val_idx):
        uf1, state.best = validation_step(step_model, state.model, data, plan, state.best, epoch, cfg, settings,
                                          device)
        record["val_uf1"] = round(uf1, 4)
    if settings.report_oracle:
        state.oracle_preds.append(
            evaluate(step_model, data, plan.test_idx, plan.motion_scale, settings, device).argmax(1).tolist())
    record["seconds"] = round(time.time() - t0, 3)
    state.epoch = epoch + 1
    return record


def predict_held_out(model: torch.nn.Module, plan: FoldPlan, best: dict, oracle_preds: list[list[int]],
                     data: DatasetTensors, settings: TrainSettings, device: torch.device, started: float
                     ) -> FoldResult:
    """The held-out subject's predictions by the last epoch, or by the validation-chosen one."""
    selected_epoch = settings.epochs
    if len(plan.val_idx) and best["state"] is not None:
        model.load_state_dict(best["state"])
        selected_epoch = best["epoch"]
    probs = evaluate(model, data, plan.test_idx, plan.motion_scale, settings, device)
    if not torch.isfinite(probs).all():  # never let NaN reach a result file
        raise TrainingError(f"the predictions for {plan.subject} are not finite (NaN or inf); "
                            "nothing was written for this fold; try a lower --lr")
    return FoldResult(subject=plan.subject, indices=plan.test_idx.tolist(), preds=probs.argmax(1).tolist(),
                      probs=[[round(p, 6) for p in row] for row in probs.tolist()], epochs=settings.epochs,
                      train_samples=len(plan.train_idx), seconds=round(time.time() - started, 2),
                      selected_epoch=selected_epoch, oracle_preds=oracle_preds,
                      val_uf1=round(best["last"], 4) if best.get("last") is not None else None)




def run_fold(subject: str, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
             device: torch.device, checkpoint_path: Path, args_record: dict,
             on_epoch: Callable[[dict], None] = lambda record: None) -> FoldResult:
    """Train a fresh model without `subject`, then predict `subject`'s samples.

    Resumes from `checkpoint_path` when it holds a partial run of this fold. Each epoch
    re-seeds its own random streams, so a resumed fold is identical to an unbroken one.
    """
    started = time.time()
    plan, model = plan_fold(subject, data, cfg, settings, seed, device)
    state = FoldState(model, *fold_optimizer(model.parameters(), settings))
    step_model = torch.compile(model) if settings.compile else model
    if checkpoint_path.exists():
        resume_fold(checkpoint_path, state, subject, settings, device)
    last_save = time.time()
    while state.epoch < settings.epochs:
        record = fold_epoch(step_model, state, plan, data, cfg, settings, device)
        if state.epoch == settings.epochs or time.time() - last_save >= settings.checkpoint_interval:
            save_fold(checkpoint_path, state, plan, args_record)
            last_save = time.time()
        on_epoch(record)
    return predict_held_out(model, plan, state.best, state.oracle_preds, data, settings, device, started)
