"""AM-GCN: MMNet-style two-branch network plus an AU graph and two attention modules.

    face   (B,3,h,h) --PositionBranch--> (B,512,h,w) -----------------------+
                                                                           |
    motion (B,3M,S,S) --MotionBranch-> M (B,512,h,w) -------------------(+)--> F (B,512,h,w)
                                        |                                      |
                                        | AU-region pooling (K nodes)          |
                                        v                                      v
                          AUGraph: 2-layer GCN over A  --node states-->  AA: F * (1 + a)
                              |                  |                             |
                              |                  v                       SA: CBAM x depth
                              |     au_logits (B,K) (aux. BCE)                 |
                              v                                           global avg pool
                 mean of nodes (B,256) or all nodes (B,K*256) -- concat -- (B,512)
                                                              |
                                                  linear -> logits (B,C)  (+ linear on motion: --linear-path)

h = w = the motion map's grid (14 at 224 px, 7 at 112 and 28 px, 12 at 48 px; see
models.motion); the position branch encodes the face on that same grid. The graph
pools from the motion map M (before the position map is added) so that node features describe motion inside each
AU's region; AA then re-weights the fused map F.

`arch='mmnet'` keeps only position + motion + linear head (the baseline). The
ablations switch off single parts: no position branch (`use_pos`), no graph (`use_gcn`,
which also removes AA and the AU head, so `au_logits` is None), no AA, no SA.
Each part is a named child module (position, motion, graph, aa, sa, head) so that
parameters and FLOPs can be reported per branch.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import AUAttention, StackedAttention
from .config import ModelConfig
from .graph import AUGraph
from .motion import MotionBranch
from .position import PositionBranch
from .ststnet import STSTNet

BRANCHES: tuple[str, ...] = ("position", "motion", "graph", "aa", "sa", "head")


class Head(nn.Module):
    """Global average pooling of the fused map, concatenated with the graph read-out; with
    `motion_features` > 0 a linear read-out of the whole motion map is added to the logits
    (the linear floor as a path inside the model: it keeps where on the face the motion is,
    which pooling discards)."""

    def __init__(self, in_features: int, num_classes: int, dropout: float, motion_features: int = 0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)
        self.linear_path = nn.Linear(motion_features, num_classes) if motion_features else None

    def forward(self, fmap: Tensor, readout: Tensor | None, motion: Tensor) -> Tensor:
        x = fmap.mean((2, 3))                             # (B, 512)
        if readout is not None:
            x = torch.cat([x, readout], 1)                # (B, 512 + graph read-out)
        logits = self.fc(self.drop(x))                    # (B, num_classes)
        if self.linear_path is not None:
            logits = logits + self.linear_path(motion.flatten(1))   # motion (B, 3M * S * S)
        return logits


class AMGCN(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        grid = cfg.grid  # 14 at 224 px, 7 at 112 px
        self.motion = MotionBranch(cfg.img_size, cfg.width, cfg.motion_inputs)
        ch = self.motion.out_channels
        self.position = (PositionBranch(grid, cfg.embed_dim, cfg.vit_depth, cfg.vit_heads, ch)
                         if cfg.pos_on else None)
        self.graph = (AUGraph(cfg.aus, grid, ch, cfg.gcn_hidden, cfg.learn_adj, cfg.dropout, cfg.readout)
                      if cfg.graph_on else None)
        self.aa = AUAttention(cfg.aus, grid, cfg.gcn_hidden) if cfg.aa_on else None
        self.sa = StackedAttention(ch, cfg.sa_depth) if cfg.sa_on else None
        self.head = Head(ch + (self.graph.out_dim if self.graph is not None else 0), cfg.num_classes, cfg.dropout,
                         cfg.motion_features if cfg.linear_path else 0)

    def set_adjacency(self, adj: Tensor) -> None:
        """Install the fold's AU adjacency (K, K); a no-op for models without the graph."""
        if self.graph is not None:
            self.graph.set_adjacency(adj)

    def forward(self, motion: Tensor, face: Tensor) -> dict[str, Tensor | None]:
        m = self.motion(motion)                               # (B, 512, h, w)
        fused = m
        if self.position is not None:
            fused = m + self.position(face)                   # (B, 512, h, w)
        readout = au_logits = None
        if self.graph is not None:
            nodes, readout, au_logits = self.graph(m)         # (B, K, D), (B, D), (B, K)
            if self.aa is not None:
                fused = self.aa(fused, nodes)                 # (B, 512, h, w)
        if self.sa is not None:
            fused = self.sa(fused)                            # (B, 512, h, w)
        return {"logits": self.head(fused, readout, motion), "au_logits": au_logits}


class LinearProbe(nn.Module):
    """The floor: one linear layer on the flattened (normalised) motion map; no face, no AUs."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.head = nn.Linear(cfg.motion_features, cfg.num_classes)

    def set_adjacency(self, adj: Tensor) -> None:
        """No graph: nothing to install."""

    def forward(self, motion: Tensor, face: Tensor) -> dict[str, Tensor | None]:
        return {"logits": self.head(motion.flatten(1)), "au_logits": None}   # (B, num_classes)


def build_model(cfg: ModelConfig) -> nn.Module:
    """AM-GCN, the MMNet baseline, STSTNet or the linear floor (cfg.arch), with cfg's ablation switches applied."""
    if cfg.arch == "linear":
        return LinearProbe(cfg)
    if cfg.arch == "ststnet":
        return STSTNet(cfg)
    return AMGCN(cfg)
