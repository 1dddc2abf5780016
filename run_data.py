"""The data a run reads: the built-in demo release, the dataset a command line names (a release or a
motion-map folder), the model arrays built from it, and the dry run's description of it."""
from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from cli import UsageError
from data.apex import without_apexes
from data.arrays import ModelArrays, source_arrays
from data.inputs import default_cache_dir
from data.motion_maps import is_motion_map_folder, load_motion_maps
from data.protocols import Protocol
from data.release import aus_outside, load_release
from data.source import DatasetSource
from data.synthetic import generate_release
from utils.distributed import DistInfo, barrier
from utils.io import error_text

# --demo: a small synthetic release that trains in minutes on 2 CPU cores (options.DEMO_SETTINGS: its schedule).
DEMO_RELEASE = dict(subjects=8, per_subject=12, size=(72, 84), seed=0)


def demo_release() -> Path:
    """The built-in synthetic release, generated once into the cache folder."""
    root = default_cache_dir() / "demo-release-v1"
    if not (root / ".complete").exists():
        print(f"building the synthetic demo release in {root} ...")
        try:
            generate_release(root, layout="cropped", **DEMO_RELEASE)
            (root / ".complete").touch()
        except OSError as e:
            source = "AMGCN_CACHE" if os.environ.get("AMGCN_CACHE") else "cache folder"
            raise UsageError(f"{source} {default_cache_dir()}: cannot hold the demo release "
                             f"({error_text(e)})") from None
    return root


def open_dataset(args: argparse.Namespace, protocol: Protocol) -> DatasetSource:
    """A CASME II release, or a folder of precomputed motion maps (it holds index.csv)."""
    auto = getattr(args, "apex", "annotated") == "auto"   # model files older than --apex lack it
    if args.raf_path is not None and is_motion_map_folder(args.raf_path):
        if auto:
            raise UsageError(f"--apex auto: {args.raf_path} holds motion maps, made already "
                             f"(prepare.py export --apex auto spots the apexes of a release)")
        return load_motion_maps(args.raf_path, protocol, img_size=args.img_size, strict=args.strict, maps=args.maps)
    if args.maps is not None:
        raise UsageError("--maps picks the map columns of a motion-map folder (index.csv); "
                         f"{args.raf_path or 'the demo release'} is a release")
    release = load_release(args.raf_path, protocol, sheet=args.sheet, layout=args.layout, strict=args.strict)
    return without_apexes(release) if auto else release


def model_arrays(args: argparse.Namespace, dataset: DatasetSource, info: DistInfo) -> ModelArrays:
    """The arrays the flags ask of `dataset`, built or read from the cache."""

    def build(workers: int, progress: bool) -> ModelArrays:
        return source_arrays(dataset, motion=args.motion, img_size=args.img_size, cache_dir=args.cache_dir,
                                    workers=workers, strict=args.strict, progress=progress,
                                    phases=tuple(args.phases))

    if not dataset.uses_cache:
        return build(args.workers, False)
    if info.is_main:  # rank 0 fills the cache first, so ranks do not decode the same frames
        arrays = build(args.workers, sys.stderr.isatty())
    barrier(info)
    return arrays if info.is_main else build(0, False)


def print_dataset(dataset: DatasetSource, folds: list[str], graph_nodes: tuple[int, ...]) -> None:
    """--dry-run: the dataset, its classes, subjects, folds and AU codes, and what was skipped."""
    for line in dataset.describe():
        print(line)
    labels, subjects, au_sets = dataset.labels.tolist(), dataset.subjects, dataset.aus
    classes = dataset.protocol.classes
    per_subject = Counter(subjects)
    print(f"protocol: {dataset.protocol.name}")
    print("samples per class: " + ", ".join(f"{c} {n}" for c, n in dataset.class_counts().items()))
    if dataset.excluded:
        print("left out by the protocol: " + ", ".join(f"{e} {n}" for e, n in sorted(dataset.excluded.items())))
    print("samples per subject: " + ", ".join(f"{s} {per_subject[s]}" for s in sorted(per_subject)))
    print(f"LOSO folds ({len(folds)}): " + ", ".join(folds))
    if any(dataset.datasets):
        print("samples per dataset: " + ", ".join(f"{d} {n}" for d, n in sorted(Counter(dataset.datasets).items())))
    if au_sets is not None:
        coded = [a for a in au_sets if a is not None]
        if len(coded) < len(au_sets):
            print(f"AU-coded samples: {len(coded)} of {len(au_sets)} (the others are left out of the AU loss)")
        outside = aus_outside(coded, graph_nodes)
        print("AUs outside the graph's nodes (not used as labels): "
              + (", ".join(f"AU{au} {n}" for au, n in outside.items()) or "none"))
    for w in dataset.warnings:
        print(f"warning: {w}")
    if dataset.skipped:  # each skip is also among the warnings above
        print(f"skipped samples: {len(dataset.skipped)}")
    print(f"dataset: {len(labels)} samples, {len(per_subject)} subjects, {len(classes)} classes, {len(folds)} folds")
