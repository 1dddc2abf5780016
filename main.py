"""Command line and LOSO driver shared by CASME2_3.py and CASME2_5.py.

sheet -> samples (data.release) -> cached arrays (data.inputs) -> tensors and one fold at a
time (fold_set) -> pooled predictions and metrics -> run folder (utils.report).
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from collections import Counter
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Sequence

import torch
import yaml
from tqdm import tqdm

from data.errors import MAX_MAP_SIZE, DataError
from data.apex import APEX_MODES, without_apexes
from data.arrays import ModelArrays, center_maps
from data.inputs import default_cache_dir
from data.layout import LAYOUTS
from data.map_reading import describe_maps
from data.motion import MOTIONS
from data.motion_maps import is_motion_map_folder, load_motion_maps
from data.phases import DEFAULT_PHASES, PHASES, parse_phases
from data.protocols import PROTOCOLS, Protocol, get_protocol
from data.release import aus_outside, load_release
from data.source import DatasetSource
from engine import DatasetTensors, TrainingError, TrainSettings, load_pretrained, untrainable
from fold_set import FINAL_FOLD, fold_groups, run_fold, run_fold_group, train_final
from models import ARCHS, MIN_IMG_SIZE, MOTION_ONLY, READOUTS, ModelConfig, build_model
from utils.distributed import DistInfo, assign_folds, barrier, init_distributed, shutdown, threads_per_process
from utils.face_regions import AU_REGIONS, DEFAULT_AUS
from utils.io import (append_jsonl, atomic_torch_save, error_text, read_json, read_jsonl, read_yaml, write_json,
                      write_yaml)
from utils.checkpoint import RunFacts, earlier_group_problem, read_checkpoint
from utils.model_file import MODEL_FILE, model_record
from utils.paths import blocking_file, run_checkpoint_dir, seed_folder, write_problem
from utils.plots import save_training_curves
from utils.report import aggregate_seeds, epoch_curves, format_seed_table, format_table, write_results
from utils.run_state import (SAMPLES_FILE, check_run_kind, check_samples, checkpoint_path, fold_result_path,
                             read_fold_result, run_kind, sample_fingerprint)

PROJECT_ROOT = Path(__file__).resolve().parent
# Flags that may differ when a run is resumed: they change where or how fast it runs, not its results.
RUNTIME_FLAGS = {"resume", "device", "workers", "checkpoint_interval", "eval_batch_size", "compile", "threads"}
# Of those, the ones that change the numbers (float sums split over another count of threads): the run's
# saved value holds on --resume unless the flag is given again, and then a note says results will differ.
NUMERIC_RUNTIME_FLAGS = {"threads"}
PATH_FLAGS = {"raf_path", "sheet", "cache_dir", "output", "pretrained", "checkpoint_dir", "resume"}
# Flags that may be given again on --resume to point elsewhere (a full or unwritable disk); else the saved value holds.
RELOCATABLE_FLAGS = {"checkpoint_dir", "cache_dir"}
# Files whose presence marks a folder as holding a run.
RUN_FILES = ("args.yaml", SAMPLES_FILE, "folds", "summary.json")
CPUS = os.cpu_count() or 1
# Every numeric flag: (flag, lowest, highest[, why]); a value must be finite and within the bounds.
NUMBER_RANGES = {
    "batch_size": ("--batch_size", 2, 100_000, "batch norm cannot train on a batch of one sample"),
    "eval_batch_size": ("--eval-batch-size", 1, 100_000),
    "epochs": ("--epochs", 1, 100_000),
    "img_size": ("--img-size", 1, MAX_MAP_SIZE),        # the lower bound is the model's (MIN_IMG_SIZE)
    "seed": ("--seed", 0, 2**31 - 1),
    "val_subjects": ("--val-subjects", 0, 100_000),     # the dataset sets the real bound (check_trainable)
    "workers": ("--workers", 0, CPUS),
    "threads": ("--threads", 0, CPUS),
    "embed_dim": ("--embed-dim", 1, 8192),
    "vit_depth": ("--vit-depth", 1, 64),
    "vit_heads": ("--vit-heads", 1, 256),
    "lr": ("--lr", 1e-12, 10.0),
    "weight_decay": ("--weight-decay", 0.0, 100.0),     # adamw shrinks by lr * wd per step: wd > 1 is meaningful
    "au_loss_weight": ("--au-loss-weight", 0.0, 1000.0),
    "checkpoint_interval": ("--checkpoint-interval", 0.0, 1e7),
    "folds_together": ("--folds-together", 1, 1000),
    "width": ("--width", 0.01, 4.0),
    "dropout": ("--dropout", 0.0, 0.99),
    "shift": ("--shift", 0, 64),
    "mixup": ("--mixup", 0.0, 100.0),
    "erase": ("--erase", 0.0, 1.0),
    "logit_adjust": ("--logit-adjust", 0.0, 10.0),
    "label_smoothing": ("--label-smoothing", 0.0, 0.99),
}
# --demo: a small synthetic release and a short schedule that ends in minutes on 2 CPU cores.
DEMO_RELEASE = dict(subjects=8, per_subject=12, size=(72, 84), seed=0)
DEMO_SETTINGS = dict(epochs=12, img_size=64, embed_dim=128, vit_depth=1)
# Named recipes: their flag values apply unless the flag is given. flow28 is the recommended
# setting for 28x28 flow-map folders (STSTNet style); README "Real micro-expressions" says how
# it was chosen (on training data and seeds, never on the LOSO test subjects).
PRESETS: dict[str, dict] = {
    "flow28": dict(motion="flow", img_size=28, width=0.25, vit_depth=1, epochs=40, lr=0.001, optimizer="adamw",
                   weight_decay=0.01, class_balance=True, dropout=0.3, center_maps=True, batch_size=32, shift=2,
                   tta_flip=True),
}


class UsageError(Exception):
    """A flag value that cannot work; the message names the flag."""


class CommandLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UsageError: one `error:` line, exit status 2, no usage dump."""

    def error(self, message: str):
        raise UsageError(message)


