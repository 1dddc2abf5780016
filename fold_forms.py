"""The two forms of a fold set's models (fold_set): one module, or several stacked with one vmapped step.

OneModel is one fold's network (compiled with --compile), stepped by engine.train_one_epoch.

StackedModels holds folds whose epochs hold the same number of batches, which then take their
optimiser steps in lockstep, so their models can be stacked (`torch.func.stack_module_state`) and
stepped together. Full batches have one shape for every fold; a last batch whose size differs
between folds is run once per size over the folds that share it, and the one optimiser step follows:

    params, buffers: (F, ...) per tensor       one slice per fold, BN running statistics included
    motion (F, B, 3, S, S), face (F, B, 3, g, g) -> vmap(functional_call) -> logits (F, B, C)
    loss = sum over folds of the fold's own loss  (its gradient w.r.t. a fold's slice is that fold's gradient)
    one optimiser over the stacked tensors     (Adam, AdamW and SGD work elementwise: each fold keeps its state)

Everything else is each fold's own, exactly as for a fold alone: seed and initialisation, batch
order and mirroring, AU adjacency, motion scale, class weights, validation epoch, schedule. So a
fold trained in a group gives the predictions it gives alone, within float tolerance. One
exception: dropout masks inside one vmapped call come from one random stream, so with
--dropout > 0 a grouped fold is equivalent in distribution, not identical. Each fold's slice of
the weights and of the optimiser state is what its model and optimiser would hold alone, so each
fold keeps a checkpoint of its own (utils.checkpoint).

On a GPU this fills the chip with small models; on a CPU it saves the per-operation overhead
that dominates small models (many folds' work per kernel call).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
import math
from collections import defaultdict

import torch
from torch.func import functional_call, stack_module_state, vmap

from engine import DatasetTensors, TrainSettings, TrainingError, autocast, batch_loss, seed_epoch, train_one_epoch
from augment import Batch, training_batches
from models import ClassTerms, ModelConfig




@dataclass
class FoldPlan:
    """What one fold trains on, chooses its epoch on and tests, with its statistics."""
    subject: str
    seed: int                           # the fold's own seed (fold_seed)
    fit_subjects: list[str]
    train_idx: torch.Tensor             # (n_fit,) rows of the fitting subjects
    val_idx: torch.Tensor               # (n_val,) rows of the validation subjects (empty without --val-subjects)
    test_idx: torch.Tensor              # (n_test,) rows of the held-out subject (empty for the final model)
    adjacency: torch.Tensor             # (K, K) AU co-occurrence of the fitting samples
    motion_scale: torch.Tensor          # (1, 3M, 1, 1)
    classes: ClassTerms


class OneModel:
    """One fold's model; `step` is what trains and evaluates it (the compiled module with --compile)."""

    def __init__(self, model: torch.nn.Module, settings: TrainSettings) -> None:
        self.model = self.scratch = model                            # scratch: a model to check checkpoints with
        self.step = torch.compile(model) if settings.compile else model

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    def train_epoch(self, plans: list[FoldPlan], data: DatasetTensors, optimizer: torch.optim.Optimizer,
                    cfg: ModelConfig, settings: TrainSettings, epoch: int, device: torch.device) -> list[dict]:
        """One epoch of the fold; [its mean loss and accuracy]."""
        plan = plans[0]
        return [train_one_epoch(self.step, data, plan.train_idx, plan.motion_scale, optimizer, cfg, settings,
                                seed_epoch(plan.seed, epoch), device, plan.classes)]

    def fold_model(self, k: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """(what evaluates the fold, the module holding its weights)."""
        return self.step, self.model

    def fold_weights(self, k: int) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def fold_optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict:
        return optimizer.state_dict()

    def load(self, weights: list[dict], optimizer: torch.optim.Optimizer, optimizer_states: list[dict]) -> None:
        """The fold's checkpointed weights and optimiser state."""
        self.model.load_state_dict(weights[0])
        optimizer.load_state_dict(optimizer_states[0])


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

    def parameters(self) -> list[torch.Tensor]:
        return list(self.params.values())

    def train_epoch(self, plans: list[FoldPlan], data: DatasetTensors, optimizer: torch.optim.Optimizer,
                    cfg: ModelConfig, settings: TrainSettings, epoch: int, device: torch.device) -> list[dict]:
        return train_group_epoch(self, plans, data, optimizer, cfg, settings, epoch, device)

    def fold_model(self, k: int) -> tuple[torch.nn.Module, torch.nn.Module]:
        """The scratch model holding fold k's weights and statistics (for engine.evaluate), twice
        (what evaluates the fold, the module holding its weights)."""
        state = {**{n: p[k].detach() for n, p in self.params.items()}, **{n: b[k] for n, b in self.buffers.items()}}
        self.scratch.load_state_dict(state)
        return self.scratch, self.scratch

    def fold_weights(self, k: int) -> dict[str, torch.Tensor]:
        """Fold k's state dict, copied out of the stack (a slice would save the whole stack's storage)."""
        return {**{n: p[k].detach().clone() for n, p in self.params.items()},
                **{n: b[k].clone() for n, b in self.buffers.items()}}

    def fold_optimizer_state(self, optimizer: torch.optim.Optimizer, k: int) -> dict:
        """Fold k's slice of the stacked optimiser state: what its own optimiser would hold alone."""
        full = optimizer.state_dict()
        state = {i: {key: value[k].clone() if _stacked(key, value) else value for key, value in entry.items()}
                 for i, entry in full["state"].items()}
        return {"state": state, "param_groups": full["param_groups"]}

    def load(self, weights: list[dict], optimizer: torch.optim.Optimizer, optimizer_states: list[dict]) -> None:
        """Each fold's checkpointed weights and optimiser state, stacked again."""
        with torch.no_grad():
            for own in (self.params, self.buffers):
                for name, value in own.items():
                    value.copy_(torch.stack([w[name] for w in weights]))
        first = optimizer_states[0]
        state = {i: {key: torch.stack([s["state"][i][key] for s in optimizer_states]) if _stacked(key, value)
                     else value for key, value in entry.items()} for i, entry in first["state"].items()}
        optimizer.load_state_dict({"state": state, "param_groups": first["param_groups"]})


def _stacked(key: str, value: object) -> bool:
    """Whether an optimiser state entry holds one slice per fold (all tensors but the shared step count)."""
    return isinstance(value, torch.Tensor) and key != "step"


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
