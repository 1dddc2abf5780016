"""Position branch: where the face is, as a coarse token map (MMNet-style).

The onset face is average-pooled to a 14x14 grid, each cell is embedded to
`embed_dim` channels by a 1x1 convolution (a 1-pixel "patch" embedding), a learned
position embedding is added and a few standard ViT blocks (timm's `Block`) mix the
196 tokens. The tokens are reshaped back into a (B, embed_dim, 14, 14) map that the
model adds to the motion branch's last feature map.

    face (B,3,S,S) -> avgpool 14x14 -> 1x1 conv -> + pos -> ViT blocks x depth -> LN
         -> (B, embed_dim, 14, 14)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn

GRID = 14  # token grid side, independent of the input size


class PositionBranch(nn.Module):
    def __init__(self, embed_dim: int = 512, depth: int = 2, heads: int = 4, out_channels: int = 512) -> None:
        super().__init__()
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, GRID * GRID, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        # The map is added to the motion features, so it must have their width.
        self.proj = nn.Identity() if embed_dim == out_channels else nn.Conv2d(embed_dim, out_channels, 1)

    def forward(self, face: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(face, GRID)                 # (B, 3, 14, 14)
        x = self.patch_embed(x)                               # (B, D, 14, 14)
        b, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2) + self.pos_embed  # (B, 196, D)
        tokens = self.norm(self.blocks(tokens))               # (B, 196, D)
        x = tokens.transpose(1, 2).reshape(b, d, h, w)        # (B, D, 14, 14)
        return self.proj(x)                                   # (B, 512, 14, 14)
