"""Command line and LOSO driver shared by CASME2_3.py and CASME2_5.py.

sheet -> samples (data.release) -> cached arrays (data.inputs) -> tensors and one fold at a
time (engine.run_fold) -> pooled predictions and metrics -> run folder (utils.report).
"""
from __future__ import annotations

import argparse
import copy
import sys
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from data.errors import DataError
from data.arrays import ModelArrays, motion_map_arrays, release_arrays
from data.inputs import default_cache_dir
from data.motion import MOTIONS
from data.motion_maps import MotionMapData, is_motion_map_folder, load_motion_maps
from data.protocols import PROTOCOLS, Protocol, get_protocol
from data.release import Release, au_multi_hot, aus_outside, load_release
from engine import ReleaseTensors, TrainingError, TrainSettings, load_pretrained, run_fold
from models import ModelConfig, build_model
from utils.distributed import DistInfo, assign_folds, barrier, init_distributed, shutdown, threads_per_process
from utils.io import append_jsonl, read_json, read_yaml, write_json, write_yaml
from utils.report import format_table, write_results

PROJECT_ROOT = Path(__file__).resolve().parent
LAYOUT_CHOICES = ("cropped", "cropped-updated", "raw", "simple")
# Flags that may differ when a run is resumed: they change where or how fast it runs, not its results.
RUNTIME_FLAGS = {"resume", "device", "workers", "checkpoint_interval", "eval_batch_size", "compile", "threads"}
PATH_FLAGS = {"raf_path", "sheet", "cache_dir", "output", "pretrained", "checkpoint_dir", "resume"}
# --demo: a small synthetic release and a short schedule that ends in minutes on 2 CPU cores.
DEMO_RELEASE = dict(subjects=8, per_subject=12, size=(72, 84), seed=0)
DEMO_SETTINGS = dict(epochs=12, img_size=64, embed_dim=128, vit_depth=1)


class UsageError(Exception):
    """A flag value that cannot work; the message names the flag."""


def build_parser(protocol: str, defaults: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=f"AM-GCN, leave-one-subject-out on CASME II ({protocol} protocol).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--raf_path", "--raf-path", type=Path, help="CASME II release folder (sheet + frame folders)")
    g.add_argument("--sheet", type=Path, help="annotation sheet, when it is not inside --raf_path")
    g.add_argument("--layout", choices=LAYOUT_CHOICES, help="frame folder layout (detected when omitted)")
    g.add_argument("--protocol", default=protocol, choices=sorted(PROTOCOLS), help="class protocol")
    g.add_argument("--img-size", type=int, default=224, help="face size fed to the network (px)")
    g.add_argument("--motion", choices=MOTIONS, default="diff",
                   help="motion input: apex - onset difference image, or optical flow (u, v, strain); "
                        "for a motion-map folder, what its maps hold")
    g.add_argument("--cache-dir", type=Path, help=f"preprocessed-input cache (default {default_cache_dir()})")
    g.add_argument("--workers", type=int, default=0, help="processes decoding frames when the cache is built")
    g.add_argument("--strict", action="store_true", help="a missing or unreadable frame is an error, not a skip")
    g.add_argument("--demo", action="store_true",
                   help="use a built-in synthetic release and, unless given, "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEMO_SETTINGS.items()))
    g.add_argument("--dry-run", action="store_true", help="read and validate the dataset, print it, train nothing")

    g = p.add_argument_group("training")
    g.add_argument("--batch_size", "--batch-size", type=int, default=defaults["batch_size"])
    g.add_argument("--lr", type=float, default=defaults["lr"])
    g.add_argument("--epochs", type=int, default=defaults["epochs"], help="fixed schedule; the last epoch is tested")
    g.add_argument("--weight-decay", type=float, default=defaults.get("weight_decay", 1e-4))
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default=defaults.get("optimizer", "adam"))
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--folds", help="held-out subjects to run, e.g. sub01,sub05 or 1,5 (default: all)")
    g.add_argument("--val-subjects", type=int, default=0,
                   help="hold out K training subjects per fold and test the epoch best on them")
    g.add_argument("--report-oracle", action="store_true",
                   help="also report the test-selected best-epoch figure (optimistic; never the result)")
    g.add_argument("--pretrained", type=Path, help="local weights to start from (matching names and shapes)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (0: the machine's cores shared among local processes); "
                        "bit-identical results need the same value")
    g.add_argument("--eval-batch-size", type=int, default=256)
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays on GPUs, not on CPUs)")

    g = p.add_argument_group("model")
    g.add_argument("--model", choices=("amgcn", "mmnet"), default="amgcn", help="mmnet = position + motion only")
    g.add_argument("--no-pos", action="store_true", help="drop the position (ViT) branch")
    g.add_argument("--no-gcn", action="store_true", help="drop the AU graph branch (and AA)")
    g.add_argument("--no-aa", action="store_true", help="drop the AU attention module")
    g.add_argument("--no-sa", action="store_true", help="drop the stacked attention module")
    g.add_argument("--au-loss-weight", type=float, default=0.5, help="weight of the auxiliary AU loss")
    g.add_argument("--embed-dim", type=int, default=512, help="width of the position branch's ViT")
    g.add_argument("--vit-depth", type=int, default=2, help="ViT blocks in the position branch")
    g.add_argument("--vit-heads", type=int, default=4, help="attention heads per ViT block")

    g = p.add_argument_group("output")
    g.add_argument("--output", type=Path, help="run folder (default runs/<protocol>-<model>-<time>)")
    g.add_argument("--checkpoint-dir", type=Path, default=PROJECT_ROOT / "checkpoints",
                   help="fold checkpoints go to <checkpoint-dir>/<run name>/")
    g.add_argument("--checkpoint-interval", type=float, default=60.0,
                   help="seconds between fold checkpoints (the last epoch is always saved)")
    g.add_argument("--resume", type=Path, help="run folder of a killed run to finish")
    return p