def path_value(text: str) -> Path:
    """A path flag's value; an empty one is refused (Path('') would silently mean '.')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def build_parser(protocol: str, defaults: dict) -> argparse.ArgumentParser:
    """The entry scripts' one parser; `defaults` are the protocol's batch size, lr and epochs."""
    p = CommandLineParser(description=f"AM-GCN, leave-one-subject-out on CASME II ({protocol} protocol).",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p.add_argument_group("data"), protocol)
    add_training_flags(p.add_argument_group("training"), defaults)
    add_model_flags(p.add_argument_group("model"))
    add_output_flags(p.add_argument_group("output"))
    for action in p._actions:  # every path flag refuses an empty value
        if action.type is Path:
            action.type = path_value
    return p


def add_data_flags(g: argparse._ArgumentGroup, protocol: str) -> None:
    g.add_argument("--raf_path", "--raf-path", type=Path, help="CASME II release folder (sheet + frame folders)")
    g.add_argument("--sheet", type=Path, help="annotation sheet, when it is not inside --raf_path")
    g.add_argument("--layout", choices=LAYOUTS, help="frame folder layout (detected when omitted)")
    g.add_argument("--protocol", default=protocol, choices=sorted(PROTOCOLS), help="class protocol")
    g.add_argument("--img-size", type=int, default=224, help="face size fed to the network (px)")
    g.add_argument("--motion", choices=MOTIONS, default="diff",
                   help="motion input: apex - onset difference image, or optical flow (u, v, strain); "
                        "for a motion-map folder, what its maps hold")
    g.add_argument("--center-maps", action="store_true",
                   help="subtract each motion map's per-channel median (for maps normalised per image, "
                        "such as STSTNet-style flow images, whose zero motion is a different grey in each)")
    g.add_argument("--phases", type=phase_list, default=list(DEFAULT_PHASES),
                   help="for a release, the clip's phases that each give a motion map, stacked in this order: "
                        + ", ".join(PHASES) + " (the relaxation after the apex)")
    g.add_argument("--apex", choices=APEX_MODES, default="annotated",
                   help="annotated: the sheet's apex frame, spotted where missing; auto: spot every apex "
                        "(data.apex), the annotations only measure it (summary.json 'apex')")
    g.add_argument("--maps", type=map_list,
                   help="for a motion-map folder, which of its map columns a sample stacks, e.g. 1,2 for motion "
                        "and motion_2 (default: every map column the folder has)")
    g.add_argument("--cache-dir", type=Path, help=f"preprocessed-input cache (default {default_cache_dir()})")
    g.add_argument("--workers", type=int, default=0, help="processes decoding frames when the cache is built")
    g.add_argument("--strict", action="store_true", help="a missing or unreadable frame is an error, not a skip")
    g.add_argument("--demo", action="store_true",
                   help="use a built-in synthetic release and, unless given, "
                        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in DEMO_SETTINGS.items()))
    g.add_argument("--dry-run", action="store_true", help="read and validate the dataset, print it, train nothing")
    g.add_argument("--preset", choices=sorted(PRESETS),
                   help="a named recipe; flags given on the command line override it. flow28: "
                        + " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
                                   for k, v in PRESETS["flow28"].items()))


def add_training_flags(g: argparse._ArgumentGroup, defaults: dict) -> None:
    g.add_argument("--batch_size", "--batch-size", type=int, default=defaults["batch_size"])
    g.add_argument("--lr", type=float, default=defaults["lr"])
    g.add_argument("--epochs", type=int, default=defaults["epochs"], help="fixed schedule; the last epoch is tested")
    g.add_argument("--weight-decay", type=float, default=defaults.get("weight_decay", 1e-4))
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default=defaults.get("optimizer", "adam"))
    g.add_argument("--class-balance", action=argparse.BooleanOptionalAction, default=False,
                   help="weight the loss by inverse class frequency of each fold's training set")
    g.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                   help="add TAU * log(class prior of each fold's training set) to the logits in the loss "
                        "only: rare classes keep a wider training margin (1: the usual value; 0: off)")
    g.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=False,
                   help="test each sample on its map and its mirror image, class probabilities averaged")
    g.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                   help="train the emotion head towards (1 - EPS) on the label and EPS spread over all classes")
    g.add_argument("--shift", type=int, default=0,
                   help="move each training motion map by up to N pixels (face alignment jitter)")
    g.add_argument("--mixup", type=float, default=0.0,
                   help="mix pairs of training samples with Beta(A, A) weights, targets alike (0: off)")
    g.add_argument("--erase", type=float, default=0.0, metavar="P",
                   help="with probability P a training motion map loses one square (a quarter to half its side) "
                        "to zero, i.e. no motion (0: off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--seeds", type=seed_list,
                   help="one full LOSO per seed, e.g. 0,1,2, in <output>/seed<N>/, then mean and sd over seeds")
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
    g.add_argument("--folds-together", type=int, default=1,
                   help="train up to N folds whose epochs hold as many batches in one vmapped step "
                        "(same results within float tolerance; fills a GPU, saves overhead on CPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays on GPUs, not on CPUs)")


def add_model_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--model", choices=ARCHS, default="amgcn",
                   help="mmnet = position + motion only; linear = one linear layer on the motion map (the floor); "
                        "ststnet = the shallow three-stream flow CNN of Liong et al. (2019)")
    g.add_argument("--no-pos", action="store_true", help="drop the position (ViT) branch")
    g.add_argument("--no-gcn", action="store_true", help="drop the AU graph branch (and AA)")
    g.add_argument("--no-aa", action="store_true", help="drop the AU attention module")
    g.add_argument("--no-sa", action="store_true", help="drop the stacked attention module")
    g.add_argument("--au-loss-weight", type=float, default=0.5, help="weight of the auxiliary AU loss")
    g.add_argument("--aus", type=au_list,
                   help="the AU graph's nodes, e.g. 1,2,4,7,12 (default: "
                        + ",".join(map(str, DEFAULT_AUS)) + ", the most frequent AUs of CASME II)")
    g.add_argument("--readout", choices=READOUTS, default="mean",
                   help="what the AU graph gives the classifier: the mean of its node states, or every node's "
                        "state side by side (nodes: which AU region moved)")
    g.add_argument("--linear-path", action="store_true",
                   help="add a linear read-out of the whole motion map to the logits (the linear floor as a path "
                        "inside AM-GCN or MMNet)")
    g.add_argument("--width", type=float, default=1.0,
                   help="scales the motion branch's channels (128, 128, 256, 512 at 1.0)")
    g.add_argument("--dropout", type=float, default=0.0, help="dropout before the classifier and in the graph")
    g.add_argument("--embed-dim", type=int,
                   help="width of the position branch's ViT (default: the motion width at 224 px, a quarter below)")
    g.add_argument("--vit-depth", type=int, default=2, help="ViT blocks in the position branch")
    g.add_argument("--vit-heads", type=int, default=4, help="attention heads per ViT block")


def add_output_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--output", type=Path, help="run folder (default runs/<protocol>-<model>-<time>)")
    g.add_argument("--checkpoint-dir", type=Path, default=PROJECT_ROOT / "checkpoints",
                   help="fold checkpoints go to <checkpoint-dir>/<run name>/")
    g.add_argument("--checkpoint-interval", type=float, default=60.0,
                   help="seconds between fold checkpoints (the last epoch is always saved)")
    g.add_argument("--resume", type=Path, help="run folder of a killed run to finish")
    g.add_argument("--final", action="store_true",
                   help=f"after the LOSO, train one model on every subject and write <output>/{MODEL_FILE}")
    g.add_argument("--final-only", action="store_true", help=f"only train and write <output>/{MODEL_FILE} (no LOSO)")


def explicit_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Destinations of the flags the user actually typed."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def check_numbers(args: argparse.Namespace, dests: set[str] | None = None) -> None:
    """Every numeric flag (or those in `dests`) finite and within NUMBER_RANGES."""
    for dest, (flag, low, high, *why) in NUMBER_RANGES.items():
        value = getattr(args, dest, None)
        if value is None or (dests is not None and dest not in dests):
            continue  # an optional flag left to its automatic value
        if not (math.isfinite(value) and low <= value <= high):
            kind = "an integer" if isinstance(low, int) else "a finite number"
            raise UsageError(f"{flag} must be {kind} from {low} to {high}, got {value}"
                             + (f" ({why[0]})" if why else ""))


def check_args(args: argparse.Namespace) -> None:
    check_numbers(args)
    low, high = NUMBER_RANGES["seed"][1:3]
    if any(not low <= seed <= high for seed in getattr(args, "seeds", None) or []):
        raise UsageError(f"--seeds must be integers from {low} to {high}, got {args.seeds}")
    if args.img_size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size must be at least {MIN_IMG_SIZE}, got {args.img_size}")
    embed_dim = args.embed_dim if args.embed_dim is not None else args.vit_heads
    if embed_dim < 1 or args.vit_depth < 1 or args.vit_heads < 1 or embed_dim % args.vit_heads:
        raise UsageError(f"--embed-dim ({args.embed_dim}) must be a positive multiple of --vit-heads "
                         f"({args.vit_heads}), and --vit-depth at least 1")
    if args.final_only and (args.seeds or args.folds is not None):
        other = "--seeds (one LOSO per seed)" if args.seeds else "--folds (LOSO folds to run)"
        raise UsageError(f"--final-only trains one model on every subject and runs no LOSO, so {other} has "
                         "nothing to do; give one of them")
    if args.folds is not None and not any(t.strip() for t in args.folds.split(",")):
        raise UsageError(f"--folds {args.folds!r} names no subject; give e.g. sub01,sub05 or 1,5, "
                         "or leave --folds out to run every fold")
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
    if spec is None:
        return list(subjects)
    chosen = []
    for token in (t.strip() for t in spec.split(",") if t.strip()):
        # a subject as the dataset names it ('006', 'samm/006'), or CASME II's number ('1' -> 'sub01')
        name = f"sub{int(token):02d}" if token.isdigit() and token not in subjects else token
        if name not in subjects:
            raise UsageError(f"--folds: subject {token!r} has no samples in this protocol "
                             f"(subjects: {', '.join(subjects)})")
        chosen.append(name)
    return sorted(set(chosen))


def print_dataset(dataset: DatasetSource, folds: list[str], graph_nodes: tuple[int, ...]) -> None:
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


def demo_release() -> Path:
    """The built-in synthetic release, generated once into the cache folder."""
    from data.synthetic import generate_release

    root = default_cache_dir() / "demo-release-v1"
    if not (root / ".complete").exists():
        print(f"building the synthetic demo release in {root} ...")
        try:
            generate_release(root, layout="cropped", **DEMO_RELEASE)
            (root / ".complete").touch()
        except OSError as e:
            source = "AMGCN_CACHE" if os.environ.get("AMGCN_CACHE") else "cache folder"
            raise UsageError(f"{source} {default_cache_dir()}: cannot hold the demo release ({error_text(e)})") from None
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
    def build(workers: int, progress: bool) -> ModelArrays:
        return dataset.model_arrays(motion=args.motion, img_size=args.img_size, cache_dir=args.cache_dir,
                                    workers=workers, strict=args.strict, progress=progress,
                                    phases=tuple(args.phases))

    if not dataset.uses_cache:
        return build(args.workers, False)
    if info.is_main:  # rank 0 fills the cache first, so ranks do not decode the same frames
        arrays = build(args.workers, sys.stderr.isatty())
    barrier(info)
    return arrays if info.is_main else build(0, False)


def model_config(args: argparse.Namespace, num_classes: int, arrays: ModelArrays) -> ModelConfig:
    use_pos = not args.no_pos
    au_loss_weight = args.au_loss_weight
    if arrays.face is None and use_pos and args.model not in MOTION_ONLY:
        emit("notice: the dataset has no faces; the position branch is switched off")
        use_pos = False
    if arrays.aus is None and not args.no_gcn and args.model == "amgcn":
        emit("notice: the dataset has no AU labels; the AU graph uses the identity adjacency "
             "(no co-occurrence known) and the AU loss is off")
        au_loss_weight = 0.0
    return ModelConfig(num_classes=num_classes, img_size=args.img_size, arch=args.model, use_pos=use_pos,
                       use_gcn=not args.no_gcn, use_aa=not args.no_aa, use_sa=not args.no_sa,
                       au_loss_weight=au_loss_weight, label_smoothing=args.label_smoothing,
                       width=args.width, dropout=args.dropout,
                       embed_dim=args.embed_dim, vit_depth=args.vit_depth, vit_heads=args.vit_heads,
                       aus=graph_aus(args), readout=args.readout, linear_path=args.linear_path,
                       maps=motion_map_count(arrays))


def motion_map_count(arrays: ModelArrays) -> int:
    """How many 3-channel maps a sample stacks (1 for inputs that bring no arrays yet)."""
    motion = getattr(arrays, "motion", None)
    return motion.shape[1] // 3 if motion is not None else 1


def train_settings(args: argparse.Namespace, device: torch.device) -> TrainSettings:
    """The training schedule of the flags; bf16 autocast on CUDA only."""
    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, optimizer=args.optimizer,
                         eval_batch_size=args.eval_batch_size, val_subjects=args.val_subjects,
                         report_oracle=args.report_oracle, checkpoint_interval=args.checkpoint_interval,
                         pretrained=args.pretrained, class_balance=args.class_balance,
                         logit_adjust=args.logit_adjust,
                         amp=device.type == "cuda", compile=args.compile, shift=args.shift, mixup=args.mixup,
                         erase=args.erase, tta_flip=args.tta_flip)


def emit(line: str) -> None:
    tqdm.write(line, file=sys.stderr)


def run(args: argparse.Namespace, info: DistInfo) -> int:
    device = resolve_device(args.device, info)
    torch.set_num_threads(args.threads or threads_per_process(info))   # main() resolved 0 already
    torch.backends.cudnn.benchmark = True  # input shapes are fixed within a run
    protocol = get_protocol(args.protocol)
    dataset = open_dataset(args, protocol)
    folds = select_folds(args.folds, dataset.subject_list)
    if args.dry_run:
        if info.is_main:
            print_dataset(dataset, folds, graph_aus(args))
        return 0

    run_dir = args.output
    ckpt_dir = run_checkpoint_dir(args.checkpoint_dir, run_dir)
    if info.is_main:  # before any work: every folder the run writes must take files
        check_run_folders(args, dataset, ckpt_dir)
    arrays = model_arrays(args, dataset, info)
    for note in arrays.notices if info.is_main else []:
        emit(note if note.startswith(("motion:", "notice:")) else f"warning: {note}")
    if arrays.skipped and info.is_main:  # each skip is also among the warnings above
        emit(f"skipped samples: {len(arrays.skipped)}")
    folds = folds_with_samples(folds, arrays.subjects, requested=args.folds is not None)

    cfg = model_config(args, len(protocol.classes), arrays)
    reading = centre_maps(args, arrays)
    au, au_known = arrays.au_targets(cfg.aus)
    data = DatasetTensors.from_arrays(arrays.motion, arrays.face, arrays.labels, au, arrays.subjects,
                                      arrays.names, device, cfg.grid, flip_signs=arrays.flip_signs,
                                      au_known=au_known, datasets=arrays.datasets)
    settings = train_settings(args, device)
    if args.final_only:  # no LOSO: only the model trained on every subject
        return run_final_only(args, dataset, data, cfg, settings, device, info, reading)
    for subject in folds:  # a fold that could never take a step is a flag error, found before any training
        problem = untrainable(subject, data, settings, args.seed)
        if problem:
            raise UsageError(problem)
    if args.pretrained is not None and info.is_main:
        report_pretrained(args.pretrained, cfg)
    if info.is_main:
        fingerprint = sample_fingerprint(arrays.subjects, arrays.names, arrays.labels, protocol.classes,
                                         data_settings(args, dataset))
        prepare_run_folder(args, ckpt_dir, fingerprint, folds, data, cfg)
    facts = RunFacts(list(protocol.classes), model_preprocessing(args, dataset, reading), args_record(args))
    barrier(info)  # the run folder exists before any rank writes to it
    costs = {s: float(sum(1 for t in data.subjects if t != s)) for s in folds}
    shares = assign_folds(costs, info.world_size)
    if info.is_main:
        write_json(run_dir / "fold_assignment.json", {"world_size": info.world_size,
                                                      "ranks": {str(r): share for r, share in enumerate(shares)}})
        emit(f"{len(data.labels)} samples, {len(folds)} folds, device {device}, model {cfg.arch}"
             + (f", {info.world_size} processes" if info.world_size > 1 else ""))

    run_folds(shares[info.rank], folds, data, cfg, settings, args, ckpt_dir, device, info, facts)
    barrier(info)
    if info.is_main:
        report(folds, data, cfg, protocol, args, skipped=arrays.skipped, apex=arrays.apex_record)
        if args.final:
            write_final_model(args, dataset, data, cfg, settings, device, reading)
    return 0


def centre_maps(args: argparse.Namespace, arrays: ModelArrays) -> dict:
    """Centre the maps when --center-maps asks; returns how they were read before (data.map_reading), which
    model files and fold checkpoints record for predict.py."""
    reading = describe_maps(arrays.motion, arrays.file_kind, args.center_maps)
    if args.center_maps:
        arrays.motion = center_maps(arrays.motion)
    return reading


def check_run_folders(args: argparse.Namespace, dataset: DatasetSource, ckpt_dir: Path) -> None:
    """UsageError, naming the path and why, when a folder the run writes cannot take files or
    already holds another run's; nothing is written before these checks pass."""
    run_dir = args.output
    for flag, given, folder in (("--output", run_dir, run_dir), ("--checkpoint-dir", args.checkpoint_dir, ckpt_dir)):
        problem = write_problem(folder)
        if problem:
            raise UsageError(f"{flag} {given}: {problem}")
    if dataset.uses_cache:
        cache = args.cache_dir if args.cache_dir is not None else default_cache_dir()
        source = "--cache-dir" if args.cache_dir is not None else \
            ("AMGCN_CACHE" if os.environ.get("AMGCN_CACHE") else "cache folder")
        blocker = blocking_file(cache)
        if blocker is not None:
            raise UsageError(f"{source} {cache}: {blocker} is a file, not a folder")
    if args.resume is None:  # a new run must not pick up another run's files
        held = [name for name in RUN_FILES if (run_dir / name).exists()]
        if held:
            raise UsageError(f"--output {run_dir} already holds a run ({', '.join(held)}); continue it with "
                             f"--resume {run_dir} or choose another --output")
        if any(ckpt_dir.glob("*.pt")):
            raise UsageError(f"{ckpt_dir} holds checkpoints of an earlier run in {run_dir}; "
                             "remove them or choose another --output")


