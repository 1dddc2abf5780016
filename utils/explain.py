"""Pictures that explain one prediction: the inputs, Grad-CAM, AU attention and the AU graph.

`explain` runs the model once with hooks (models/ stays free of any of this):
- Grad-CAM (Selvaraju et al.) of the predicted class over the fused feature map F, the map the
  stacked attention (SA) reads, or the head when SA is off: channel weights are the spatially
  averaged gradients of the class logit, cam = ReLU(sum_c w_c F_c), scaled to a peak of 1;
- AA's spatial weighting a(p) (models.attention.AUAttention.attention_map) from the node states
  the graph handed to AA;
- the AU probabilities sigmoid(au_logits).
`render` draws them into one PNG with matplotlib: the onset face, each motion map of the sample (flow
as direction in hue and size in brightness, a difference image as a signed map), Grad-CAM and
AA over the face, and the AU graph with each node at the centre of its face regions
(utils.face_regions), sized by its probability, and edges from the adjacency.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.face_regions import AU_REGIONS


@dataclass
class Explanation:
    probs: np.ndarray               # (C,) class probabilities
    pred: int                       # the explained class
    cam: np.ndarray                 # (h, w) Grad-CAM in [0, 1] on the fused map's grid
    attention: np.ndarray | None    # (h, w) AA weighting in [0, 1]; None without AA
    au_probs: np.ndarray | None     # (K,) AU probabilities; None without the AU head


def explainable(model: nn.Module) -> bool:
    """True when the model has a fused feature map to explain (not the linear floor)."""
    return isinstance(getattr(model, "head", None), nn.Module) and hasattr(model, "motion")


def explain(model: nn.Module, motion: Tensor, face: Tensor, target: int | None = None) -> Explanation:
    """Explain one sample: `motion` (1, 3M, S, S) already divided by the motion scale, `face` (1, 3, g, g).

    `target`: the class to explain (default: the predicted one).
    """
    model.eval()
    captured: dict[str, Tensor] = {}

    def keep_fused(module: nn.Module, inputs: tuple) -> None:
        inputs[0].retain_grad()                       # F (1, C, h, w), a non-leaf: keep its gradient
        captured["fused"] = inputs[0]

    def keep_nodes(module: nn.Module, inputs: tuple, output: Tensor) -> None:
        x, nodes = inputs                             # (1, C, h, w), (1, K, D)
        captured["attention"] = module.attention_map(nodes, x.shape[2], x.shape[3]).detach()  # (1, 1, h, w)

    reader = model.sa if getattr(model, "sa", None) is not None else model.head
    hooks = [reader.register_forward_pre_hook(keep_fused)]
    if getattr(model, "aa", None) is not None:
        hooks.append(model.aa.register_forward_hook(keep_nodes))
    try:
        with torch.enable_grad():
            out = model(motion, face)
            logits = out["logits"].float()            # (1, C)
            pred = int(logits.argmax(1)) if target is None else int(target)
            model.zero_grad(set_to_none=True)
            logits[0, pred].backward()
    finally:
        for hook in hooks:
            hook.remove()
    fused, grad = captured["fused"].detach().float(), captured["fused"].grad.float()   # (1, C, h, w) each
    weights = grad.mean((2, 3), keepdim=True)                                           # (1, C, 1, 1)
    cam = F.relu((weights * fused).sum(1))[0]                                           # (h, w)
    cam = cam / cam.max() if cam.max() > 0 else cam
    attention = captured.get("attention")
    au_logits = out["au_logits"]
    return Explanation(
        probs=torch.softmax(logits.detach(), 1)[0].cpu().numpy(), pred=pred, cam=cam.cpu().numpy(),
        attention=None if attention is None else attention[0, 0].float().cpu().numpy(),
        au_probs=None if au_logits is None else torch.sigmoid(au_logits.detach().float())[0].cpu().numpy())


# --------------------------------------------------------------------------- drawing

def region_centres(au: int) -> list[tuple[float, float]]:
    """(x, y) centre of each of the AU's boxes, fractions of the face (one per side for bilateral AUs)."""
    return [((x0 + x1) / 2, (y0 + y1) / 2) for x0, y0, x1, y1 in AU_REGIONS[au]]


def flow_colours(motion: np.ndarray) -> np.ndarray:
    """(3, S, S) flow maps (u, v, strain) -> (S, S, 3) RGB: hue = direction, brightness = size."""
    from matplotlib.colors import hsv_to_rgb

    u, v = motion[0], motion[1]
    size = np.hypot(u, v)
    top = np.percentile(size, 99) or 1.0              # a few extreme pixels must not darken the rest
    hsv = np.stack([(np.arctan2(v, u) + np.pi) / (2 * np.pi), np.ones_like(u), np.clip(size / top, 0, 1)], -1)
    return hsv_to_rgb(hsv)