def explicit_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Destinations of the flags the user actually typed."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def check_args(args: argparse.Namespace) -> None:
    positive = {"batch_size": "--batch_size", "epochs": "--epochs", "img_size": "--img-size",
                "eval_batch_size": "--eval-batch-size"}
    for dest, flag in positive.items():
        if getattr(args, dest) < 1:
            raise UsageError(f"{flag} must be at least 1, got {getattr(args, dest)}")
    if not args.lr > 0 or args.lr != args.lr:
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.weight_decay < 0:
        raise UsageError(f"--weight-decay must not be negative, got {args.weight_decay}")
    if args.img_size < 32 or args.img_size % 16:
        raise UsageError(f"--img-size must be a multiple of 16 and at least 32, got {args.img_size}")
    if args.embed_dim < 1 or args.vit_depth < 1 or args.vit_heads < 1 or args.embed_dim % args.vit_heads:
        raise UsageError(f"--embed-dim ({args.embed_dim}) must be a positive multiple of --vit-heads "
                         f"({args.vit_heads}), and --vit-depth at least 1")
    if args.workers < 0 or args.val_subjects < 0 or args.threads < 0:
        raise UsageError("--workers, --val-subjects and --threads must not be negative")
    if args.pretrained is not None and not args.pretrained.is_file():
        raise UsageError(f"--pretrained {args.pretrained}: no such file")
    if args.raf_path is None and not args.demo:
        raise UsageError("--raf_path is required (or --demo for the built-in synthetic release)")


def resolve_device(name: str, info: DistInfo) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine")
        if name == "cuda":
            name = f"cuda:{info.local_rank % torch.cuda.device_count()}"
    elif name != "cpu":
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return torch.device(name)


def select_folds(spec: str | None, subjects: list[str]) -> list[str]:
    if not spec:
        return list(subjects)
    chosen = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        name = f"sub{int(token):02d}" if token.isdigit() else token
        if name not in subjects:
            raise UsageError(f"--folds: subject {token!r} has no samples in this protocol "
                             f"(subjects: {', '.join(subjects)})")
        chosen.append(name)
    return sorted(set(chosen))