def folds_with_samples(folds: list[str], subjects: list[str], requested: bool) -> list[str]:
    """The folds left once unreadable samples are skipped; a --folds subject that lost all is an error."""
    present = set(subjects)
    lost = [s for s in folds if s not in present]
    if lost and requested:
        raise UsageError(f"--folds: every sample of {', '.join(lost)} was skipped (see the warnings above)")
    return [s for s in folds if s in present]


def data_settings(args: argparse.Namespace, dataset: DatasetSource) -> dict:
    """The settings that decide the arrays a run trains on, for its data fingerprint."""
    phases = tuple(args.phases)   # named only when not the default, so one-phase runs keep their fingerprint
    return {"protocol": args.protocol, "motion": args.motion, "img_size": args.img_size,
            **({"phases": list(phases)} if phases != DEFAULT_PHASES else {}),
            **dataset.fingerprint_settings(args.motion)}


def prepare_run_folder(args: argparse.Namespace, ckpt_dir: Path, fingerprint: dict, folds: list[str],
                       data: DatasetTensors, cfg: ModelConfig) -> None:
    """Check what a resumed run folder holds against this run (data, fold results, checkpoints),
    then record the arguments and, for a new run, the data fingerprint."""
    run_dir = args.output
    if args.resume is not None:
        has_results = any((run_dir / "folds").glob("*.json")) or any(ckpt_dir.glob("*.pt"))
        check_samples(run_dir, fingerprint, has_results)
        model = None
        for subject in folds:
            result_file, ckpt = fold_result_path(run_dir, subject), checkpoint_path(ckpt_dir, subject)
            if result_file.exists():
                read_fold_result(result_file, subject, data.indices({subject}).tolist(), cfg.num_classes,
                                 args.epochs)
            elif ckpt.exists():
                model = model or build_model(cfg)
                read_checkpoint(ckpt, model, subject, args.epochs)
        problem = earlier_group_problem(ckpt_dir, folds)
        if problem:
            raise UsageError(problem)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_yaml(run_dir / "args.yaml", args_record(args))
    if args.resume is None:
        check_samples(run_dir, fingerprint, has_results=False)


