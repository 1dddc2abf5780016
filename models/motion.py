"""Motion branch: a small residual CNN over the apex-onset difference image.

    motion (B,3,S,S) -> 3x3/2 conv 128, BN, ReLU        (B,128,S/2,S/2)
      -> stage1 128 /2                                  (B,128,S/4,S/4)
      -> stage2 128 /2                                  (B,128,S/8,S/8)
      -> stage3 256 /2                                  (B,256,S/16,S/16)
      -> stage4 512 /1                                  (B,512,S/16,S/16)   14x14 at 224, 7x7 at 112

Each stage is one basic residual block whose residual path is re-weighted by a
spatial attention map (mean and max over channels -> 7x7 conv -> sigmoid), which lets
the network favour the few pixels that actually move in a micro-expression. The first
stage already halves the resolution: a full 112x112 stage would cost several GFLOPs
for little gain and makes CPU training slow. All widths are multiples of 16.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

STEM_CHANNELS = 128
STAGES: tuple[tuple[int, int], ...] = ((128, 2), (128, 2), (256, 2), (512, 1))  # (channels, stride)
OUT_CHANNELS = STAGES[-1][0]
STRIDE = 2 * 2 * 2 * 2  # total down-sampling: stem x three strided stages


def feature_size(img_size: int) -> int:
    """Side of the last motion map for a square input (a 3x3/2 conv with padding 1 gives ceil(n/2))."""
    n = img_size
    for _ in range(4):
        n = (n + 1) // 2
    return n


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
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, STEM_CHANNELS, 3, 2, 1, bias=False), nn.BatchNorm2d(STEM_CHANNELS), nn.ReLU(inplace=True),
        )
        stages, cin = [], STEM_CHANNELS
        for cout, stride in STAGES:
            stages.append(AttnResBlock(cin, cout, stride))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.out_channels = OUT_CHANNELS

    def forward(self, motion: Tensor) -> Tensor:
        return self.stages(self.stem(motion))  # (B, 512, S/16, S/16)
