"""Training loss: cross-entropy on the emotion class plus the auxiliary AU term.

    total = CE(logits + class offsets, labels; class weights, label smoothing)
            + au_loss_weight * BCEWithLogits(au_logits, au_targets)

`ClassTerms` carries the per-class terms of a fold. Its `weights` (C,), when given, weight each
sample's cross-entropy by its class (the mean is then the weighted mean), so that a rare class
counts as much as a frequent one. Its `offsets` (C,), when given, are added to the logits inside
the loss only (logit adjustment, Menon et al. 2021: tau * log of the class prior): a rare class
must then win by a wider margin in training, so at test time, where the plain logits decide, it
is predicted more often. Unlike weights, whose effect fades once a network fits its training
samples (every sample's loss goes to zero whatever its weight), the margin stays.
`au_known` (B,) marks the samples whose AUs were coded: the AU term averages over those
rows only, so a sample from a dataset without AU coding does not teach the AU head that
no AU is active. The AU term is added only when the model has an AU head (au_logits not
None) and AU targets are given; the returned dict always holds 'ce', 'au' (0.0 when
absent) and 'total' as Python floats for logging.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import ModelConfig


@dataclass(frozen=True)
class ClassTerms:
    """Per-class terms of the cross-entropy, from a fold's training labels."""
    weights: Tensor | None = None  # (C,) --class-balance
    offsets: Tensor | None = None  # (C,) --logit-adjust; added to the logits in the loss only


def compute_loss(outputs: dict, labels: Tensor, au_targets: Tensor | None, cfg: ModelConfig,
                 classes: ClassTerms | None = None,
                 au_known: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    classes = classes or ClassTerms()
    logits = outputs["logits"] if classes.offsets is None else outputs["logits"] + classes.offsets  # (B, C)
    ce = F.cross_entropy(logits, labels, weight=classes.weights, label_smoothing=cfg.label_smoothing)
    total = ce
    au = torch.zeros((), device=ce.device)
    au_logits = outputs.get("au_logits")
    if au_logits is not None and au_targets is not None and cfg.au_loss_weight > 0:
        per_sample = F.binary_cross_entropy_with_logits(au_logits, au_targets.to(au_logits.dtype),
                                                        reduction="none").mean(1)       # (B,)
        known = torch.ones_like(per_sample) if au_known is None else au_known.to(per_sample.dtype)
        au = (per_sample * known).sum() / known.sum().clamp(min=1.0)
        total = ce + cfg.au_loss_weight * au
    return total, {"ce": float(ce.detach()), "au": float(au.detach()), "total": float(total.detach())}