def au_list(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (argparse type of --aus): distinct AUs with a facial region."""
    try:
        aus = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated AU numbers such as 1,2,4, got {text!r}") from None
    unknown = [au for au in aus if au not in AU_REGIONS]
    if unknown or len(set(aus)) != len(aus) or len(aus) < 2:
        raise argparse.ArgumentTypeError(
            f"expected at least two distinct AUs from {','.join(map(str, sorted(AU_REGIONS)))}, got {text!r}")
    return aus


def graph_aus(args: argparse.Namespace) -> tuple[int, ...]:
    """The AU graph's nodes: --aus, or the default list."""
    return tuple(args.aus) if getattr(args, "aus", None) else DEFAULT_AUS


def phase_list(text: str) -> list[str]:
    """'onset-apex,apex-offset' -> its phases (argparse type of --phases)."""
    try:
        return list(parse_phases(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def map_list(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (argparse type of --maps): distinct map columns, 1 = motion, 2 = motion_2, ..."""
    try:
        maps = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated map numbers such as 1,2,4, got {text!r}") from None
    if len(set(maps)) != len(maps) or not all(1 <= k <= 99 for k in maps):
        raise argparse.ArgumentTypeError(f"expected distinct map numbers from 1 to 99, got {text!r}")
    return maps


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (argparse type of --seeds)."""
    try:
        seeds = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and not negative, got {text!r}")
    return seeds


def holds_run(folder: Path) -> bool:
    """Whether `folder` holds a run; a --seeds parent whose first seed never started its folder
    (refused before training) does not, so the same command can simply be run again."""
    saved = folder / "args.yaml"
    if not saved.exists():
        return False
    try:
        record = read_yaml(saved)
    except (OSError, ValueError, yaml.YAMLError):
        return True
    return not (isinstance(record, dict) and record.get("seeds") and not any(folder.glob("seed*/args.yaml")))


def run_seeds(args: argparse.Namespace, info: DistInfo) -> int:
    """One full LOSO per seed in <output>/seed<N>/ (each a complete run folder), then the
    aggregate of their summaries in <output>/summary.json; a killed run resumes seed by seed."""
    parent = args.output
    if args.dry_run:
        return run(args, info)
    if info.is_main:
        if args.resume is None and holds_run(parent):
            raise UsageError(f"--output {parent} already holds a run; continue it with --resume {parent} "
                             "or choose another --output")
        parent.mkdir(parents=True, exist_ok=True)
        write_yaml(parent / "args.yaml", args_record(args))
    for seed in args.seeds:
        sub = copy.copy(args)
        sub.seed, sub.seeds, sub.output = seed, None, seed_folder(parent, seed)
        sub.resume = sub.output if (sub.output / "args.yaml").exists() else None
        if info.is_main:
            emit(f"seed {seed}: {sub.output}")
        run(sub, info)
        barrier(info)
    if info.is_main:
        summaries = {s: read_json(seed_folder(parent, s) / "summary.json") for s in args.seeds}
        aggregate = aggregate_seeds(summaries)
        write_json(parent / "summary.json", aggregate)
        print(format_seed_table(aggregate))
        print(f"results in {parent}")
    return 0


def report_pretrained(path: Path, cfg: ModelConfig) -> None:
    """Say how much of --pretrained fits this model before any fold starts (each fold loads it)."""
    try:
        loaded, total = load_pretrained(build_model(cfg), path)
    except (TrainingError, OSError, RuntimeError) as e:
        raise UsageError(f"--pretrained {path}: {e}") from None
    emit(f"pretrained: {loaded} of {total} tensors loaded from {path} (names and shapes match)")


def run_folds(mine: list[str], folds: list[str], data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings,
              args: argparse.Namespace, ckpt_dir: Path, device: torch.device, info: DistInfo, facts: RunFacts) -> None:
    """Train and test this rank's folds, skipping those with a result file (a resumed run)."""
    run_dir = args.output
    show_bars = sys.stderr.isatty() and info.is_main
    if args.folds_together > 1:
        groups = fold_groups(mine, data, settings, args.seed, args.folds_together)
        mine = [s for group in groups for s in group if len(group) == 1]   # single folds train alone
        for group in tqdm([g for g in groups if len(g) > 1], desc="fold groups", disable=not show_bars):
            run_group(group, data, cfg, settings, args, ckpt_dir, device, info, facts)
    for subject in tqdm(mine, desc="folds", disable=not show_bars, position=0):
        fold_file = fold_result_path(run_dir, subject)
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
            result = run_fold(subject, data, cfg, settings, args.seed, device, checkpoint_path(ckpt_dir, subject),
                              facts, on_epoch=on_epoch)
        except TrainingError as e:
            raise TrainingError(f"rank {info.rank}, fold {subject}: {e}") from None
        finally:
            bar.close()
        write_json(fold_file, result.to_dict())


def run_group(group: list[str], data: DatasetTensors, cfg: ModelConfig, settings: TrainSettings,
              args: argparse.Namespace, ckpt_dir: Path, device: torch.device, info: DistInfo, facts: RunFacts) -> None:
    """Train the folds of `group` together (fold_set), skipping it when every fold has a result."""
    pending = [s for s in group if not fold_result_path(args.output, s).exists()]
    if not pending:
        return

    def on_epoch(record: dict) -> None:
        append_jsonl(args.output / "log.jsonl", record)
        if record["fold"] == pending[-1]:
            emit(f"folds {', '.join(pending)} epoch {record['epoch']}/{args.epochs} {record['seconds']:.1f}s")

    try:
        results = run_fold_group(pending, data, cfg, settings, args.seed, device,
                                 [checkpoint_path(ckpt_dir, s) for s in pending], facts, on_epoch)
    except TrainingError as e:
        raise TrainingError(f"rank {info.rank}, folds {', '.join(pending)}: {e}") from None
    for result in results:
        write_json(fold_result_path(args.output, result.subject), result.to_dict())


def report(folds: list[str], data: DatasetTensors, cfg: ModelConfig, protocol: Protocol,
           args: argparse.Namespace, skipped: Sequence[str] = (), apex: dict | None = None) -> None:
    """Pool every fold's result file into the run folder's files and print the table.

    `skipped`: why each sample left out of the run was skipped; `apex`: how many apexes were
    spotted and how far from the annotated ones (data.apex.spotting_record); both recorded in summary.json.
    """
    run_dir = args.output
    missing = [s for s in folds if not fold_result_path(run_dir, s).exists()]
    if missing:
        raise TrainingError(f"folds without results: {', '.join(missing)}; no summary written")
    fold_results = [read_fold_result(fold_result_path(run_dir, s), s, data.indices({s}).tolist(), cfg.num_classes,
                                     args.epochs) for s in folds]
    extra = {"protocol": protocol.name, "model": cfg.arch, "folds": folds, "epochs": args.epochs,
             "selection": f"best of {args.val_subjects} validation subjects" if args.val_subjects else "last epoch",
             "model_config": asdict(cfg), "skipped": list(skipped), **({"apex": apex} if apex else {})}
    summary, fold_rows = write_results(run_dir, fold_results, data.labels.tolist(), data.subjects, data.names,
                                       protocol.classes, extra, data.datasets)
    log = run_dir / "log.jsonl"
    curves = epoch_curves(read_jsonl(log), skip_fold=FINAL_FOLD) if log.is_file() else {}
    if "train_loss" in curves:
        save_training_curves(curves, run_dir / "training_curves.png", title=f"mean over {len(folds)} folds")
    print(format_table(summary, fold_rows))
    print(f"results in {run_dir}")


def run_final_only(args: argparse.Namespace, dataset: DatasetSource, data: DatasetTensors,
                   cfg: ModelConfig, settings: TrainSettings, device: torch.device, info: DistInfo,
                   reading: dict) -> int:
    """--final-only: record the arguments and write the final model; one process does the work."""
    if info.is_main:
        if args.pretrained is not None:
            report_pretrained(args.pretrained, cfg)
        args.output.mkdir(parents=True, exist_ok=True)
        write_yaml(args.output / "args.yaml", args_record(args))
        write_final_model(args, dataset, data, cfg, settings, device, reading)
    return 0


def write_final_model(args: argparse.Namespace, dataset: DatasetSource, data: DatasetTensors,
                      cfg: ModelConfig, settings: TrainSettings, device: torch.device, reading: dict) -> None:
    """Train one model on every subject with the run's recipe and save <output>/model.pt (utils.model_file).

    reading: how the training maps were read (data.map_reading), which predict.py checks new maps against."""
    path = args.output / MODEL_FILE
    if args.resume is not None and path.is_file():
        emit(f"final model: {path} is already written")
        return
    if args.val_subjects:
        emit("note: the final model trains on every subject and keeps its last epoch (no --val-subjects)")

    def on_epoch(record: dict) -> None:
        append_jsonl(args.output / "log.jsonl", record)
        emit(f"final model epoch {record['epoch']}/{args.epochs} loss {record['train_loss']:.4f} "
             f"acc {record['train_acc']:.3f} {record['seconds']:.1f}s")

    trained = train_final(data, cfg, settings, args.seed, device, on_epoch)
    training = {"subjects": sorted(set(data.subjects)), "samples": trained.train_samples, "epochs": args.epochs,
                "seed": args.seed, "seconds": trained.seconds, "args": args_record(args)}
    flip_signs = tuple(data.flip_signs.flatten().tolist())
    atomic_torch_save(model_record(trained.model.state_dict(), cfg, dataset.protocol.classes, trained.adjacency,
                                   trained.motion_scale, flip_signs, model_preprocessing(args, dataset, reading),
                                   training), path)
    emit(f"final model: {path} ({trained.train_samples} samples, {len(training['subjects'])} subjects)")


def model_preprocessing(args: argparse.Namespace, dataset: DatasetSource, reading: dict) -> dict:
    """What made the inputs, as model.pt and fold checkpoints record it (utils.model_file)."""
    return dict(data_settings(args, dataset), center_maps=bool(getattr(args, "center_maps", False)),
                tta_flip=bool(args.tta_flip), maps=reading, map_columns=list(getattr(dataset, "maps", (1,))),
                **dataset.provenance())


def args_record(args: argparse.Namespace) -> dict:
    """The resolved arguments as plain values (for args.yaml and checkpoints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}


def saved_value_problem(action: argparse.Action, value: object) -> str | None:
    """Why `value`, read from args.yaml, cannot be the value of the flag `action`, or None."""
    if value is None:
        return None if action.default is None else "must not be empty"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                           argparse.BooleanOptionalAction)):
        kind, fits = "true or false", isinstance(value, bool)
    elif action.type in (int, float):
        kind = "an integer" if action.type is int else "a number"
        fits = isinstance(value, int if action.type is int else (int, float)) and not isinstance(value, bool)
    elif action.type not in (None, str, path_value):  # a parsed list (--seeds): its text must parse back to it
        kind = "a value of this flag"
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        try:
            fits = action.type(text) == value
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            fits = False
    else:  # paths, names, choices
        kind, fits = "text", isinstance(value, str) and (action.type is not path_value or bool(value.strip()))
    if not fits:
        return f"{value!r} is not {kind}"
    if action.choices is not None and value not in action.choices:
        return f"{value!r} is not one of {', '.join(map(str, action.choices))}"
    return None


def read_saved_args(parser: argparse.ArgumentParser, path: Path) -> dict:
    """A run folder's args.yaml, each value checked against its flag's type and choices."""
    try:
        saved = read_yaml(path)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UsageError(f"{path}: cannot be read ({error_text(e)})") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{path}: not a mapping of argument names to values")
    actions = {a.dest: a for a in parser._actions if a.dest != "help"}
    unknown = sorted(str(k) for k in saved if k not in actions)
    if unknown:
        raise UsageError(f"{path}: unknown key(s) {', '.join(unknown)}")
    for key, value in saved.items():
        problem = saved_value_problem(actions[key], value)
        if problem:
            raise UsageError(f"{path}: {key}: {problem}")
    return saved


def note_numeric_changes(saved: dict, args: argparse.Namespace, given: set[str], saved_file: Path) -> None:
    """On --resume: a note for each numeric runtime flag given with another value than the run's; a
    UsageError when the run's value cannot hold here (more threads than this machine has cores)."""
    for dest in sorted(NUMERIC_RUNTIME_FLAGS):
        flag, _low, high, *_ = NUMBER_RANGES[dest]
        before, now = saved.get(dest), getattr(args, dest)
        if dest in given and before is not None and before != now:
            emit(f"note: {flag} {now} differs from the run's {before}: the folds and final model trained from "
                 f"here on will not be bit-identical to an unbroken run's")
        elif dest not in given and isinstance(before, int) and before > high:
            raise UsageError(f"{saved_file}: the run used {flag} {before}, more than this machine's {high} cores; "
                             f"give {flag} N to continue with other numerics")


def resolve_threads(args: argparse.Namespace, info: DistInfo) -> None:
    """--threads 0 becomes the count this process uses, so args.yaml records it and --resume reuses it."""
    if not args.threads:
        args.threads = threads_per_process(info)


def resolve_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    args = parser.parse_args(argv)
    given = explicit_flags(parser, argv)
    if args.resume is not None:
        saved_file = args.resume / "args.yaml"
        if not saved_file.is_file():
            raise UsageError(f"--resume {args.resume}: no args.yaml there (not a run folder)")
        check_numbers(args, given & RUNTIME_FLAGS)  # flags given now are checked as flags
        saved = read_saved_args(parser, saved_file)
        kept_now = (RUNTIME_FLAGS - NUMERIC_RUNTIME_FLAGS) | ((RELOCATABLE_FLAGS | NUMERIC_RUNTIME_FLAGS) & given)
        note_numeric_changes(saved, args, given, saved_file)
        ignored = sorted(f for f in given - kept_now if str(saved.get(f)) != str(getattr(args, f)))
        if ignored:
            emit(f"note: resuming with the run's saved arguments; ignoring --{', --'.join(ignored)}")
        for key, value in saved.items():
            if key not in kept_now:
                setattr(args, key, Path(value) if key in PATH_FLAGS and value is not None else value)
        args.output = args.resume
        try:  # saved values pass the same checks as flags
            check_args(args)
        except UsageError as e:
            raise UsageError(f"{saved_file}: {e}") from None
        check_run_kind(args.resume, run_kind(args.seeds, args.final_only), saved_file)
        return args
    for key, value in PRESETS.get(args.preset, {}).items():
        if key not in given:
            setattr(args, key, value)
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
        resolve_threads(args, info)
        return run_seeds(args, info) if args.seeds else run(args, info)
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
