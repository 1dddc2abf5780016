"""Print parameters and forward FLOPs per branch for AM-GCN, MMNet and the ablations.

    python -m models [--img-size 224] [--num-classes 5]
    python -m models --sizes 28,48,112,224      # AM-GCN's branches and their shares per input size
"""
from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from .amgcn import BRANCHES, build_model
from .config import VARIANTS, ModelConfig
from .flops import branch_share_table, count_flops, count_params, flops_by_size, input_sizes


def variant_configs(base: ModelConfig) -> dict[str, ModelConfig]:
    """The configurations compared in the table, derived from `base`."""
    return {name: replace(base, **kw) for name, kw in VARIANTS.items()}


def _table(title: str, rows: dict[str, dict[str, int]], scale: float, fmt: str, extra: dict[str, str] | None = None) -> str:
    cols = [*BRANCHES, "total"]
    name_width = max(8, *(len(name) + 1 for name in rows))
    head = f"{'model':<{name_width}}" + "".join(f"{c:>10}" for c in cols) + (f"{'vs mmnet':>10}" if extra else "")
    lines = [title, head, "-" * len(head)]
    for name, vals in rows.items():
        line = f"{name:<{name_width}}" + "".join(f"{format(vals[c] / scale, fmt):>10}" if vals[c] else f"{'-':>10}" for c in cols)
        lines.append(line + (f"{extra[name]:>10}" if extra else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models", description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=224)
    ap.add_argument("--num-classes", type=int, default=5)
    ap.add_argument("--sizes", type=input_sizes, help="comma-separated input sizes: print AM-GCN's forward "
                                                      "FLOPs per branch and each branch's share at every size instead")
    args = ap.parse_args(argv)
    if args.sizes:
        print(f"AM-GCN forward GFLOPs per branch (batch 1, {args.num_classes} classes, default widths)")
        print(branch_share_table(flops_by_size(args.sizes, num_classes=args.num_classes)))
        return 0
    torch.manual_seed(0)
    base = ModelConfig(num_classes=args.num_classes, img_size=args.img_size)
    params, flops = {}, {}
    for name, cfg in variant_configs(base).items():
        model = build_model(cfg)
        params[name] = count_params(model)
        flops[name] = count_flops(model, args.img_size)
    ratio = {n: f"{f['total'] / flops['mmnet']['total']:.3f}x" for n, f in flops.items()}
    print(f"input {args.img_size}x{args.img_size}, {args.num_classes} classes, batch 1, "
          f"AUs {','.join(map(str, base.aus))}")
    print(_table("parameters (M)", params, 1e6, ".3f"))
    print()
    print(_table("forward GFLOPs (multiply-add = 2 FLOPs)", flops, 1e9, ".4f", ratio))
    print(f"\nAM-GCN / MMNet FLOPs: {flops['amgcn']['total'] / flops['mmnet']['total']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
