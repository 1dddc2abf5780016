"""Preparing inputs from a CASME II release.

    python prepare.py export --raf_path /data/CASME2 --out /data/casme2-maps [--style default|ststnet]
    python prepare.py spot --raf_path /data/CASME2 [--out apex_spotting.csv]
    python prepare.py combine --out /data/samm+smic samm=/data/samm smic=/data/smic

`export` writes a motion-map folder that `CASME2_5.py --raf_path FOLDER` reads (data.export);
`spot` measures the automatic apex spotting (data.apex) against the sheet's apexes; `combine` copies
motion-map folders into one composite folder with a dataset column (data.combine).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from cli import CommandLineParser, UsageError, phase_list, print_error
from data.apex import error_summary, errors_by_length
from data.combine import combine_folders
from data.errors import DataError, check_map_size
from data.export import APEX_MODES, STYLES, export_release
from data.phases import DEFAULT_PHASES, PHASES
from data.inputs import crop_method, default_cache_dir, spot_sample
from data.layout import LAYOUTS
from data.motion import MOTIONS
from data.protocols import PROTOCOLS, get_protocol
from data.release import Release, load_release
from utils.io import write_csv

SPOT_COLUMNS = ("subject", "sample", "onset", "offset", "annotated_apex", "spotted_apex", "error")
WORST_SHOWN = 10     # clips listed by `spot` under "largest errors"


def build_parser() -> argparse.ArgumentParser:
    p = CommandLineParser(prog="python prepare.py", description=__doc__.splitlines()[0],
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)

    def release_flags(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--raf_path", "--raf-path", type=Path, required=True, help="CASME II release folder")
        sub.add_argument("--sheet", type=Path, help="annotation sheet, when it is not inside --raf_path")
        sub.add_argument("--layout", choices=LAYOUTS, help="frame folder layout (detected when omitted)")
        sub.add_argument("--protocol", default="5class", choices=sorted(PROTOCOLS), help="class protocol")

    ex = commands.add_parser("export", help="write the release as a motion-map folder",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    release_flags(ex)
    ex.add_argument("--out", type=Path, required=True, help="motion-map folder to write (new, empty, or a "
                                                             "partial export with the same settings)")
    ex.add_argument("--style", choices=STYLES, default="default",
                    help="default: the project's float maps (.npy), exact; ststnet: 28x28 PNG of u, v, strain, "
                         "min-max per channel, plus the apex face")
    ex.add_argument("--motion", choices=MOTIONS, help="default style: diff or flow (default diff); "
                                                      "ststnet is always flow")
    ex.add_argument("--size", type=int, default=224, help="face size in px (the run's --img-size)")
    ex.add_argument("--apex", choices=APEX_MODES, default="annotated",
                    help="annotated: the sheet's apex, spotted where missing; auto: spot every apex")
    ex.add_argument("--phases", type=phase_list, default=DEFAULT_PHASES,
                    help="the clip's phases, one map each, written as motion, motion_2, ...: "
                         + ", ".join(PHASES) + " (as the entry scripts' --phases)")
    ex.add_argument("--workers", type=int, default=0, help="processes decoding frames")
    ex.add_argument("--cache-dir", type=Path, help=f"preprocessed-input cache (default {default_cache_dir()})")

    sp = commands.add_parser("spot", help="compare spotted apexes with the sheet's",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    release_flags(sp)
    sp.add_argument("--out", type=Path, default=Path("apex_spotting.csv"), help="per-sample CSV to write")
    co = commands.add_parser("combine", help="copy motion-map folders into one composite folder",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    co.add_argument("sources", nargs="+", type=named_folder, metavar="NAME=FOLDER",
                    help="a dataset name (lower case; it names the part and its sub-folder) and its folder")
    co.add_argument("--out", type=Path, required=True, help="composite folder to write (new or empty)")
    return p


def named_folder(text: str) -> tuple[str, Path]:
    """A `combine` source, 'samm=/data/samm'."""
    name, sep, folder = text.partition("=")
    if not sep or not folder.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=FOLDER")
    return name.strip(), Path(folder)


def combine(args: argparse.Namespace) -> int:
    rows = combine_folders(args.sources, args.out)
    print(f"combined {rows} rows of {', '.join(name for name, _ in args.sources)} into {args.out}")
    return 0


def warn(line: str) -> None:
    tqdm.write(f"warning: {line}", file=sys.stderr)


def open_release(args: argparse.Namespace, strict: bool) -> Release:
    release = load_release(args.raf_path, get_protocol(args.protocol), sheet=args.sheet, layout=args.layout,
                           strict=strict)
    for line in release.warnings:
        warn(line)
    return release


def export(args: argparse.Namespace) -> int:
    cpus = os.cpu_count() or 1
    if not 0 <= args.workers <= cpus:
        raise DataError(f"--workers must be an integer from 0 to {cpus} (this machine's cores), got {args.workers}")
    check_map_size("--size", args.size)   # before the release is read: a size past the bound is a typo
    motion = args.motion or ("flow" if args.style == "ststnet" else "diff")
    release = open_release(args, strict=True)   # an export is complete or fails
    report = export_release(release, args.out, style=args.style, motion=motion, size=args.size, apex=args.apex,
                            cache_dir=args.cache_dir, workers=args.workers, progress=sys.stderr.isatty(),
                            phases=tuple(args.phases))
    for line in report.notices:
        if line.startswith("motion:"):
            print(line, file=sys.stderr)
        elif args.apex == "annotated" or "no annotated apex" not in line:   # auto: one count, not a line each
            warn(line)
    total = report.written + report.kept
    print(f"exported {total} samples to {args.out} ({report.written} computed, {report.kept} already there); "
          f"apex: {total - report.spotted} annotated, {report.spotted} spotted")
    return 0


def spot(args: argparse.Namespace) -> int:
    release = open_release(args, strict=False)
    annotated = [s for s in release.samples if s.apex is not None]
    if not annotated:
        raise DataError(f"sheet {release.sheet_path}: no annotated apex to compare the spotted ones with")
    method = crop_method(release.layout)
    rows, errors = [], []
    for sample in tqdm(annotated, desc="spot", unit="sample", disable=not sys.stderr.isatty()):
        found = spot_sample(sample, method)
        for line in found.notes:
            warn(line)
        if found.frame is None:
            warn(f"{sample.subject} {sample.filename}: no readable frame to spot the apex in; left out")
            continue
        errors.append(found.frame - sample.apex)
        rows.append([sample.subject, sample.filename, sample.onset, sample.offset, sample.apex, found.frame,
                     errors[-1]])
    if not rows:
        raise DataError(f"--raf_path {args.raf_path}: no clip had readable frames to spot an apex in")
    write_csv(args.out, SPOT_COLUMNS, rows)
    summary = error_summary(errors)
    print(f"apex spotting on {summary['n']} samples: mean absolute error {summary['mean']:.2f} frames, "
          f"median {summary['median']:.1f}, within 5 frames {100 * summary['within5']:.1f}% "
          f"({len(release.samples) - len(annotated)} without an annotated apex not scored); "
          f"per sample: {args.out}")
    print_spot_details(rows)
    return 0


def print_spot_details(rows: list[list]) -> None:
    """The error per clip-length group and the WORST_SHOWN clips with the largest errors
    (rows: SPOT_COLUMNS)."""
    lengths = [offset - onset + 1 for _, _, onset, offset, *_ in rows]
    print("by clip length (frames):")
    for group, s in errors_by_length(lengths, [row[-1] for row in rows]).items():
        print(f"  {group:>7}: {s['n']} clips, mean absolute error {s['mean']:.2f}, median {s['median']:.1f}, "
              f"within 5 frames {100 * s['within5']:.1f}%")
    print(f"largest errors ({min(WORST_SHOWN, len(rows))} of {len(rows)} clips):")
    for subject, name, onset, offset, annotated, spotted, error in sorted(rows, key=lambda r: -abs(r[-1]))[:WORST_SHOWN]:
        print(f"  {subject} {name}: frames {onset}..{offset}, annotated apex {annotated}, "
              f"spotted {spotted} ({error:+d})")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return {"export": export, "spot": spot, "combine": combine}[args.command](args)
    except (UsageError, DataError) as exc:
        print_error(exc)
        return 2
    except OSError as exc:   # e.g. --out on a read-only disk
        print_error(f"cannot write: {exc}")
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
