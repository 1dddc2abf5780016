"""STSTNet: the field's reference shallow CNN for 28x28 flow maps (Liong et al., 2019).

Written from the paper's description, not from its code:

    motion (B,3M,S,S) --+-- 3x3 conv,  3 kernels, ReLU, BN, 3x3 max pool /3 --+
                        +-- 3x3 conv,  5 kernels, ReLU, BN, 3x3 max pool /3 --+-- concat (B,16,10,10)
                        +-- 3x3 conv,  8 kernels, ReLU, BN, 3x3 max pool /3 --+        |
                                                                         2x2 average pool (B,16,5,5)
                                                                                       |
                                                                  flatten (B,400) -> linear -> logits (B,C)

Sizes are those of S = 28. Each of the three streams ("triple stream") convolves the whole
stack of flow channels (u, v, optical strain: the "three-dimensional" input), differing only in
how many kernels it has; the network is one convolution deep, about 1.7 k parameters for one
map and 3 classes. Several maps per sample (M > 1) enter as more input channels, as in every
model of the project. No face, no AUs.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import ModelConfig

STREAM_KERNELS: tuple[int, ...] = (3, 5, 8)
POOL = 3          # max pooling window and stride of every stream
AVG_POOL = 2      # average pooling of the concatenated streams


def pooled_side(img_size: int) -> int:
    """Side of the concatenated map after the max pool (padding 1) and the average pool."""
    after_max = (img_size + 2 - POOL) // POOL + 1     # 28 -> 10
    return after_max // AVG_POOL                      # 10 -> 5


class STSTNet(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.streams = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cfg.motion_inputs, k, 3, padding=1), nn.ReLU(inplace=True), nn.BatchNorm2d(k),
                          nn.MaxPool2d(POOL, POOL, padding=1))
            for k in STREAM_KERNELS)
        self.pool = nn.AvgPool2d(AVG_POOL)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(sum(STREAM_KERNELS) * pooled_side(cfg.img_size) ** 2, cfg.num_classes)

    def set_adjacency(self, adj: Tensor) -> None:
        """No graph: nothing to install."""

    def forward(self, motion: Tensor, face: Tensor) -> dict[str, Tensor | None]:
        x = torch.cat([stream(motion) for stream in self.streams], 1)   # (B, 16, 10, 10)
        x = self.pool(x).flatten(1)                                     # (B, 400)
        return {"logits": self.head(self.drop(x)), "au_logits": None}   # (B, num_classes)