def _upsample(grid_map: np.ndarray, side: int) -> np.ndarray:
    """(h, w) -> (side, side), bilinear, as Grad-CAM maps are usually shown."""
    t = torch.from_numpy(np.ascontiguousarray(grid_map, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()


def render(path: Path, face: np.ndarray | None, motion: np.ndarray, motion_kind: str, explanation: Explanation,
           classes: Sequence[str], aus: Sequence[int], adjacency: np.ndarray, title: str,
           map_names: Sequence[str] = ("motion",)) -> None:
    """One PNG: face, each motion map, Grad-CAM, AA and the AU graph of one sample.

    face: (3, S, S) uint8 RGB onset face or None; motion: (3M, S, S) the M maps as computed (before scaling),
    named by `map_names` (M names) in the panel titles when there are several.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    side = motion.shape[-1]
    if face is not None:
        grey = face.astype(np.float32).mean(0) / 255.0                       # (S, S)
    else:  # no face: the motion's size stands in as the background
        size = np.abs(motion).sum(0)
        grey = 1.0 - size / (size.max() or 1.0)
    plt.rcParams.update({"axes.titlesize": 9})
    panels = 4 + len(map_names)
    fig, axes = plt.subplots(1, panels, figsize=(2.6 * panels, 3.2), dpi=90)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])

    axes[0].imshow(face.transpose(1, 2, 0) if face is not None else grey, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title("onset face" if face is not None else "no face (motion size)")

    for m, name in enumerate(map_names):
        _draw_map(axes[1 + m], motion[3 * m:3 * m + 3], motion_kind, f"{name}: " if len(map_names) > 1 else "")
    cam_ax, attention_ax, graph_ax = axes[-3:]

    pred = explanation.pred
    cam_ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
    cam_ax.imshow(_upsample(explanation.cam, side), cmap="jet", alpha=0.5, vmin=0, vmax=1)
    cam_ax.set_title(f"Grad-CAM: {classes[pred]}")

    attention_ax.imshow(grey, cmap="gray", vmin=0, vmax=1)
    if explanation.attention is not None:
        attention_ax.imshow(_upsample(explanation.attention, side), cmap="magma", alpha=0.6, vmin=0, vmax=1)
        attention_ax.set_title("AU attention (AA)")
    else:
        attention_ax.set_title("no AU attention in this model")

    _draw_graph(graph_ax, grey, side, explanation.au_probs, aus, adjacency)
    probs = ", ".join(f"{c} {p:.2f}" for c, p in zip(classes, explanation.probs))
    fig.suptitle(f"{title}\n{probs}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _draw_map(ax, motion: np.ndarray, motion_kind: str, prefix: str) -> None:
    """One motion map (3, S, S): flow in colour, a difference image as a signed map."""
    if motion_kind == "flow":
        ax.imshow(flow_colours(motion))
        ax.set_title(f"{prefix}flow: hue = direction, bright = size")
    else:
        signed = motion.mean(0)                                                # (S, S) apex - onset
        limit = float(np.abs(signed).max()) or 1.0
        ax.imshow(signed, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"{prefix}apex - onset (red +, blue -)")


def _draw_graph(ax, grey: np.ndarray, side: int, au_probs: np.ndarray | None, aus: Sequence[int],
                adjacency: np.ndarray) -> None:
    """AU nodes at their regions' centres, sized by probability; an edge for each non-zero A_ij, i != j."""
    ax.imshow(grey, cmap="gray", vmin=0, vmax=1, alpha=0.45)
    if au_probs is None:
        ax.set_title("no AU graph in this model")
        return
    centres = {au: [(x * side, y * side) for x, y in region_centres(au)] for au in aus}
    for i, a in enumerate(aus):
        for j, b in enumerate(aus):
            if j <= i or max(adjacency[i, j], adjacency[j, i]) <= 0:
                continue
            for xa, ya in centres[a]:  # join each region of one AU to the nearest region of the other
                xb, yb = min(centres[b], key=lambda c: (c[0] - xa) ** 2 + (c[1] - ya) ** 2)
                ax.plot([xa, xb], [ya, yb], color="tab:blue", alpha=0.6,
                        linewidth=0.5 + 4 * float(max(adjacency[i, j], adjacency[j, i])))
    for k, au in enumerate(aus):
        p = float(au_probs[k])
        for x, y in centres[au]:
            ax.scatter([x], [y], s=20 + 380 * p, color="tab:red", alpha=0.35 + 0.6 * p, edgecolors="white",
                       linewidths=0.5, zorder=3)
        x, y = centres[au][0]
        ax.annotate(f"{au}", (x, y), color="black", fontsize=7, ha="center", va="center", zorder=4)
    ax.set_xlim(0, side)
    ax.set_ylim(side, 0)
    ax.set_title("AU graph (size: probability)")
