"""The entry scripts' command line: the parser and its flag groups, the named presets and the --demo
schedule, the range of every numeric flag, the arguments resolved and checked (with --resume, the run's
saved ones), and FLAG_FIELDS, the one table from flag to ModelConfig / TrainSettings field.

The dataclasses hold the defaults: a flag in FLAG_FIELDS takes its field's default (or the entry
script's, for the protocol's batch size, lr and epochs), and a new option is one field, one row,
one add_argument and one README line.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
from dataclasses import MISSING, fields
from datetime import datetime
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import yaml

from cli import CommandLineParser, UsageError, au_list, emit, map_list, path_value, phase_list, seed_list
from data.apex import APEX_MODES
from data.arrays import ModelArrays
from data.errors import MAX_MAP_SIZE
from data.inputs import default_cache_dir
from data.layout import LAYOUTS
from data.motion import MOTIONS
from data.phases import DEFAULT_PHASES, PHASES
from data.protocols import PROTOCOLS
from engine import TrainSettings
from models import ARCHS, MIN_IMG_SIZE, MOTION_ONLY, READOUTS, ModelConfig
from run_data import demo_release
from utils.distributed import DistInfo, threads_per_process
from utils.io import error_text, read_yaml
from utils.model_file import MODEL_FILE
from utils.run_state import check_run_kind, run_kind

PROJECT_ROOT = Path(__file__).resolve().parent
# Flags that may differ when a run is resumed: they change where or how fast it runs, not its results.
RUNTIME_FLAGS = {"resume", "device", "workers", "checkpoint_interval", "eval_batch_size", "compile", "threads"}
# Of those, the ones that change the numbers (float sums split over another count of threads): the run's
# saved value holds on --resume unless the flag is given again, and then a note says results will differ.
NUMERIC_RUNTIME_FLAGS = {"threads"}
PATH_FLAGS = {"raf_path", "sheet", "cache_dir", "output", "pretrained", "checkpoint_dir", "resume"}
# Flags that may be given again on --resume to point elsewhere (a full or unwritable disk); else the saved value holds.
RELOCATABLE_FLAGS = {"checkpoint_dir", "cache_dir"}
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
# --demo: the schedule that trains the demo release (run_data.DEMO_RELEASE) in minutes on 2 CPU cores.
DEMO_SETTINGS = dict(epochs=12, img_size=64, embed_dim=128, vit_depth=1)
# Named recipes: their flag values apply unless the flag is given. flow28 is the recommended
# setting for 28x28 flow-map folders (STSTNet style); README "Real micro-expressions" says how
# it was chosen (on training data and seeds, never on the LOSO test subjects).
PRESETS: dict[str, dict] = {
    "flow28": dict(motion="flow", img_size=28, width=0.25, vit_depth=1, epochs=40, lr=0.001, optimizer="adamw",
                   weight_decay=0.01, class_balance=True, dropout=0.3, center_maps=True, batch_size=32, shift=2,
                   tta_flip=True),
}


class FlagField(NamedTuple):
    """A row of FLAG_FIELDS: the flag (by its argparse dest) that sets one field of a config."""
    dest: str
    config: type
    field: str
    negate: bool = False     # a --no-X flag: given, it switches the field off


# The one table from flag to config field: model_config and train_settings build the configs from it, and
# build_parser gives each of these flags its field's default. The fields left out are the dataset's
# (num_classes, maps), the device's (amp) or fixed sizes of the network.
FLAG_FIELDS: tuple[FlagField, ...] = (
    FlagField("model", ModelConfig, "arch"),
    FlagField("img_size", ModelConfig, "img_size"),
    FlagField("no_pos", ModelConfig, "use_pos", negate=True),
    FlagField("no_gcn", ModelConfig, "use_gcn", negate=True),
    FlagField("no_aa", ModelConfig, "use_aa", negate=True),
    FlagField("no_sa", ModelConfig, "use_sa", negate=True),
    FlagField("aus", ModelConfig, "aus"),
    FlagField("au_loss_weight", ModelConfig, "au_loss_weight"),
    FlagField("label_smoothing", ModelConfig, "label_smoothing"),
    FlagField("readout", ModelConfig, "readout"),
    FlagField("linear_path", ModelConfig, "linear_path"),
    FlagField("width", ModelConfig, "width"),
    FlagField("dropout", ModelConfig, "dropout"),
    FlagField("embed_dim", ModelConfig, "embed_dim"),
    FlagField("vit_depth", ModelConfig, "vit_depth"),
    FlagField("vit_heads", ModelConfig, "vit_heads"),
    FlagField("epochs", TrainSettings, "epochs"),
    FlagField("batch_size", TrainSettings, "batch_size"),
    FlagField("lr", TrainSettings, "lr"),
    FlagField("weight_decay", TrainSettings, "weight_decay"),
    FlagField("optimizer", TrainSettings, "optimizer"),
    FlagField("eval_batch_size", TrainSettings, "eval_batch_size"),
    FlagField("val_subjects", TrainSettings, "val_subjects"),
    FlagField("report_oracle", TrainSettings, "report_oracle"),
    FlagField("checkpoint_interval", TrainSettings, "checkpoint_interval"),
    FlagField("pretrained", TrainSettings, "pretrained"),
    FlagField("class_balance", TrainSettings, "class_balance"),
    FlagField("logit_adjust", TrainSettings, "logit_adjust"),
    FlagField("compile", TrainSettings, "compile"),
    FlagField("shift", TrainSettings, "shift"),
    FlagField("mixup", TrainSettings, "mixup"),
    FlagField("erase", TrainSettings, "erase"),
    FlagField("tta_flip", TrainSettings, "tta_flip"),
)


def build_parser(protocol: str, defaults: dict) -> argparse.ArgumentParser:
    """The entry scripts' one parser; `defaults` are the protocol's batch size, lr and epochs."""
    p = CommandLineParser(description=f"AM-GCN, leave-one-subject-out on CASME II ({protocol} protocol).",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_data_flags(p.add_argument_group("data"), protocol)
    add_training_flags(p.add_argument_group("training"))
    add_model_flags(p.add_argument_group("model"))
    add_output_flags(p.add_argument_group("output"))
    set_field_defaults(p, defaults)
    for action in p._actions:  # every path flag refuses an empty value
        if action.type is Path:
            action.type = path_value
    return p


def field_default(row: FlagField, defaults: dict) -> object:
    """The default of the flag in `row`: its field's, unless `defaults` names the field."""
    default = defaults.get(row.field, next(f.default for f in fields(row.config) if f.name == row.field))
    if default is MISSING:
        raise KeyError(f"{row.config.__name__}.{row.field} has no default; the entry script must give one")
    if isinstance(default, tuple):
        return None   # a list flag left out stays None in args.yaml: the field's default, which its help names
    return (not default) if row.negate else default