def print_dataset(dataset: Release | MotionMapData, folds: list[str]) -> None:
    if isinstance(dataset, MotionMapData):
        print(f"motion maps: {dataset.root}")
        labels, subjects, au_sets = dataset.labels.tolist(), dataset.subjects, dataset.aus
    else:
        print(f"sheet: {dataset.sheet_path}\nlayout: {dataset.layout}")
        labels, subjects = [s.label for s in dataset.samples], [s.subject for s in dataset.samples]
        au_sets = [s.aus for s in dataset.samples]
    classes = dataset.protocol.classes
    per_subject = Counter(subjects)
    print(f"protocol: {dataset.protocol.name}")
    print("samples per class: " + ", ".join(f"{c} {n}" for c, n in dataset.class_counts().items()))
    if dataset.excluded:
        print("left out by the protocol: " + ", ".join(f"{e} {n}" for e, n in sorted(dataset.excluded.items())))
    print("samples per subject: " + ", ".join(f"{s} {per_subject[s]}" for s in sorted(per_subject)))
    print(f"LOSO folds ({len(folds)}): " + ", ".join(folds))
    if au_sets is not None:
        outside = aus_outside(au_sets, ModelConfig().aus)
        print("AUs outside the graph's nodes (not used as labels): "
              + (", ".join(f"AU{au} {n}" for au, n in outside.items()) or "none"))
    for w in dataset.warnings:
        print(f"warning: {w}")
    if dataset.skipped:  # each skip is also among the warnings above
        print(f"skipped samples: {len(dataset.skipped)}")
    print(f"dataset: {len(labels)} samples, {len(per_subject)} subjects, {len(classes)} classes, {len(folds)} folds")


def demo_release() -> Path:
    """The built-in synthetic release, generated once into the cache folder."""
    from data.synthetic import generate_release

    root = default_cache_dir() / "demo-release-v1"
    if not (root / ".complete").exists():
        print(f"building the synthetic demo release in {root} ...")
        generate_release(root, layout="cropped", **DEMO_RELEASE)
        (root / ".complete").touch()
    return root


def open_dataset(args: argparse.Namespace, protocol: Protocol) -> Release | MotionMapData:
    """A CASME II release, or a folder of precomputed motion maps (it holds index.csv)."""
    if args.raf_path is not None and is_motion_map_folder(args.raf_path):
        return load_motion_maps(args.raf_path, protocol, img_size=args.img_size, strict=args.strict)
    return load_release(args.raf_path, protocol, sheet=args.sheet, layout=args.layout, strict=args.strict)


def dataset_subjects(dataset: Release | MotionMapData) -> list[str]:
    return dataset.subject_list if isinstance(dataset, MotionMapData) else dataset.subjects


def model_arrays(args: argparse.Namespace, dataset: Release | MotionMapData, info: DistInfo) -> ModelArrays:
    if isinstance(dataset, MotionMapData):
        return motion_map_arrays(dataset, motion=args.motion)

    def build(workers: int, progress: bool) -> ModelArrays:
        return release_arrays(dataset, motion=args.motion, img_size=args.img_size, cache_dir=args.cache_dir,
                              workers=workers, strict=args.strict, progress=progress)

    if info.is_main:  # rank 0 fills the cache first, so ranks do not decode the same frames
        arrays = build(args.workers, sys.stderr.isatty())
    barrier(info)
    return arrays if info.is_main else build(0, False)


def model_config(args: argparse.Namespace, num_classes: int, arrays: ModelArrays) -> ModelConfig:
    use_pos = not args.no_pos
    au_loss_weight = args.au_loss_weight
    if arrays.face is None and use_pos:
        emit("notice: the dataset has no faces; the position branch is switched off")
        use_pos = False
    if arrays.aus is None and not args.no_gcn and args.model == "amgcn":
        emit("notice: the dataset has no AU labels; the AU graph uses the identity adjacency "
             "(no co-occurrence known) and the AU loss is off")
        au_loss_weight = 0.0
    return ModelConfig(num_classes=num_classes, img_size=args.img_size, arch=args.model, use_pos=use_pos,
                       use_gcn=not args.no_gcn, use_aa=not args.no_aa, use_sa=not args.no_sa,
                       au_loss_weight=au_loss_weight, embed_dim=args.embed_dim, vit_depth=args.vit_depth,
                       vit_heads=args.vit_heads)


