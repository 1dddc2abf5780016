"""AU graph branch: one node per action unit, features pooled from the motion map.

Node features. Each AU k has fixed facial boxes (utils.face_regions.AU_REGIONS). At
construction the boxes are rasterised onto the motion map's h x w grid as *soft*
masks: the value of a cell is the fraction of its area that the AU's boxes cover
(so a box that only grazes a cell counts a little). A node's feature is the
mask-weighted average of the motion features (masked average pooling):

    x_k = sum_p m_k(p) F(:, p) / sum_p m_k(p)          F: (B, 512, h, w) -> X: (B, K, 512)

Adjacency (`cooccurrence_adjacency`, ML-GCN style, computed per fold from the training
subjects' AU labels only). With Y the (N, K) 0/1 AU table:
    C = Y^T Y;  n_i = C_ii                        co-occurrence counts, AU counts
    P_ij = C_ij / n_i  (0 when n_i = 0)           = P(AU j present | AU i present)
    B_ij = [P_ij >= threshold] for i != j, B_ii = 0
    s_i  = sum_j B_ij
    A_ij = reweight * B_ij / s_i  (i != j),  A_ii = 1 - reweight   when s_i > 0
    A_ii = 1, rest of row 0                                       when s_i = 0
Every row of A sums to 1, so A is used as the propagation matrix as is (no further
normalisation): a node keeps 1 - reweight of itself and spreads `reweight` evenly over
the AUs that co-occur with it often. Re-weighting (rather than raw binary edges)
prevents the over-smoothing that binary adjacencies cause in ML-GCN.

GCN. Two layers, H1 = ReLU(A' X W1), H2 = ReLU(A' H1 W2), with A' = A + Delta where
Delta is a zero-initialised learnable (K, K) correction (`learn_adj`), so training
starts from the data-driven graph and may adjust it. A is a buffer, identity until
`set_adjacency` is called. Read-out: the mean of the node states, or (`readout='nodes'`)
the K node states concatenated in AU order, (B, K * hidden). The auxiliary AU head is
a separate linear scorer per node: au_logit_k = <h_k, w_k> + b_k.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from utils.face_regions import AU_REGIONS


def region_masks(aus: Sequence[int], h: int, w: int) -> Tensor:
    """Soft AU masks on an h x w grid: (K, h*w), value = covered fraction of each cell."""
    ys = torch.arange(h + 1, dtype=torch.float64) / h  # cell edges
    xs = torch.arange(w + 1, dtype=torch.float64) / w
    masks = torch.zeros(len(aus), h, w, dtype=torch.float64)
    for k, au in enumerate(aus):
        if au not in AU_REGIONS:
            raise ValueError(f"AU {au} has no facial region in utils.face_regions.AU_REGIONS")
        for x0, y0, x1, y1 in AU_REGIONS[au]:
            oy = (torch.minimum(ys[1:], torch.tensor(y1)) - torch.maximum(ys[:-1], torch.tensor(y0))).clamp(min=0) * h
            ox = (torch.minimum(xs[1:], torch.tensor(x1)) - torch.maximum(xs[:-1], torch.tensor(x0))).clamp(min=0) * w
            masks[k] += oy[:, None] * ox[None, :]
    return masks.clamp(max=1.0).flatten(1).float()


def cooccurrence_adjacency(au_targets: np.ndarray | Tensor, threshold: float, reweight: float) -> Tensor:
    """Re-weighted AU co-occurrence adjacency (K, K) from an (N, K) AU table (see module doc).

    Only the rows passed in are used: call it with the training subjects' rows of a fold.
    """
    y = torch.as_tensor(np.asarray(au_targets), dtype=torch.float64)
    if y.ndim != 2:
        raise ValueError(f"au_targets must be (N, K), got shape {tuple(y.shape)}")
    if not 0.0 <= reweight <= 1.0:
        raise ValueError(f"reweight must be in [0, 1], got {reweight}")
    y = (y > 0.5).to(torch.float64)
    k = y.shape[1]
    counts = y.T @ y                                   # (K, K) co-occurrence counts
    n = counts.diagonal().clone()                      # (K,) how often each AU occurs
    cond = torch.where(n[:, None] > 0, counts / n.clamp(min=1)[:, None], torch.zeros_like(counts))
    edges = (cond >= threshold).to(torch.float64)
    edges.fill_diagonal_(0.0)
    deg = edges.sum(1, keepdim=True)                   # (K, 1)
    adj = torch.where(deg > 0, reweight * edges / deg.clamp(min=1), torch.zeros_like(edges))
    self_w = torch.where(deg.squeeze(1) > 0, torch.full((k,), 1.0 - reweight, dtype=torch.float64),
                         torch.ones(k, dtype=torch.float64))
    return (adj + torch.diag(self_w)).float()


class AUGraph(nn.Module):
    """Region pooling -> 2-layer GCN -> node states, read-out and per-AU logits."""

    def __init__(self, aus: Sequence[int], grid: int, in_channels: int = 512, hidden: int = 256,
                 learn_adj: bool = True, dropout: float = 0.0, readout: str = "mean") -> None:
        super().__init__()
        self.aus = tuple(aus)
        k = len(self.aus)
        self.register_buffer("masks", region_masks(self.aus, grid, grid))  # (K, h*w)
        self.register_buffer("adjacency", torch.eye(k))                     # (K, K)
        self.adj_delta = nn.Parameter(torch.zeros(k, k)) if learn_adj else None
        self.gc1 = nn.Linear(in_channels, hidden)
        self.gc2 = nn.Linear(hidden, hidden)
        self.drop = nn.Dropout(dropout)
        self.au_weight = nn.Parameter(torch.empty(k, hidden))
        self.au_bias = nn.Parameter(torch.zeros(k))
        nn.init.normal_(self.au_weight, std=hidden ** -0.5)
        self.readout = readout
        self.out_dim = hidden * (k if readout == "nodes" else 1)

    def set_adjacency(self, adj: Tensor) -> None:
        k = len(self.aus)
        adj = torch.as_tensor(adj, dtype=self.adjacency.dtype, device=self.adjacency.device)
        if adj.shape != (k, k):
            raise ValueError(f"adjacency must be ({k}, {k}), got {tuple(adj.shape)}")
        self.adjacency.copy_(adj)

    def effective_adjacency(self) -> Tensor:
        return self.adjacency if self.adj_delta is None else self.adjacency + self.adj_delta

    def pool(self, feat: Tensor) -> Tensor:
        """Masked average pooling of (B, C, h, w) features into (B, K, C) node features."""
        b, c, h, w = feat.shape
        masks = self.masks
        if masks.shape[1] != h * w:  # input size other than the configured one
            masks = region_masks(self.aus, h, w).to(feat.device)
        weights = masks / masks.sum(1, keepdim=True).clamp(min=1e-6)  # (K, h*w)
        return torch.einsum("kp,bcp->bkc", weights, feat.flatten(2))

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        nodes = self.pool(feat)                                        # (B, K, 512)
        adj = self.effective_adjacency()                               # (K, K)
        h = torch.relu(torch.einsum("ij,bjd->bid", adj, self.gc1(self.drop(nodes))))  # (B, K, hidden)
        h = torch.relu(torch.einsum("ij,bjd->bid", adj, self.gc2(self.drop(h))))      # (B, K, hidden)
        au_logits = torch.einsum("bkd,kd->bk", h, self.au_weight) + self.au_bias      # (B, K)
        readout = h.flatten(1) if self.readout == "nodes" else h.mean(1)          # (B, K * hidden) or (B, hidden)
        return h, readout, au_logits
