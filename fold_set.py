"""The epoch driver: one LOSO fold, a group of folds trained together, or the final model, as a fold set.

A fold set is the plans of F folds (what each trains on, chooses its epoch on and tests, with its
statistics and seed) and their models in one of two forms (fold_forms): one module (F = 1) or F
models stacked and stepped together (--folds-together). Each epoch trains every fold, validates it
(--val-subjects), tests it (--report-oracle), saves one checkpoint per fold at the interval
(utils.checkpoint) and hands one log record per fold on. Each epoch re-seeds its own random
streams, so a resumed fold set is identical to an unbroken one.

The held-out subject is used for one thing only: the final prediction. The final model is a
fold set of one whose plan trains on every sample and holds nothing out.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from augment import batches_per_epoch
from data.errors import DataError
from engine import (DatasetTensors, FoldResult, TrainSettings, TrainingError, epoch_record, evaluate, fold_optimizer,
                    fold_seed, fold_statistics, fold_subjects, fresh_model, untrainable)
from fold_forms import FoldPlan, OneModel, StackedModels
from models import ModelConfig
from utils.checkpoint import RunFacts, checkpoint_record, read_checkpoint
from utils.io import atomic_torch_save, error_text
from utils.metrics import pooled_metrics
from utils.model_file import model_record

FINAL_FOLD = "final"   # the name the final model's epochs carry in log.jsonl; also keys its seed


def plan_fold(subject: str, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
              device: torch.device) -> tuple[FoldPlan, torch.nn.Module]:
    """The fold's split, its statistics from the fitting samples and its fresh model; `seed` is the run's."""
    problem = untrainable(subject, data, settings, seed)
    if problem:
        raise TrainingError(problem)
    seed = fold_seed(seed, subject)
    fit_subjects, val_subjects = fold_subjects(subject, data.subjects, settings.val_subjects, seed)
    return _plan(subject, seed, fit_subjects, data.indices(set(fit_subjects)), data.indices(set(val_subjects)),
                 data.indices({subject}), data, cfg, settings, device)


def _plan(subject: str, seed: int, fit_subjects: list[str], train_idx: torch.Tensor, val_idx: torch.Tensor,
          test_idx: torch.Tensor, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings,
          device: torch.device) -> tuple[FoldPlan, torch.nn.Module]:
    adjacency, motion_scale, classes = fold_statistics(data, train_idx, cfg, settings)
    plan = FoldPlan(subject, seed, fit_subjects, train_idx, val_idx, test_idx, adjacency, motion_scale, classes)
    return plan, fresh_model(cfg, settings, adjacency, seed, device)


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


def no_best() -> dict:
    """The best-epoch record before any validation (`last`: the latest epoch's validation UF1)."""
    return {"score": -math.inf, "epoch": 0, "state": None, "last": None}


class FoldSet:
    """The folds' plans and models, their optimiser and schedule, and what each fold carries between epochs."""

    def __init__(self, plans: list[FoldPlan], models: list[torch.nn.Module], settings: TrainSettings) -> None:
        if len(plans) > 1 and len({batches_per_epoch(len(p.train_idx), settings.batch_size) for p in plans}) != 1:
            raise ValueError("folds trained together need as many batches per epoch (see fold_groups)")
        self.plans = plans
        self.models = OneModel(models[0], settings) if len(models) == 1 else StackedModels(models)
        self.optimizer, self.scheduler = fold_optimizer(self.models.parameters(), settings)
        self.epoch = 0                                  # epochs done
        self.best = [no_best() for _ in plans]
        self.oracle_preds: list[list[list[int]]] = [[] for _ in plans]


def run_epoch(folds: FoldSet, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings,
              device: torch.device) -> list[dict]:
    """Train epoch `folds.epoch` of every fold, validate it (and test it, with --report-oracle); the log records."""
    t0, epoch = time.time(), folds.epoch
    stats = folds.models.train_epoch(folds.plans, data, folds.optimizer, cfg, settings, epoch, device)
    folds.scheduler.step()
    records = []
    for k, plan in enumerate(folds.plans):
        record = epoch_record(plan.subject, epoch, stats[k], folds.optimizer)
        oracle = settings.report_oracle and len(plan.test_idx)   # the final model holds nothing out
        if len(plan.val_idx) or oracle:
            runner, keep = folds.models.fold_model(k)
        if len(plan.val_idx):
            uf1, folds.best[k] = validation_step(runner, keep, data, plan, folds.best[k], epoch, cfg, settings, device)
            record["val_uf1"] = round(uf1, 4)
        if oracle:
            folds.oracle_preds[k].append(
                evaluate(runner, data, plan.test_idx, plan.motion_scale, settings, device).argmax(1).tolist())
        records.append(record)
    seconds = round(time.time() - t0, 3)
    folds.epoch = epoch + 1
    return [{**record, "seconds": seconds} for record in records]


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


def train(folds: FoldSet, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, device: torch.device,
          on_epoch: Callable[[dict], None], saves: tuple[list[Path], RunFacts] | None = None) -> None:
    """Run the epochs left; with `saves` (one checkpoint path per fold, the run's facts), checkpoint each fold
    every --checkpoint-interval seconds and after the last epoch."""
    last_save = time.time()
    while folds.epoch < settings.epochs:
        records = run_epoch(folds, data, cfg, settings, device)
        if saves and (folds.epoch == settings.epochs or time.time() - last_save >= settings.checkpoint_interval):
            for k, path in enumerate(saves[0]):
                atomic_torch_save(fold_checkpoint(folds, k, data, cfg, settings, saves[1]), path)
            last_save = time.time()
        for record in records:
            on_epoch(record)


def fold_checkpoint(folds: FoldSet, k: int, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings,
                    facts: RunFacts) -> dict:
    """Fold k's checkpoint record (utils.checkpoint)."""
    plan = folds.plans[k]
    training = {"subjects": plan.fit_subjects, "samples": len(plan.train_idx), "epochs": settings.epochs,
                "seed": plan.seed, "args": facts.args}
    description = model_record(folds.models.fold_weights(k), cfg, facts.classes, plan.adjacency, plan.motion_scale,
                               tuple(data.flip_signs.flatten().tolist()), facts.preprocessing, training)
    return checkpoint_record(description, plan.subject, folds.epoch, folds.models.fold_optimizer_state(folds.optimizer, k),
                             folds.scheduler.state_dict(), folds.best[k], folds.oracle_preds[k])


def resume(folds: FoldSet, paths: list[Path], settings: TrainSettings, device: torch.device) -> bool:
    """Load the folds' checkpoints, if any; False when only some exist or they stopped at different
    epochs (a stop between two folds' saves): the folds must then go on one by one.
    DataError naming the file when a checkpoint does not fit."""
    held = [p.exists() for p in paths]
    if not any(held):
        return True
    if not all(held):
        return False
    records = [read_checkpoint(p, folds.models.scratch, plan.subject, settings.epochs, device)
               for p, plan in zip(paths, folds.plans)]
    if len({r["epoch"] for r in records}) != 1:
        return False
    try:
        folds.models.load([r["model"] for r in records], folds.optimizer, [r["optimizer"] for r in records])
        folds.scheduler.load_state_dict(records[0]["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as e:
        raise DataError(f"checkpoint {paths[0]}{' and the others of its group' if len(paths) > 1 else ''}: "
                        f"does not fit this run ({error_text(e)}); delete it to restart fold(s) "
                        f"{', '.join(p.subject for p in folds.plans)}") from None
    folds.epoch = records[0]["epoch"]
    folds.best = [r.get("best", no_best()) for r in records]
    folds.oracle_preds = [r.get("oracle_preds", []) for r in records]
    return True


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


# --------------------------------------------------------------------------- what the run calls

def run_fold_group(subjects: list[str], data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
                   device: torch.device, paths: list[Path], facts: RunFacts,
                   on_epoch: Callable[[dict], None] = lambda record: None) -> list[FoldResult]:
    """Train the folds holding out `subjects` (alone, or together when their epochs hold as many batches),
    resuming from their checkpoints `paths`; then predict each held-out subject's samples."""
    started = time.time()
    plans, models = zip(*(plan_fold(s, data, cfg, settings, seed, device) for s in subjects))
    folds = FoldSet(list(plans), list(models), settings)
    if not resume(folds, paths, settings, device):
        return [run_fold(s, data, cfg, settings, seed, device, p, facts, on_epoch) for s, p in zip(subjects, paths)]
    train(folds, data, cfg, settings, device, on_epoch, (paths, facts))
    return [predict_held_out(folds.models.fold_model(k)[1], plan, folds.best[k], folds.oracle_preds[k], data,
                             settings, device, started) for k, plan in enumerate(folds.plans)]


def run_fold(subject: str, data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int,
             device: torch.device, path: Path, facts: RunFacts,
             on_epoch: Callable[[dict], None] = lambda record: None) -> FoldResult:
    """Train a fresh model without `subject` (resuming from its checkpoint `path`), then predict its samples."""
    return run_fold_group([subject], data, cfg, settings, seed, device, [path], facts, on_epoch)[0]


@dataclass
class TrainedModel:
    """A model trained on every sample, with the statistics its inputs need."""
    model: torch.nn.Module
    adjacency: torch.Tensor       # (K, K) AU co-occurrence adjacency of the training samples
    motion_scale: torch.Tensor    # (1, 3M, 1, 1) per-channel standard deviation the motion is divided by
    train_samples: int
    seconds: float


def train_final(data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings, seed: int, device: torch.device,
                on_epoch: Callable[[dict], None] = lambda record: None) -> TrainedModel:
    """Train one model on every sample with the folds' recipe (statistics, schedule, seeding); `seed` is the run's.

    Nothing is held out, so there is no epoch to choose: --val-subjects does not apply and the last epoch is kept.
    """
    started = time.time()
    every = torch.arange(len(data.labels), device=data.labels.device)
    if settings.batch_size < 2 or len(every) < 2:
        raise TrainingError("the final model needs --batch_size of at least 2 and at least 2 samples")
    none = every[:0]
    plan, model = _plan(FINAL_FOLD, fold_seed(seed, FINAL_FOLD), sorted(set(data.subjects)), every, none, none,
                        data, cfg, settings, device)
    folds = FoldSet([plan], [model], settings)
    train(folds, data, cfg, settings, device, on_epoch)
    return TrainedModel(model=model, adjacency=plan.adjacency, motion_scale=plan.motion_scale,
                        train_samples=len(every), seconds=round(time.time() - started, 2))
