"""`python -m data.synthetic`: write a synthetic release from the command line."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from data.errors import DataError
from data.layout import LAYOUTS
from data.synthetic.write import NOISE_SIGMA, generate_release


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m data.synthetic",
                                description="Write a synthetic CASME II-format release.")
    p.add_argument("out", type=Path, help="folder to write the release into")
    p.add_argument("--layout", choices=LAYOUTS, default="cropped")
    p.add_argument("--subjects", type=int, default=6)
    p.add_argument("--per-subject", type=int, default=10)
    p.add_argument("--sheet", type=Path, default=None,
                   help="write frames for every row of this existing annotation sheet")
    p.add_argument("--sheet-version", choices=("2014", "2019"), default="2019")
    p.add_argument("--size", type=int, nargs=2, metavar=("W", "H"), default=(96, 112))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", choices=("all", "key"), default=None,
                   help="all frames onset..offset, or only key frames (default: key with --sheet)")
    p.add_argument("--noise", type=float, default=NOISE_SIGMA, help="sensor noise sigma, grey levels")
    p.add_argument("--drift", type=float, default=0.0,
                   help="head drift over each clip, px: the whole face moves smoothly from the onset to the offset")
    args = p.parse_args(argv)
    try:
        root = generate_release(args.out, layout=args.layout, subjects=args.subjects,
                                per_subject=args.per_subject, sheet=args.sheet,
                                sheet_version=args.sheet_version, size=tuple(args.size),
                                seed=args.seed, frames=args.frames,
                                noise=args.noise, drift=args.drift)
    except (DataError, ValueError) as exc:  # bad --sheet contents, bad argument values
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(root)
    return 0