def set_field_defaults(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """Each FLAG_FIELDS flag's default from its dataclass field (see field_default)."""
    actions = {action.dest: action for action in parser._actions}
    for row in FLAG_FIELDS:
        actions[row.dest].default = field_default(row, defaults)


def add_data_flags(g: argparse._ArgumentGroup, protocol: str) -> None:
    g.add_argument("--raf_path", "--raf-path", type=Path, help="CASME II release folder (sheet + frame folders)")
    g.add_argument("--sheet", type=Path, help="annotation sheet, when it is not inside --raf_path")
    g.add_argument("--layout", choices=LAYOUTS, help="frame folder layout (detected when omitted)")
    g.add_argument("--protocol", default=protocol, choices=sorted(PROTOCOLS), help="class protocol")
    g.add_argument("--img-size", type=int, help="face size fed to the network (px)")
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


def add_training_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--batch_size", "--batch-size", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--epochs", type=int, help="fixed schedule; the last epoch is tested")
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--optimizer", choices=("adam", "adamw", "sgd"))
    g.add_argument("--class-balance", action=argparse.BooleanOptionalAction,
                   help="weight the loss by inverse class frequency of each fold's training set")
    g.add_argument("--logit-adjust", type=float, metavar="TAU",
                   help="add TAU * log(class prior of each fold's training set) to the logits in the loss "
                        "only: rare classes keep a wider training margin (1: the usual value; 0: off)")
    g.add_argument("--tta-flip", action=argparse.BooleanOptionalAction,
                   help="test each sample on its map and its mirror image, class probabilities averaged")
    g.add_argument("--label-smoothing", type=float, metavar="EPS",
                   help="train the emotion head towards (1 - EPS) on the label and EPS spread over all classes")
    g.add_argument("--shift", type=int,
                   help="move each training motion map by up to N pixels (face alignment jitter)")
    g.add_argument("--mixup", type=float,
                   help="mix pairs of training samples with Beta(A, A) weights, targets alike (0: off)")
    g.add_argument("--erase", type=float, metavar="P",
                   help="with probability P a training motion map loses one square (a quarter to half its side) "
                        "to zero, i.e. no motion (0: off)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--seeds", type=seed_list,
                   help="one full LOSO per seed, e.g. 0,1,2, in <output>/seed<N>/, then mean and sd over seeds")
    g.add_argument("--folds", help="held-out subjects to run, e.g. sub01,sub05 or 1,5 (default: all)")
    g.add_argument("--val-subjects", type=int,
                   help="hold out K training subjects per fold and test the epoch best on them")
    g.add_argument("--report-oracle", action="store_true",
                   help="also report the test-selected best-epoch figure (optimistic; never the result)")
    g.add_argument("--pretrained", type=Path, help="local weights to start from (matching names and shapes)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=int, default=0,
                   help="CPU threads per process (0: the machine's cores shared among local processes); "
                        "bit-identical results need the same value")
    g.add_argument("--eval-batch-size", type=int)
    g.add_argument("--folds-together", type=int, default=1,
                   help="train up to N folds whose epochs hold as many batches in one vmapped step "
                        "(same results within float tolerance; fills a GPU, saves overhead on CPUs)")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (pays on GPUs, not on CPUs)")


