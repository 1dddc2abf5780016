"""Several LOSO folds trained together, one vmapped optimiser step for all of them.

Folds whose epochs hold the same number of batches take their optimiser steps in lockstep, so
their models can be stacked (`torch.func.stack_module_state`) and stepped together. Full batches
have one shape for every fold; a last batch whose size differs between folds is run once per
size over the folds that share it, and the one optimiser step follows:

    params, buffers: (F, ...) per tensor       one slice per fold, BN running statistics included
    motion (F, B, 3, S, S), face (F, B, 3, g, g) -> vmap(functional_call) -> logits (F, B, C)
    loss = sum over folds of the fold's own loss  (its gradient w.r.t. a fold's slice is that fold's gradient)
    one optimiser over the stacked tensors     (Adam, AdamW and SGD work elementwise: each fold keeps its state)

Everything else is each fold's own, exactly as in engine.run_fold: seed and initialisation,
batch order and mirroring, AU adjacency, motion scale, class weights, validation epoch,
schedule. So a fold trained in a group gives the predictions it gives alone, within float
tolerance. One exception: dropout masks inside one vmapped call come from one random stream,
so with --dropout > 0 a grouped fold is equivalent in distribution, not identical.

On a GPU this fills the chip with small models; on a CPU it saves the per-operation overhead
that dominates small models (many folds' work per kernel call).
"""
from __future__ import annotations

import copy
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import torch
from torch.func import functional_call, stack_module_state, vmap

from data.errors import DataError
from engine import (Batch, DatasetTensors, FoldPlan, FoldResult, TrainSettings, TrainingError, autocast, batch_loss,
                    batches_per_epoch, epoch_record, evaluate, fold_optimizer, fold_seed, fold_subjects, no_best,
                    plan_fold, predict_held_out, seed_epoch, training_batches, validation_step)
from models import ModelConfig
from utils.io import atomic_torch_save, error_text


def fold_groups(folds: list[str], data: DatasetTensors, settings: TrainSettings, seed: int,
                max_group: int) -> list[list[str]]:
    """`folds` split into groups of at most `max_group` folds whose epochs hold as many batches."""
    by_size: dict[int, list[str]] = defaultdict(list)
    for subject in folds:
        fit, _ = fold_subjects(subject, data.subjects, settings.val_subjects, fold_seed(seed, subject))
        by_size[batches_per_epoch(len(data.indices(set(fit))), settings.batch_size)].append(subject)
    groups = []
    for size in sorted(by_size):
        members = by_size[size]
        groups += [members[i:i + max_group] for i in range(0, len(members), max_group)]
    return groups


