"""Position branch: where the face is, as a coarse token map (MMNet-style).

The onset face is average-pooled to the motion map's grid (14x14 at 224 px, 7x7 at 112
and 28 px; see models.motion.feature_size), each cell is embedded to `embed_dim`
channels by a 1x1 convolution (a 1-pixel "patch" embedding), a learned position
embedding is added and a few standard ViT blocks (timm's `Block`) mix the tokens. The
tokens are reshaped back into a map of the motion features' size and width, which the
model adds to them. Encoding the face on the grid the fused map actually has keeps the
branch's cost in step with the input size.

    face (B,3,*,*) -> avgpool g x g -> 1x1 conv -> + pos -> ViT blocks x depth -> LN
         -> (B, embed_dim, g, g) -> 1x1 conv to the motion width (when they differ)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import Tensor, nn


class PositionBranch(nn.Module):
    def __init__(self, grid: int, embed_dim: int = 512, depth: int = 2, heads: int = 4,
                 out_channels: int = 512) -> None:
        super().__init__()
        self.grid = grid
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=1)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[Block(embed_dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        # The map is added to the motion features, so it must have their width.
        self.proj = nn.Identity() if embed_dim == out_channels else nn.Conv2d(embed_dim, out_channels, 1)

    def forward(self, face: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(face, self.grid)            # (B, 3, g, g); a no-op for faces pooled already
        x = self.patch_embed(x)                               # (B, D, g, g)
        b, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2) + self.pos_embed  # (B, g*g, D)
        tokens = self.norm(self.blocks(tokens))               # (B, g*g, D)
        x = tokens.transpose(1, 2).reshape(b, d, h, w)        # (B, D, g, g)
        return self.proj(x)                                   # (B, C, g, g)
