"""Model configuration shared by every architecture in `models/`."""
from __future__ import annotations

from dataclasses import dataclass

from utils.face_regions import DEFAULT_AUS

ARCHS: tuple[str, ...] = ("amgcn", "mmnet")


@dataclass
class ModelConfig:
    """Hyper-parameters of AM-GCN and of the MMNet-style baseline.

    `arch='mmnet'` is the two-branch baseline (position + motion + linear head); the
    graph, AA and SA switches are ignored for it. The `use_*` switches are the ablations
    of AM-GCN (`--no-pos`, `--no-gcn`, `--no-aa`, `--no-sa`); `use_gcn=False` also drops
    the AA module and the auxiliary AU head, since both read the graph's node states.
    """

    num_classes: int = 5
    img_size: int = 224
    arch: str = "amgcn"
    use_pos: bool = True
    use_gcn: bool = True
    use_aa: bool = True
    use_sa: bool = True
    aus: tuple[int, ...] = DEFAULT_AUS
    vit_depth: int = 2
    vit_heads: int = 4
    embed_dim: int = 512
    sa_depth: int = 2
    gcn_hidden: int = 256
    adj_threshold: float = 0.4
    adj_reweight: float = 0.2
    learn_adj: bool = True
    au_loss_weight: float = 0.5
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        if self.img_size < 16:
            raise ValueError(f"img_size must be at least 16, got {self.img_size}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.embed_dim % self.vit_heads != 0:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by vit_heads {self.vit_heads}")
        self.aus = tuple(int(a) for a in self.aus)

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
