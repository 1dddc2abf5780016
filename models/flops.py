"""Parameter and FLOP accounting per branch.

FLOPs come from torch.utils.flop_counter.FlopCounterMode, which counts matrix
products and convolutions (a multiply-add = 2 FLOPs) and ignores element-wise ops,
pooling and normalisation. Every such product in the model runs inside one of the
named child modules (position, motion, graph, aa, sa, head), so the branches add up to
the total. On CPU, attention runs as `_scaled_dot_product_flash_attention_for_cpu`,
which FlopCounterMode does not know; it is mapped to the standard SDPA formula here so
the ViT blocks' attention products are counted on every device.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .amgcn import BRANCHES


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _EXTRA_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_sdpa_flops


def _branch(model: nn.Module, name: str) -> nn.Module | None:
    return getattr(model, name, None)


def count_params(model: nn.Module) -> dict[str, int]:
    """Trainable parameters per branch (0 for an absent branch) and 'total'."""
    out = {}
    for name in BRANCHES:
        mod = _branch(model, name)
        out[name] = sum(p.numel() for p in mod.parameters() if p.requires_grad) if mod is not None else 0
    out["total"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return out


@torch.no_grad()
def count_flops(model: nn.Module, img_size: int) -> dict[str, int]:
    """Forward FLOPs at batch 1 per branch (0 for an absent branch) and 'total'."""
    device = next(model.parameters()).device
    motion = torch.zeros(1, 3, img_size, img_size, device=device)
    face = torch.zeros(1, 3, img_size, img_size, device=device)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
        with counter:
            model(motion, face)
    finally:
        model.train(was_training)
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    out = {}
    for name in BRANCHES:
        counts = per_module.get(f"{root}.{name}", {})
        out[name] = int(sum(counts.values()))
    out["total"] = int(counter.get_total_flops())
    return out