def emit(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def run(args: argparse.Namespace, info: DistInfo) -> int:
    device = resolve_device(args.device, info)
    torch.set_num_threads(args.threads or threads_per_process(info))
    torch.backends.cudnn.benchmark = True  # input shapes are fixed within a run
    protocol = get_protocol(args.protocol)
    dataset = open_dataset(args, protocol)
    folds = select_folds(args.folds, dataset_subjects(dataset))
    if args.dry_run:
        if info.is_main:
            print_dataset(dataset, folds)
        return 0

    run_dir = args.output
    ckpt_dir = args.checkpoint_dir / run_dir.name
    if args.resume is None and info.is_main:  # a new run must not pick up another run's files
        if (run_dir / "args.yaml").exists():
            raise UsageError(f"--output {run_dir} already holds a run; continue it with --resume {run_dir} "
                             "or choose another --output")
        if any(ckpt_dir.glob("*.pt")):
            raise UsageError(f"{ckpt_dir} holds checkpoints of an earlier run named {run_dir.name!r}; "
                             "remove them or choose another --output")
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "args.yaml", args_record(args))
    arrays = model_arrays(args, dataset, info)
    for note in arrays.notices if info.is_main else []:
        emit(note if note.startswith(("motion:", "notice:")) else f"warning: {note}")

    cfg = model_config(args, len(protocol.classes), arrays)
    au = au_multi_hot(arrays.aus or [frozenset()] * len(arrays.labels), cfg.aus)
    data = ReleaseTensors.from_arrays(arrays.motion, arrays.face, arrays.labels, au, arrays.subjects,
                                      arrays.names, device, flip_signs=arrays.flip_signs)
    folds = [s for s in folds if s in set(data.subjects)]
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, optimizer=args.optimizer,
                             eval_batch_size=args.eval_batch_size, val_subjects=args.val_subjects,
                             report_oracle=args.report_oracle, checkpoint_interval=args.checkpoint_interval,
                             pretrained=args.pretrained, amp=device.type == "cuda", compile=args.compile)
    if args.pretrained is not None and info.is_main:
        report_pretrained(args.pretrained, cfg)
    costs = {s: float(sum(1 for t in data.subjects if t != s)) for s in folds}
    shares = assign_folds(costs, info.world_size)
    if info.is_main:
        write_json(run_dir / "fold_assignment.json", {"world_size": info.world_size,
                                                      "ranks": {str(r): share for r, share in enumerate(shares)}})
        emit(f"{len(data.labels)} samples, {len(folds)} folds, device {device}, model {cfg.arch}"
             + (f", {info.world_size} processes" if info.world_size > 1 else ""))

    run_folds(shares[info.rank], folds, data, cfg, settings, args, ckpt_dir, device, info)
    barrier(info)
    if info.is_main:
        report(folds, data, cfg, protocol, args)
    return 0


def report_pretrained(path: Path, cfg: ModelConfig) -> None:
    """Say how much of --pretrained fits this model before any fold starts (each fold loads it)."""
    try:
        loaded, total = load_pretrained(build_model(cfg), path)
    except (TrainingError, OSError, RuntimeError) as e:
        raise UsageError(f"--pretrained {path}: {e}") from None
    emit(f"pretrained: {loaded} of {total} tensors loaded from {path} (names and shapes match)")