class StackedModels:
    """F models of one architecture as stacked tensors, with a vmapped forward."""

    def __init__(self, models: list[torch.nn.Module]) -> None:
        params, self.buffers = stack_module_state(models)          # (F, ...) each
        self.params = {name: p.detach().requires_grad_() for name, p in params.items()}
        self.template = copy.deepcopy(models[0]).to("meta")         # structure only
        for module in self.template.modules():  # fused attention kernels have no vmap rule on CPU: use the matmul path
            if hasattr(module, "fused_attn"):
                module.fused_attn = False
        self.scratch = models[0]                                    # a real model to evaluate one fold with

        def forward(p: dict, b: dict, motion: torch.Tensor, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(self.template, (p, b), (motion, face))
            au = out["au_logits"]
            return out["logits"], (au if au is not None else out["logits"].new_zeros(0))

        self._forward = vmap(forward, randomness="different")

    def __call__(self, motion: torch.Tensor, face: torch.Tensor, folds: list[int] | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(F', B, C) logits and (F', B, K) AU logits (None without an AU head) of the folds
        `folds` (default all, F' = F); motion (F', B, 3, S, S), face (F', B, 3, g, g)."""
        if folds is None or len(folds) == len(next(iter(self.params.values()))):
            logits, au = self._forward(self.params, self.buffers, motion, face)
        else:
            rows = torch.tensor(folds, device=motion.device)
            buffers = {n: b[rows] for n, b in self.buffers.items()}   # copies: written back below
            logits, au = self._forward({n: p[rows] for n, p in self.params.items()}, buffers, motion, face)
            with torch.no_grad():
                for name, value in buffers.items():
                    self.buffers[name][rows] = value                     # the batch-norm statistics it updated
        return logits, (au if au.shape[-1] else None)

    def train(self, mode: bool = True) -> None:
        self.template.train(mode)

    def fold_model(self, k: int) -> torch.nn.Module:
        """The scratch model holding fold k's weights and statistics (for engine.evaluate)."""
        state = {**{n: p[k].detach() for n, p in self.params.items()}, **{n: b[k] for n, b in self.buffers.items()}}
        self.scratch.load_state_dict(state)
        return self.scratch

    def state(self) -> dict:
        return {"params": {n: p.detach() for n, p in self.params.items()}, "buffers": self.buffers}

    def load(self, state: dict) -> None:
        with torch.no_grad():
            for group, own in (("params", self.params), ("buffers", self.buffers)):
                for name, value in own.items():
                    value.copy_(state[group][name])


def train_group_epoch(stack: StackedModels, plans: list[FoldPlan], data: DatasetTensors,
                      optimizer: torch.optim.Optimizer, cfg: ModelConfig, settings: TrainSettings, epoch: int,
                      device: torch.device) -> list[dict]:
    """One epoch of every fold of the group; each fold's mean loss and accuracy."""
    stack.train()
    batches = [training_batches(data, p.train_idx, p.motion_scale, settings.batch_size, seed_epoch(p.seed, epoch),
                                device, settings.shift, settings.mixup, settings.erase) for p in plans]
    sums = torch.zeros(len(plans), 3, dtype=torch.float64, device=device)   # (F, [loss * n, correct, n])
    for step in zip(*batches):                  # as many batches per fold: steps in lockstep
        total = 0.0
        for folds in _folds_by_batch_size(step):
            motion = torch.stack([step[k].motion for k in folds])      # (F', B, 3, S, S)
            face = torch.stack([step[k].face for k in folds])          # (F', B, 3, g, g)
            with autocast(device, settings.amp):
                logits, au_logits = stack(motion, face, folds)
            for j, k in enumerate(folds):
                plan, batch = plans[k], step[k]
                outputs = {"logits": logits[j], "au_logits": au_logits[j] if au_logits is not None else None}
                loss, parts = batch_loss(outputs, batch, data, cfg, plan.classes)
                if not math.isfinite(parts["total"]):
                    raise TrainingError(f"fold {plan.subject}: the training loss became {parts['total']}; "
                                        "try a lower --lr")
                total = total + loss
                sums[k, 0] += loss.detach().double() * len(batch.idx)
                sums[k, 1] += (logits[j].detach().argmax(1) == data.labels[batch.idx]).sum()
                sums[k, 2] += len(batch.idx)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
    return [{"loss": float(s[0]) / max(float(s[2]), 1), "acc": float(s[1]) / max(float(s[2]), 1)} for s in sums.cpu()]


def _folds_by_batch_size(step: tuple[Batch, ...]) -> list[list[int]]:
    """Positions of the folds in `step`, grouped by the size of their batch (one vmapped call each)."""
    by_size: dict[int, list[int]] = defaultdict(list)
    for k, batch in enumerate(step):
        by_size[len(batch.idx)].append(k)
    return list(by_size.values())


def run_fold_group(subjects: list[str], data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
                   device: torch.device, checkpoint_path: Path, args_record: dict,
                   on_epoch: Callable[[dict], None] = lambda record: None) -> list[FoldResult]:
    """Train the folds holding out `subjects` (as many batches per epoch) together; test each.

    Resumes from `checkpoint_path` (the group's checkpoint) like engine.run_fold does.
    """
    started = time.time()
    plans, models = zip(*(plan_fold(s, data, cfg, settings, seed, device) for s in subjects))
    plans = list(plans)
    if len({batches_per_epoch(len(p.train_idx), settings.batch_size) for p in plans}) != 1:
        raise ValueError("folds trained together need as many batches per epoch (see fold_groups)")
    stack = StackedModels(list(models))
    optimizer, scheduler = fold_optimizer(list(stack.params.values()), settings)
    start_epoch = 0
    best = [no_best() for _ in plans]
    oracle_preds: list[list[list[int]]] = [[] for _ in plans]
    if checkpoint_path.exists():
        start_epoch, best, oracle_preds = _resume(checkpoint_path, stack, optimizer, scheduler, subjects, device)

    last_save = time.time()
    for epoch in range(start_epoch, settings.epochs):
        t0 = time.time()
        stats = train_group_epoch(stack, plans, data, optimizer, cfg, settings, epoch, device)
        scheduler.step()
        records = []
        for k, plan in enumerate(plans):
            record = epoch_record(plan.subject, epoch, stats[k], optimizer)
            if len(plan.val_idx) or settings.report_oracle:
                model = stack.fold_model(k)
            if len(plan.val_idx):
                uf1, best[k] = validation_step(model, model, data, plan, best[k], epoch, cfg, settings, device)
                record["val_uf1"] = round(uf1, 4)
            if settings.report_oracle:
                oracle_preds[k].append(
                    evaluate(model, data, plan.test_idx, plan.motion_scale, settings, device).argmax(1).tolist())
            records.append(record)
        seconds = round(time.time() - t0, 3)
        done = epoch + 1 == settings.epochs
        if done or time.time() - last_save >= settings.checkpoint_interval:
            atomic_torch_save({**stack.state(), "optimizer": optimizer.state_dict(),
                               "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "subjects": list(subjects),
                               "args": args_record, "best": best, "oracle_preds": oracle_preds}, checkpoint_path)
            last_save = time.time()
        for record in records:
            on_epoch({**record, "seconds": seconds})
    return [predict_held_out(stack.fold_model(k), plan, best[k], oracle_preds[k], data, settings, device, started)
            for k, plan in enumerate(plans)]


def _resume(path: Path, stack: StackedModels, optimizer: torch.optim.Optimizer, scheduler, subjects: list[str],
            device: torch.device) -> tuple[int, list[dict], list[list[list[int]]]]:
    """Load a group checkpoint; DataError naming the file when it does not fit this group."""
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
        if ckpt["subjects"] != list(subjects):
            raise ValueError(f"it holds folds {', '.join(ckpt['subjects'])}")
        stack.load(ckpt)
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        return int(ckpt["epoch"]), ckpt["best"], ckpt["oracle_preds"]
    except Exception as e:  # a damaged or foreign file fails in many ways (zip, pickle, keys, shapes)
        raise DataError(f"checkpoint {path}: does not fit this group of folds ({error_text(e)}); "
                        "delete it to restart them") from None

