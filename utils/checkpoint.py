"""Fold checkpoints: the record one fold saves as it trains, alone or in a group of folds trained together.

A plain dict that `torch.load(path, weights_only=True)` reads: the model file's description of the
network (utils.model_file: model, config, classes, aus, adjacency, motion_scale, flip_signs,
preprocessing, training), with 'format' FOLD_FORMAT, plus the fold's training state:

    subject        the held-out subject (`training` names the fitting subjects)
    epoch          epochs done, 1..epochs
    optimizer      the optimiser's state dict; a fold of a group holds its own slice of the stacked state
    scheduler      the learning-rate schedule's state dict
    best           the best-epoch record {score, epoch, state (weights or None), last}
    oracle_preds   the held-out predictions of each epoch (--report-oracle), else []

So predict.py reads a checkpoint as it reads model.pt, and a group of folds keeps one checkpoint
per fold, each of which a fold trained alone could resume from. Its preprocessing is the run's (the
maps reading describes every subject's maps: it checks new inputs and plays no part in training).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from data.errors import DataError
from utils.io import error_text
from utils.model_file import FOLD_FORMAT, record_problem
from utils.paths import file_stem
from utils.run_state import keys_problem

# What resuming reads; checkpoints of the earlier layout (run arguments instead of a model description) hold them too.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "epoch", "subject")


@dataclass
class RunFacts:
    """What every checkpoint of a run records beside its fold: the class names, the preprocessing
    (as model.pt records it) and the run's resolved arguments."""
    classes: list[str]
    preprocessing: dict
    args: dict


def checkpoint_record(description: dict, subject: str, epoch: int, optimizer: dict, scheduler: dict, best: dict,
                      oracle_preds: list[list[int]]) -> dict:
    """The dict saved as a fold checkpoint; `description` is utils.model_file.model_record's."""
    return {**description, "format": FOLD_FORMAT, "subject": subject, "epoch": epoch, "optimizer": optimizer,
            "scheduler": scheduler, "best": best, "oracle_preds": oracle_preds}


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
    if "format" in ckpt and (problem := record_problem(ckpt)):
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

def earlier_group_problem(folder: Path, folds: list[str]) -> str | None:
    """A line naming a checkpoint in `folder` that holds several folds in one file (the earlier layout of
    folds trained together, which this code does not resume), or None."""
    own = {file_stem(s) for s in folds}
    for path in sorted(Path(folder).glob("*.pt")):
        if path.stem in own:
            continue
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # not a checkpoint this run wrote: left alone, as before
            continue
        if isinstance(ckpt, dict) and isinstance(ckpt.get("subjects"), list):
            return (f"checkpoint {path}: folds {', '.join(map(str, ckpt['subjects']))} trained together, saved "
                    "in an earlier layout that cannot be resumed; delete it to train those folds again")
    return None
