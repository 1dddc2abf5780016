"""Compare two finished LOSO runs on the same data: per-seed differences and a subject bootstrap.

    python compare.py runs/linear runs/amgcn                 # B = runs/amgcn against A = runs/linear
    python compare.py runs/linear runs/amgcn --json cmp.json --plot cmp.png --rounds 2000

Each folder is a run folder (its predictions.csv) or a --seeds run (seed*/predictions.csv); both
must hold the same samples and seeds. utils/comparison.py says what the figures are. Bad input
ends with one `error:` line and exit status 2.
"""
from __future__ import annotations

import sys
from typing import Sequence

from cli import CommandLineParser, UsageError, path_value, print_error
from data.errors import DataError
from utils.comparison import compare_runs, format_comparison, read_run
from utils.io import write_json
from utils.paths import file_write_problem
from utils.plots import save_comparison

MAX_ROUNDS = 1_000_000
MAX_SEED = 2**32 - 1   # numpy's generators take any seed from 0; this keeps it a 32-bit number


def build_parser() -> CommandLineParser:
    parser = CommandLineParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", type=path_value, help="the first run folder (the reference, e.g. the linear floor)")
    parser.add_argument("b", type=path_value, help="the second run folder (the model compared with it)")
    parser.add_argument("--rounds", type=int, default=1000, help="bootstrap draws of subjects")
    parser.add_argument("--seed", type=int, default=0, help="of the bootstrap's random draws")
    parser.add_argument("--json", type=path_value, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--plot", type=path_value, default=None,
                        help="also draw them to this PNG file (B - A per part and metric, intervals, seeds)")
    return parser


def check_flags(args) -> None:
    """UsageError naming the flag whose number is out of range or whose file cannot be written."""
    for flag, value, low, high in (("--rounds", args.rounds, 1, MAX_ROUNDS), ("--seed", args.seed, 0, MAX_SEED)):
        if not low <= value <= high:
            raise UsageError(f"{flag} must be an integer from {low} to {high}, got {value}")
    for flag, path in (("--json", args.json), ("--plot", args.plot)):
        problem = file_write_problem(path) if path is not None else None
        if problem:
            raise UsageError(f"{flag} {path}: {problem}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        check_flags(args)
        result = compare_runs(read_run(args.a), read_run(args.b), args.rounds, args.seed)
        print(format_comparison(result))
        if args.json is not None:
            write_json(args.json, result)
        if args.plot is not None:
            save_comparison(result, args.plot)
    except (UsageError, DataError) as e:
        print_error(e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