def add_model_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--model", choices=ARCHS,
                   help="mmnet = position + motion only; linear = one linear layer on the motion map (the floor); "
                        "ststnet = the shallow three-stream flow CNN of Liong et al. (2019)")
    g.add_argument("--no-pos", action="store_true", help="drop the position (ViT) branch")
    g.add_argument("--no-gcn", action="store_true", help="drop the AU graph branch (and AA)")
    g.add_argument("--no-aa", action="store_true", help="drop the AU attention module")
    g.add_argument("--no-sa", action="store_true", help="drop the stacked attention module")
    g.add_argument("--au-loss-weight", type=float, help="weight of the auxiliary AU loss")
    g.add_argument("--aus", type=au_list,
                   help="the AU graph's nodes, e.g. 1,2,4,7,12 (default: "
                        + ",".join(map(str, ModelConfig.aus)) + ", the most frequent AUs of CASME II)")
    g.add_argument("--readout", choices=READOUTS,
                   help="what the AU graph gives the classifier: the mean of its node states, or every node's "
                        "state side by side (nodes: which AU region moved)")
    g.add_argument("--linear-path", action="store_true",
                   help="add a linear read-out of the whole motion map to the logits (the linear floor as a path "
                        "inside AM-GCN or MMNet)")
    g.add_argument("--width", type=float,
                   help="scales the motion branch's channels (128, 128, 256, 512 at 1.0)")
    g.add_argument("--dropout", type=float, help="dropout before the classifier and in the graph")
    g.add_argument("--embed-dim", type=int,
                   help="width of the position branch's ViT (default: the motion width at 224 px, a quarter below)")
    g.add_argument("--vit-depth", type=int, help="ViT blocks in the position branch")
    g.add_argument("--vit-heads", type=int, help="attention heads per ViT block")


