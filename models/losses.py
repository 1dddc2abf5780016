"""Training loss: cross-entropy on the emotion class plus the auxiliary AU term.

    total = CE(logits, labels; class weights) + au_loss_weight * BCEWithLogits(au_logits, au_targets)

`class_weights` (C,), when given, weights each sample's cross-entropy by its class (the
mean is then the weighted mean), so that a rare class counts as much as a frequent one.
`au_known` (B,) marks the samples whose AUs were coded: the AU term averages over those
rows only, so a sample from a dataset without AU coding does not teach the AU head that
no AU is active. The AU term is added only when the model has an AU head (au_logits not
None) and AU targets are given; the returned dict always holds 'ce', 'au' (0.0 when
absent) and 'total' as Python floats for logging.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import ModelConfig


def compute_loss(outputs: dict, labels: Tensor, au_targets: Tensor | None, cfg: ModelConfig,
                 class_weights: Tensor | None = None,
                 au_known: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    ce = F.cross_entropy(outputs["logits"], labels, weight=class_weights)
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
