"""The two attention modules of AM-GCN: AU attention (AA) and stacked attention (SA).

AA -- AU attention. The graph's node states say which AUs look active; AA turns that
into a spatial map over the fused feature map and re-weights it:

    s = per-node linear(h)                                         (B, K)  relevance per AU
    a(p) = sum_k sigmoid(s_k) m_k(p) / max(1, sum_k m_k(p))         (B, 1, h, w), in [0, 1]
    out = x * (1 + a)

m_k are the same soft AU region masks the graph pools with. Dividing by the mask
coverage (clamped at 1) keeps a(p) in [0, 1] where regions overlap. `1 + a` starts
close to (but not exactly) the identity, so the module cannot hurt at initialisation
and still receives gradients from the first step.

SA -- stacked attention. `depth` CBAM-style stages, each channel attention
(shared MLP over global average- and max-pooled descriptors, reduction 8) followed by
spatial attention (7x7 conv over channel mean/max), used residually:
out = x + SA(CA(x) * x). We chose this over multi-head self-attention over the tokens
because MHSA on a 512x14x14 map costs about 1.3 GFLOPs per layer (as much as a ViT
block), which would break the 1.5x FLOPs budget relative to MMNet with two stages,
whereas a CBAM stage costs well under 1 MFLOP and a few tens of thousands of
parameters; the position branch already provides global token mixing.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .graph import region_masks
from .motion import SpatialAttention


class AUAttention(nn.Module):
    def __init__(self, aus: Sequence[int], grid: int, node_dim: int) -> None:
        super().__init__()
        self.aus = tuple(aus)
        k = len(self.aus)
        self.score_weight = nn.Parameter(torch.empty(k, node_dim))
        self.score_bias = nn.Parameter(torch.zeros(k))
        nn.init.normal_(self.score_weight, std=node_dim ** -0.5)
        self.register_buffer("masks", region_masks(self.aus, grid, grid))  # (K, h*w)

    def attention_map(self, nodes: Tensor, h: int, w: int) -> Tensor:
        """(B, K, D) node states -> (B, 1, h, w) attention in [0, 1]."""
        masks = self.masks if self.masks.shape[1] == h * w else region_masks(self.aus, h, w).to(nodes.device)
        scores = torch.einsum("bkd,kd->bk", nodes, self.score_weight) + self.score_bias  # (B, K)
        cover = masks.sum(0).clamp(min=1.0)                                              # (h*w,)
        attn = torch.sigmoid(scores) @ masks / cover                                     # (B, h*w)
        return attn.view(-1, 1, h, w)

    def forward(self, x: Tensor, nodes: Tensor) -> Tensor:
        return x * (1.0 + self.attention_map(nodes, x.shape[2], x.shape[3]))  # (B, C, h, w)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        mid = max(channels // reduction, 8)
        self.mlp = nn.Sequential(nn.Linear(channels, mid), nn.ReLU(inplace=True), nn.Linear(mid, channels))

    def forward(self, x: Tensor) -> Tensor:
        desc = self.mlp(x.mean((2, 3))) + self.mlp(x.amax((2, 3)))  # (B, C)
        return x * torch.sigmoid(desc)[:, :, None, None]


class StackedAttention(nn.Module):
    def __init__(self, channels: int = 512, depth: int = 2) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(ChannelAttention(channels), SpatialAttention()) for _ in range(depth)
        )

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = x + stage(x)  # (B, C, h, w)
        return x
