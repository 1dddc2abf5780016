"""Model configuration shared by every architecture in `models/`."""
from __future__ import annotations

from dataclasses import dataclass

from utils.face_regions import DEFAULT_AUS

from .motion import STAGE_CHANNELS, feature_size, scaled

ARCHS: tuple[str, ...] = ("amgcn", "mmnet", "linear", "ststnet")
MOTION_ONLY: tuple[str, ...] = ("linear", "ststnet")   # archs that read the motion maps and nothing else
# the ablation table (python -m models): each variant's ModelConfig fields over the base configuration
VARIANTS: dict[str, dict] = {
    "amgcn": {},
    "mmnet": {"arch": "mmnet"},
    "no-pos": {"use_pos": False},
    "no-gcn": {"use_gcn": False},
    "no-aa": {"use_aa": False},
    "no-sa": {"use_sa": False},
    "node-readout": {"readout": "nodes"},
    "linear-path": {"linear_path": True},
}
READOUTS: tuple[str, ...] = ("mean", "nodes")
MIN_IMG_SIZE = 16   # the smallest input any architecture accepts (the command line may ask more)


@dataclass
class ModelConfig:
    """Hyper-parameters of AM-GCN, of the MMNet-style baseline and of the linear floor.

    `arch='mmnet'` is the two-branch baseline (position + motion + linear head); the
    graph, AA and SA switches are ignored for it. `arch='linear'` is one linear layer on
    the flattened motion map (the floor every table should show); `arch='ststnet'` is the field's
    reference shallow flow CNN (models.ststnet). The `use_*` switches
    are the ablations of AM-GCN (`--no-pos`, `--no-gcn`, `--no-aa`, `--no-sa`);
    `use_gcn=False` also drops the AA module and the auxiliary AU head, since both read
    the graph's node states.

    Sizes that follow the input: the motion map's grid (`grid`, see models.motion), the
    position branch's token grid (the same), and, when left at None, the ViT width
    (`embed_dim`: the motion width at 224 px and above, a quarter of it below, which keeps the
    position branch a small share of the cost) and the graph width (`gcn_hidden`: half
    the motion width). `width` scales the motion branch's channels.

    `readout` is what the graph hands the classifier: the mean of its node states, or every
    node's state side by side (`nodes`), so the classifier knows which AU region moved.
    `linear_path` adds a linear read-out of the flattened motion map to the logits of AM-GCN or
    MMNet (the floor's whole input as a path beside the pooled features).

    `maps` is how many 3-channel motion maps a sample brings (onset to apex, apex to offset, a
    second flow computation, ...): every architecture reads them stacked as 3 * maps channels.
    """

    num_classes: int = 5
    img_size: int = 224
    arch: str = "amgcn"
    use_pos: bool = True
    use_gcn: bool = True
    use_aa: bool = True
    use_sa: bool = True
    aus: tuple[int, ...] = DEFAULT_AUS
    width: float = 1.0
    vit_depth: int = 2
    vit_heads: int = 4
    embed_dim: int | None = None
    sa_depth: int = 2
    gcn_hidden: int | None = None
    adj_threshold: float = 0.4
    adj_reweight: float = 0.2
    learn_adj: bool = True
    au_loss_weight: float = 0.5
    label_smoothing: float = 0.0  # of the emotion cross-entropy's targets
    dropout: float = 0.0
    readout: str = "mean"
    linear_path: bool = False
    maps: int = 1

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; choose one of {', '.join(READOUTS)}")
        if self.img_size < MIN_IMG_SIZE:
            raise ValueError(f"img_size must be at least {MIN_IMG_SIZE}, got {self.img_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.maps < 1:
            raise ValueError(f"maps must be >= 1, got {self.maps}")
        if not 0 < self.width <= 4:
            raise ValueError(f"width must be in (0, 4], got {self.width}")
        if self.embed_dim is None:
            auto = self.motion_channels if self.img_size >= 224 else self.motion_channels // 4
            self.embed_dim = max(self.vit_heads, auto // self.vit_heads * self.vit_heads)
        if self.gcn_hidden is None:
            self.gcn_hidden = self.motion_channels // 2
        if self.embed_dim % self.vit_heads != 0:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by vit_heads {self.vit_heads}")
        self.aus = tuple(int(a) for a in self.aus)

    @property
    def motion_channels(self) -> int:
        """Width of the motion branch's last map (512 at width 1)."""
        return scaled(STAGE_CHANNELS[-1], self.width)

    @property
    def motion_inputs(self) -> int:
        """Channels of the stacked motion maps (3 per map)."""
        return 3 * self.maps

    @property
    def motion_features(self) -> int:
        """Size of the flattened motion maps (3 * maps * S * S), the linear floor's input."""
        return self.motion_inputs * self.img_size * self.img_size

    @property
    def grid(self) -> int:
        """Side of the fused feature map and of the position branch's token grid."""
        return feature_size(self.img_size)

    @property
    def graph_on(self) -> bool:
        """True when the AU graph (and so the AU head) is part of the model."""
        return self.arch == "amgcn" and self.use_gcn

    @property
    def aa_on(self) -> bool:
        return self.graph_on and self.use_aa

    @property
    def sa_on(self) -> bool:
        return self.arch == "amgcn" and self.use_sa and self.sa_depth > 0

    @property
    def pos_on(self) -> bool:
        return self.arch not in MOTION_ONLY and self.use_pos
