"""Training loss: cross-entropy on the emotion class plus the auxiliary AU term.

    total = CE(logits, labels) + au_loss_weight * BCEWithLogits(au_logits, au_targets)

The AU term is added only when the model has an AU head (au_logits not None) and AU
targets are given; the returned dict always holds 'ce', 'au' (0.0 when absent) and
'total' as Python floats for logging.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import ModelConfig


def compute_loss(outputs: dict, labels: Tensor, au_targets: Tensor | None,
                 cfg: ModelConfig) -> tuple[Tensor, dict[str, float]]:
    ce = F.cross_entropy(outputs["logits"], labels)
    total = ce
    au = torch.zeros((), device=ce.device)
    au_logits = outputs.get("au_logits")
    if au_logits is not None and au_targets is not None and cfg.au_loss_weight > 0:
        au = F.binary_cross_entropy_with_logits(au_logits, au_targets.to(au_logits.dtype))
        total = ce + cfg.au_loss_weight * au
    return total, {"ce": float(ce.detach()), "au": float(au.detach()), "total": float(total.detach())}
