"""Models for micro-expression recognition: AM-GCN and the MMNet-style baseline.

Knows nothing of files or annotation sheets: tensors in, logits out.
"""
from .amgcn import AMGCN, BRANCHES, build_model
from .config import ARCHS, MIN_IMG_SIZE, MOTION_ONLY, READOUTS, VARIANTS, ModelConfig
from .flops import count_flops, count_params
from .graph import cooccurrence_adjacency, region_masks
from .losses import ClassTerms, compute_loss

__all__ = [
    "AMGCN", "ARCHS", "BRANCHES", "ClassTerms", "MIN_IMG_SIZE", "MOTION_ONLY", "ModelConfig", "READOUTS", "build_model", "compute_loss", "cooccurrence_adjacency",
    "count_flops", "count_params", "region_masks", "VARIANTS",
]
