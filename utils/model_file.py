"""The final model file (`model.pt`) that `--final` writes into a run folder.

A plain dict of tensors, strings and numbers, so `torch.load(path, weights_only=True)` reads it:

    format         FORMAT ("amgcn-model"); version: VERSION
    model          the state dict (CPU tensors); `--pretrained` accepts the file as it is
    config         dataclasses.asdict(ModelConfig): ModelConfig(**config) rebuilds the network
    classes        class names in logit order; aus: the graph's AU nodes in au_logits order
    adjacency      (K, K) float32 AU co-occurrence adjacency of the training samples
    motion_scale   (3M,) float32: each motion channel is divided by it before entering the model
                   (M = config's maps: the motion maps a sample brings, stacked)
    flip_signs     (3M,) sign of each motion channel when a map is mirrored (training augmentation)
    preprocessing  what made the inputs: img_size, motion, protocol, dataset ('release' or 'motion maps'),
                   center_maps; for a release layout and preprocess_version, for flow flow_method and
                   motion_version; for a motion-map folder export (its export.json's style, motion and size);
                   maps: how the training maps were read (data.map_reading: file kind, normalisation,
                   value range, where their medians sit, centring, maps per sample); map_columns: the
                   motion-map folder columns read, stacked in this order (1 = motion, 2 = motion_2, ...)
    training       subjects, samples, epochs, seed and args (the run's resolved arguments)

A fold checkpoint (utils.checkpoint) holds the same description with format FOLD_FORMAT, plus its
training state; predict.py reads both alike.
"""
from __future__ import annotations

from dataclasses import asdict

import torch

from data.errors import MAX_MAP_SIZE, MIN_MAP_SIZE
from data.map_reading import record_problem as reading_problem
from data.motion import MOTIONS
from data.protocols import PROTOCOLS
from models import ModelConfig

MODEL_FILE = "model.pt"
FORMAT = "amgcn-model"
FOLD_FORMAT = "amgcn-fold-checkpoint"
VERSION = 1
KEYS = ("format", "version", "model", "config", "classes", "aus", "adjacency", "motion_scale", "flip_signs",
        "preprocessing", "training")


def model_record(weights: dict[str, torch.Tensor], cfg: ModelConfig, classes: list[str], adjacency: torch.Tensor,
                 motion_scale: torch.Tensor, flip_signs: tuple[float, ...], preprocessing: dict,
                 training: dict) -> dict:
    """The dict saved as model.pt (see the module docstring); `weights` is the model's state dict."""
    return {
        "format": FORMAT, "version": VERSION,
        "model": {k: v.detach().cpu().contiguous() for k, v in weights.items()},
        "config": asdict(cfg), "classes": list(classes), "aus": [int(a) for a in cfg.aus],
        "adjacency": adjacency.detach().float().cpu(),                      # (K, K)
        "motion_scale": motion_scale.detach().float().cpu().flatten(),      # (3M,)
        "flip_signs": [float(s) for s in flip_signs], "preprocessing": dict(preprocessing),
        "training": dict(training),
    }


def record_problem(record: object) -> str | None:
    """What keeps a loaded dict from being a model file (or a fold checkpoint) of this format, or None."""
    if not isinstance(record, dict):
        return f"holds a {type(record).__name__}, not a mapping"
    missing = [k for k in KEYS if k not in record]
    if missing:
        return f"missing key(s) {', '.join(missing)}"
    if record["format"] not in (FORMAT, FOLD_FORMAT) or record["version"] != VERSION:
        return f"format {record['format']!r} version {record['version']!r}; this code reads {FORMAT!r} {VERSION}"
    if not isinstance(record["config"], dict) or not isinstance(record["preprocessing"], dict):
        return "'config' or 'preprocessing' is not a mapping"
    maps = record["config"].get("maps", 1)
    channels = 3 * maps if isinstance(maps, int) and maps >= 1 else 3
    scale = record["motion_scale"]
    if not (isinstance(scale, torch.Tensor) and scale.shape == (channels,) and torch.isfinite(scale).all()
            and (scale > 0).all()):
        return f"'motion_scale' is not {channels} positive finite numbers (3 per map)"
    return None


def preprocessing_problem(preprocessing: dict) -> str | None:
    """What keeps a model's preprocessing mapping from saying how to prepare inputs, or None."""
    size = preprocessing.get("img_size")
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_MAP_SIZE <= size <= MAX_MAP_SIZE:
        return f"preprocessing: img_size {size!r} is not an image side from {MIN_MAP_SIZE} to {MAX_MAP_SIZE}"
    for key, known in (("motion", MOTIONS), ("protocol", PROTOCOLS)):
        if preprocessing.get(key) not in known:
            return f"preprocessing: {key} {preprocessing.get(key)!r} is not one of {', '.join(sorted(known))}"
    for key in ("center_maps", "tta_flip"):
        if not isinstance(preprocessing.get(key, False), bool):
            return f"preprocessing: {key} {preprocessing.get(key)!r} is not true or false"
    if not isinstance(preprocessing.get("export") or {}, dict):
        return "preprocessing: export is not a mapping"
    maps = preprocessing.get("maps")
    problem = reading_problem(maps) if maps is not None else None
    return f"preprocessing: maps: {problem}" if problem else None
