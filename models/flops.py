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

import argparse

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .amgcn import BRANCHES, build_model
from .config import MIN_IMG_SIZE, ModelConfig


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
    maps = getattr(getattr(model, "cfg", None), "maps", 1)
    motion = torch.zeros(1, 3 * maps, img_size, img_size, device=device)
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


def input_sizes(text: str) -> list[int]:
    """Comma-separated input sizes (an argparse type): whole numbers of at least MIN_IMG_SIZE."""
    try:
        sizes = [int(t) for t in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < MIN_IMG_SIZE:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated sizes of at least {MIN_IMG_SIZE} px, "
                                         "e.g. 28,48,112,224")
    return sizes


def flops_by_size(sizes: list[int], **config: object) -> dict[int, dict[str, int]]:
    """Forward FLOPs per branch (count_flops) of ModelConfig(img_size=size, **config) at each size.

    A fresh config per size, so the sizes that follow the input (grid, ViT width) follow it here too.
    """
    out = {}
    for size in sizes:
        torch.manual_seed(0)
        out[size] = count_flops(build_model(ModelConfig(img_size=size, **config)), size)
    return out


def branch_share_table(rows: dict[int, dict[str, int]]) -> str:
    """Per input size: forward GFLOPs of each branch, the total, and each branch's share of it."""
    head = f"{'size':>5}" + "".join(f"{b:>10}" for b in BRANCHES) + f"{'total':>10}   share: " + " ".join(
        f"{b:>8}" for b in BRANCHES)
    lines = [head, "-" * len(head)]
    for size, flops in rows.items():
        gflops = "".join(f"{flops[b] / 1e9:>10.4f}" for b in BRANCHES)
        shares = " ".join(f"{100 * flops[b] / flops['total']:>7.1f}%" for b in BRANCHES)
        lines.append(f"{size:>5}{gflops}{flops['total'] / 1e9:>10.4f}          {shares}")
    return "\n".join(lines)