def add_output_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--output", type=Path, help="run folder (default runs/<protocol>-<model>-<time>)")
    g.add_argument("--checkpoint-dir", type=Path, default=PROJECT_ROOT / "checkpoints",
                   help="fold checkpoints go to <checkpoint-dir>/<run name>/")
    g.add_argument("--checkpoint-interval", type=float,
                   help="seconds between fold checkpoints (the last epoch is always saved)")
    g.add_argument("--resume", type=Path, help="run folder of a killed run to finish")
    g.add_argument("--final", action="store_true",
                   help=f"after the LOSO, train one model on every subject and write <output>/{MODEL_FILE}")
    g.add_argument("--final-only", action="store_true", help=f"only train and write <output>/{MODEL_FILE} (no LOSO)")


def resolve_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """The flags of `argv` with a preset, --demo or a resumed run's saved arguments applied, then checked."""
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


def explicit_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> set[str]:
    """Destinations of the flags the user actually typed."""
    probe = copy.deepcopy(parser)
    for action in probe._actions:
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


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


def check_args(args: argparse.Namespace) -> None:
    """UsageError naming the flag for a value, or a combination of flags, that cannot work."""
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


def resolve_threads(args: argparse.Namespace, info: DistInfo) -> None:
    """--threads 0 becomes the count this process uses, so args.yaml records it and --resume reuses it."""
    if not args.threads:
        args.threads = threads_per_process(info)


def args_record(args: argparse.Namespace) -> dict:
    """The resolved arguments as plain values (for args.yaml and checkpoints)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}

def field_values(args: argparse.Namespace, config: type) -> dict:
    """The fields of `config` that the flags set (FLAG_FIELDS); a flag left at None leaves its field's default."""
    values = {}
    for row in FLAG_FIELDS:
        value = getattr(args, row.dest)
        if row.config is config and value is not None:
            values[row.field] = (not value) if row.negate else tuple(value) if isinstance(value, list) else value
    return values


def model_config(args: argparse.Namespace, num_classes: int, arrays: ModelArrays) -> ModelConfig:
    """The network of the flags, with the branches the dataset cannot feed switched off."""
    values = field_values(args, ModelConfig)
    if arrays.face is None and values["use_pos"] and values["arch"] not in MOTION_ONLY:
        emit("notice: the dataset has no faces; the position branch is switched off")
        values["use_pos"] = False
    if arrays.aus is None and values["use_gcn"] and values["arch"] == "amgcn":
        emit("notice: the dataset has no AU labels; the AU graph uses the identity adjacency "
             "(no co-occurrence known) and the AU loss is off")
        values["au_loss_weight"] = 0.0
    return ModelConfig(num_classes=num_classes, maps=motion_map_count(arrays), **values)


def train_settings(args: argparse.Namespace, device: torch.device) -> TrainSettings:
    """The training schedule of the flags; bf16 autocast on CUDA only."""
    return TrainSettings(amp=device.type == "cuda", **field_values(args, TrainSettings))


def motion_map_count(arrays: ModelArrays) -> int:
    """How many 3-channel maps a sample stacks (1 for inputs that bring no arrays yet)."""
    motion = getattr(arrays, "motion", None)
    return motion.shape[1] // 3 if motion is not None else 1


def graph_aus(args: argparse.Namespace) -> tuple[int, ...]:
    """The AU graph's nodes: --aus, or the default list."""
    return tuple(args.aus) if getattr(args, "aus", None) else ModelConfig.aus


def select_folds(spec: str | None, subjects: list[str]) -> list[str]:
    """The held-out subjects of --folds (every subject without it); UsageError for one without samples."""
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


def folds_with_samples(folds: list[str], subjects: list[str], requested: bool) -> list[str]:
    """The folds left once unreadable samples are skipped; a --folds subject that lost all is an error."""
    present = set(subjects)
    lost = [s for s in folds if s not in present]
    if lost and requested:
        raise UsageError(f"--folds: every sample of {', '.join(lost)} was skipped (see the warnings above)")
    return [s for s in folds if s in present]