def run_folds(mine: list[str], folds: list[str], data: ReleaseTensors, cfg: ModelConfig, settings: TrainSettings,
              args: argparse.Namespace, ckpt_dir: Path, device: torch.device, info: DistInfo) -> None:
    """Train and test this rank's folds, skipping those with a result file (a resumed run)."""
    run_dir = args.output
    show_bars = sys.stderr.isatty() and info.is_main
    for subject in tqdm(mine, desc="folds", disable=not show_bars, position=0):
        fold_file = run_dir / "folds" / f"{subject}.json"
        if fold_file.exists():
            continue
        bar = tqdm(total=args.epochs, desc=subject, disable=not show_bars, position=1, leave=False)
        n_fold = folds.index(subject) + 1

        def on_epoch(record: dict, bar=bar, n_fold=n_fold) -> None:
            append_jsonl(run_dir / "log.jsonl", record)
            bar.n = record["epoch"]
            bar.refresh()
            extra = f" val_uf1 {record['val_uf1']:.3f}" if "val_uf1" in record else ""
            emit(f"fold {record['fold']} ({n_fold}/{len(folds)}) epoch {record['epoch']}/{args.epochs} "
                 f"loss {record['train_loss']:.4f} acc {record['train_acc']:.3f}{extra} {record['seconds']:.1f}s")

        try:
            result = run_fold(subject, data, cfg, settings, args.seed, device, ckpt_dir / f"{subject}.pt",
                              args_record(args), on_epoch=on_epoch)
        except TrainingError as e:
            raise TrainingError(f"rank {info.rank}, fold {subject}: {e}") from None
        finally:
            bar.close()
        write_json(fold_file, result.to_dict())


def report(folds: list[str], data: ReleaseTensors, cfg: ModelConfig, protocol: Protocol,
           args: argparse.Namespace) -> None:
    """Pool every fold's result file into the run folder's files and print the table."""
    run_dir = args.output
    missing = [s for s in folds if not (run_dir / "folds" / f"{s}.json").exists()]
    if missing:
        raise TrainingError(f"folds without results: {', '.join(missing)}; no summary written")
    fold_results = [read_json(run_dir / "folds" / f"{s}.json") for s in folds]
    extra = {"protocol": protocol.name, "model": cfg.arch, "folds": folds, "epochs": args.epochs,
             "selection": f"best of {args.val_subjects} validation subjects" if args.val_subjects else "last epoch",
             "model_config": asdict(cfg)}
    summary, fold_rows = write_results(run_dir, fold_results, data.labels.tolist(), data.subjects, data.names,
                                       protocol.classes, extra)
    print(format_table(summary, fold_rows))
    print(f"results in {run_dir}")


def args_record(args: argparse.Namespace) -> dict:
    """The resolved arguments as plain values (for args.yaml and checkpoints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def resolve_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    given = explicit_flags(parser, argv)
    if args.resume is not None:
        saved_file = args.resume / "args.yaml"
        if not saved_file.is_file():
            raise UsageError(f"--resume {args.resume}: no args.yaml there (not a run folder)")
        saved = read_yaml(saved_file)
        ignored = sorted(f for f in given - RUNTIME_FLAGS if str(saved.get(f)) != str(getattr(args, f)))
        if ignored:
            emit(f"note: resuming with the run's saved arguments; ignoring --{', --'.join(ignored)}")
        for key, value in saved.items():
            if key not in RUNTIME_FLAGS and hasattr(args, key):
                setattr(args, key, Path(value) if key in PATH_FLAGS and value is not None else value)
        args.output = args.resume
        return args
    if args.demo:
        args.raf_path = demo_release()
        for key, value in DEMO_SETTINGS.items():
            if key not in given:
                setattr(args, key, value)
    check_args(args)
    if args.output is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        args.output = PROJECT_ROOT / "runs" / f"{args.protocol}-{args.model}-{stamp}"
    return args


def main(protocol: str, defaults: dict, argv: Sequence[str] | None = None) -> int:
    """Entry point of the class-protocol scripts; returns the exit status."""
    parser = build_parser(protocol, defaults)
    argv = list(sys.argv[1:] if argv is None else argv)
    info = DistInfo()
    try:
        args = resolve_args(parser, argv)
        info = init_distributed()
        return run(args, info)
    except (UsageError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrainingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with --resume RUN_FOLDER", file=sys.stderr)
        return 130
    finally:
        shutdown(info)
