"""Motion branch: a small residual CNN over the motion map (difference image or flow).

    motion (B,3M,S,S) -> 3x3 conv 128, BN, ReLU   (stem)
      -> stage1 128 -> stage2 128 -> stage3 256 -> stage4 512          (B,512,g,g)

The stem and the first three stages are the four places where the map can be halved.
How many of them stride 2 follows the input size: the largest total stride (16, 8, 4,
2 or 1) that still leaves a map of at least MIN_GRID x MIN_GRID cells, so that AU-region
pooling can separate the facial regions at any input size. The strides come first (the
cheapest place to shrink), so at 224 px this is the MMNet-style layout (stem and stages
1-3 stride 2, 14x14 map), at 112 px a 7x7 map, at 48 px 12x12 (stride 4) instead of 3x3,
at 28 px 7x7.

Each stage is one basic residual block whose residual path is re-weighted by a
spatial attention map (mean and max over channels -> 7x7 conv -> sigmoid), which lets
the network favour the few pixels that actually move in a micro-expression.
`width` scales every channel count (0.25 -> 32, 32, 64, 128), for small inputs and small
datasets.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

STEM_CHANNELS = 128
STAGE_CHANNELS: tuple[int, ...] = (128, 128, 256, 512)
MIN_GRID = 7      # smallest feature map side the stride rule allows (when the input permits)
MAX_STRIDE = 16   # total down-sampling at large inputs (224 px -> 14x14)


def scaled(channels: int, width: float) -> int:
    """`channels` x `width`, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(channels * width / 8)) * 8)


def halvings(img_size: int) -> int:
    """How many of the four down-sampling places stride 2 at this input size."""
    n = 0
    while n < 4 and -(-img_size // 2 ** (n + 1)) >= MIN_GRID:
        n += 1
    return n


def feature_size(img_size: int) -> int:
    """Side of the last motion map for a square input (a 3x3/2 conv with padding 1 gives ceil(n/2))."""
    side = img_size
    for _ in range(halvings(img_size)):
        side = (side + 1) // 2
    return side


class SpatialAttention(nn.Module):
    """x -> x * sigmoid(conv7x7([mean_c(x), max_c(x)])), one map shared by all channels."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (B, 2, H, W)
        return x * torch.sigmoid(self.conv(stats))


class AttnResBlock(nn.Module):
    """Basic residual block (two 3x3 convs) with spatial attention on the residual path."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
        )
        self.attn = SpatialAttention()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.attn(self.body(x)) + self.shortcut(x))


class MotionBranch(nn.Module):
    def __init__(self, img_size: int = 224, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        strides = [2 if i < halvings(img_size) else 1 for i in range(4)] + [1]  # stem, stage1..4
        stem = scaled(STEM_CHANNELS, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, strides[0], 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True),
        )
        stages, cin = [], stem
        for channels, stride in zip(STAGE_CHANNELS, strides[1:]):
            cout = scaled(channels, width)
            stages.append(AttnResBlock(cin, cout, stride))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_channels = cin

    def forward(self, motion: Tensor) -> Tensor:
        return self.stages(self.stem(motion))  # (B, 3M, S, S) -> (B, C, g, g), g = feature_size(S)
