"""How fast the toolkit trains here, and where the time goes.

    python -m benchmarks.bench [--quick] [--device auto|cpu|cuda] [--img-sizes 224,112]
                               [--batch-size 32] [--repeats N] [--memory-format F] [--json PATH]
                               [--release DIR] [--motion-maps DIR] [--cache-dir DIR]

Every figure goes through the code a run uses: the entry scripts' command line and
defaults (options.build_parser, options.resolve_args), the dataset and its arrays
(run_data.open_dataset, run_data.model_arrays: a release or a motion-map folder through
data.arrays.source_arrays), options.model_config,
ModelArrays.au_targets, engine.DatasetTensors.from_arrays and options.train_settings; then
engine.fold_statistics, engine.fresh_model, engine.train_one_epoch, fold_set.run_fold and
engine.evaluate. One run measures, on this machine:
  * the fp32 GEMM peak (large square matmuls, median of repeats);
  * training steps of AM-GCN and the MMNet baseline on a synthetic release of CASME II's
    size at each --img-sizes: train_one_epoch on a one-batch index set, so each call is one
    optimiser step; the achieved GFLOP/s from models.count_flops (training ~= 3x forward)
    and its ratio to the GEMM peak timed in the same rounds;
  * evaluation throughput (engine.evaluate);
  * one real fold epoch (fold_set.run_fold) at --epoch-size: the arrays built uncached and
    cached, the upload, the epoch, and the batch gather (augment.training_batches) in it;
  * the flow-sized case: a 3-class motion-map folder (144 samples, 24 subjects, 28x28 flow
    maps with faces) trained as `CASME2_3.py --img-size 28 --width 0.25 --vit-depth 1
    --batch-size 32 --motion flow`: seconds per epoch (median over run_fold's epochs after
    the first), the projected full LOSO and each branch's share of the FLOPs;
  * AM-GCN's forward FLOPs per branch at 28, 48, 112 and 224 px (models.flops_by_size);
  * the projected wall time of a full 5-class LOSO.

The synthetic release and motion-map folder are generated once into --cache-dir. Medians
of repeats are reported: other processes may share the machine. Compare figures only
within one run (ratios) or across runs on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

if __package__ in (None, ""):  # `python benchmarks/bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from CASME2_3 import DEFAULTS as THREE_CLASS_DEFAULTS  # noqa: E402
from CASME2_5 import DEFAULTS as FIVE_CLASS_DEFAULTS  # noqa: E402
from cli import UsageError, positive_int, print_error, resolve_device  # noqa: E402
from data.arrays import ModelArrays  # noqa: E402
from data.errors import DataError  # noqa: E402
from data.inputs import default_cache_dir  # noqa: E402
from data.protocols import get_protocol  # noqa: E402
from data.synthetic import generate_release, write_motion_map_folder  # noqa: E402
from augment import training_batches  # noqa: E402
from engine import (DatasetTensors, TrainSettings, evaluate, fold_seed, fold_statistics, fold_subjects,  # noqa: E402
                    fresh_model, make_optimizer, train_one_epoch)
from fold_set import run_fold  # noqa: E402
from utils.checkpoint import RunFacts  # noqa: E402
from models import BRANCHES, ModelConfig, build_model, count_flops  # noqa: E402
from models.flops import branch_share_table, flops_by_size, input_sizes  # noqa: E402
from options import args_record, build_parser, model_config, resolve_args, train_settings  # noqa: E402
from run_data import model_arrays, open_dataset  # noqa: E402
from utils.distributed import DistInfo, threads_per_process  # noqa: E402

# A release of CASME II's size: 26 subjects x 10 clips, 258 of them in the 5-class protocol.
CASME_RELEASE = dict(subjects=26, per_subject=10, layout="cropped", frames="key")
# The real-flow setting: 24 subjects x 6 clips of the 5-class emotions that the 3-class protocol keeps (144 samples).
FLOW_RELEASE = dict(subjects=24, per_subject=6, layout="cropped", frames="key",
                    emotions=tuple(c for c in get_protocol("5class").classes if get_protocol("3class").class_of(c)))
FLOW_MAP_SIZE = 28
FLOW_FLAGS = ["--img-size", "28", "--width", "0.25", "--vit-depth", "1", "--batch-size", "32", "--motion", "flow"]
FLOP_SIZES = "28,48,112,224"


# --------------------------------------------------------------------------- helpers

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of each of `repeats` calls of fn, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    return f"median of {len(xs)}, min {min(xs):.3f} s, max {max(xs):.3f} s"


def hms(seconds: float) -> str:
    h, rem = divmod(int(round(seconds)), 3600)
    return f"{h}h{rem // 60:02d}m" if h else f"{rem // 60}m{rem % 60:02d}s"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for name, mod in (("timm", "timm"), ("opencv", "cv2")):
        try:
            out[name] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional module is reported, not fatal
            out[name] = "missing"
    return out


def shares(flops: dict[str, int]) -> dict[str, float]:
    """Each branch's fraction of the total forward FLOPs."""
    return {b: flops[b] / flops["total"] for b in BRANCHES}


_FLOPS: dict[tuple, int] = {}


def forward_flops(cfg: ModelConfig) -> int:
    """Forward FLOPs of one sample through the model `cfg` describes (cached per configuration)."""
    key = tuple(sorted(vars(cfg).items()))
    if key not in _FLOPS:
        torch.manual_seed(0)
        _FLOPS[key] = count_flops(build_model(cfg), cfg.img_size)["total"]
    return _FLOPS[key]


# --------------------------------------------------------------------------- inputs, as a run builds them

def synthetic_release(root: Path, spec: dict) -> Path:
    """A synthetic release written once under `root` (a .complete marker says it is whole)."""
    if not (root / ".complete").exists():
        generate_release(root, **spec)
        (root / ".complete").touch()
    return root


def flow_map_folder(root: Path) -> Path:
    """The flow-sized motion-map folder (3 classes, 28x28 flow maps and faces), written once."""
    if not (root / ".complete").exists():
        release = synthetic_release(root.with_name(root.name + "-release"), FLOW_RELEASE)
        write_motion_map_folder(release, root, get_protocol("3class"), img_size=FLOW_MAP_SIZE, kind="flow",
                                cache_dir=root.with_name(root.name + "-cache"))
        (root / ".complete").touch()
    return root


@dataclass
class RunInputs:
    """What main.run holds when its first fold starts."""
    args: argparse.Namespace
    arrays: ModelArrays
    cfg: ModelConfig
    data: DatasetTensors
    settings: TrainSettings
    device: torch.device


def run_args(dataset: Path, protocol: str, flags: list[str]) -> argparse.Namespace:
    """The arguments of the entry script of `protocol` (CASME2_5.py or CASME2_3.py) for `flags`."""
    defaults = THREE_CLASS_DEFAULTS if protocol == "3class" else FIVE_CLASS_DEFAULTS
    return resolve_args(build_parser(protocol, defaults), ["--raf_path", str(dataset), *flags])


def run_arrays(args: argparse.Namespace) -> ModelArrays:
    """The arrays main.run trains on: a release's or a motion-map folder's."""
    return model_arrays(args, open_dataset(args, get_protocol(args.protocol)), DistInfo())


def run_inputs(args: argparse.Namespace, arrays: ModelArrays) -> RunInputs:
    """main.run's steps from the arrays to the device tensors and the schedule."""
    device = resolve_device(args.device, DistInfo())
    cfg = model_config(args, len(get_protocol(args.protocol).classes), arrays)
    au, au_known = arrays.au_targets(cfg.aus)
    data = DatasetTensors.from_arrays(arrays.motion, arrays.face, arrays.labels, au, arrays.subjects,
                                      arrays.names, device, cfg.grid, flip_signs=arrays.flip_signs,
                                      au_known=au_known, datasets=arrays.datasets)
    return RunInputs(args, arrays, cfg, data, train_settings(args, device), device)


def first_fold(run: RunInputs) -> tuple[str, torch.Tensor]:
    """The first held-out subject and the indices its fold trains on (fold_set.run_fold's choice)."""
    subject = sorted(set(run.data.subjects))[0]
    fit, _ = fold_subjects(subject, run.data.subjects, run.settings.val_subjects, fold_seed(run.args.seed, subject))
    return subject, run.data.indices(set(fit))


# --------------------------------------------------------------------------- measurements

def make_gemm(device: torch.device, n: int) -> Callable[[], object]:
    a, b, c = (torch.randn(n, n, device=device) for _ in range(3))
    return lambda: torch.mm(a, b, out=c)


def gemm_peak(device: torch.device, sizes: list[int], repeats: int) -> dict:
    """Best median fp32 GFLOP/s over square matmuls of the given sizes."""
    rows = {}
    for n in sizes:
        times = timed(make_gemm(device, n), device, repeats)
        rows[n] = 2 * n ** 3 / med(times) / 1e9
        print(f"  gemm fp32 {n}x{n}: {rows[n]:8.1f} GFLOP/s ({spread(times)})", flush=True)
    return {"sizes": rows, "peak": max(rows.values())}


def training_step(run: RunInputs, memory_format: torch.memory_format) -> Callable[[], object]:
    """One optimiser step of the first fold's model: train_one_epoch on one batch of its samples."""
    subject, train_idx = first_fold(run)
    adjacency, motion_scale, classes = fold_statistics(run.data, train_idx, run.cfg, run.settings)
    model = fresh_model(run.cfg, run.settings, adjacency, fold_seed(run.args.seed, subject), run.device)
    model = model.to(memory_format=memory_format)  # the engine's channels_last unless told otherwise
    optimizer = make_optimizer(run.settings.optimizer, model.parameters(), run.settings.lr, run.settings.weight_decay)
    batch = train_idx[:run.settings.batch_size]
    generator = torch.Generator().manual_seed(0)
    return lambda: train_one_epoch(model, run.data, batch, motion_scale, optimizer, run.cfg, run.settings,
                                   generator, run.device, classes)


def train_round_robin(release: Path, size: int, flags: list[str], repeats: int, gemm_n: int,
                      memory_format: torch.memory_format) -> tuple[list[dict], dict[str, RunInputs]]:
    """Optimiser steps of AM-GCN and MMNet at `size` px, interleaved with a GEMM.

    Every round times one GEMM, one AM-GCN step and one MMNet step back to back, so the
    ratios of a round share the machine's load at that moment; the medians of the
    per-round ratios are reported. Returns the rows and each model's inputs.
    """
    runs = {}
    arrays = None
    for arch in ("amgcn", "mmnet"):
        args = run_args(release, "5class", [*flags, "--img-size", str(size), "--model", arch])
        arrays = arrays or run_arrays(args)
        runs[arch] = run_inputs(args, arrays)
        runs[arch].data.motion = runs[arch].data.motion.contiguous(memory_format=memory_format)
    device = runs["amgcn"].device
    steps = {arch: training_step(run, memory_format) for arch, run in runs.items()}
    gemm = make_gemm(device, gemm_n)
    warmup = 2 if device.type == "cuda" else 1
    times: dict[str, list[float]] = {"gemm": [], "amgcn": [], "mmnet": []}
    for r in range(warmup + repeats):
        for name, fn in (("gemm", gemm), ("amgcn", steps["amgcn"]), ("mmnet", steps["mmnet"])):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    gemm_rate = [2 * gemm_n ** 3 / t / 1e9 for t in times["gemm"]]
    out = []
    for arch, run in runs.items():
        batch = run.settings.batch_size
        rates = [3 * forward_flops(run.cfg) * batch / t / 1e9 for t in times[arch]]
        out.append({"arch": arch, "img_size": size, "batch": batch, "step_s": med(times[arch]),
                    "times": times[arch], "samples_per_s": batch / med(times[arch]), "gflops": med(rates),
                    "of_peak": med([a / g for a, g in zip(rates, gemm_rate)]),
                    "round_gemm_gflops": med(gemm_rate),
                    "vs_mmnet": med([a / m for a, m in zip(times[arch], times["mmnet"])])})
    return out, runs


def eval_throughput(run: RunInputs, n: int, repeats: int) -> dict:
    """engine.evaluate over the release's first `n` samples, with a fresh model of the first fold."""
    subject, train_idx = first_fold(run)
    adjacency, motion_scale, _ = fold_statistics(run.data, train_idx, run.cfg, run.settings)
    model = fresh_model(run.cfg, run.settings, adjacency, fold_seed(run.args.seed, subject), run.device)
    idx = torch.arange(min(n, len(run.data.labels)), device=run.device)
    times = timed(lambda: evaluate(model, run.data, idx, motion_scale, run.settings, run.device), run.device, repeats)
    n = len(idx)
    return {"arch": run.cfg.arch, "img_size": run.cfg.img_size, "n": n, "seconds": med(times),
            "samples_per_s": n / med(times), "gflops": forward_flops(run.cfg) * n / med(times) / 1e9}


def fold_epochs(run: RunInputs, checkpoint_dir: Path) -> tuple[list[float], int]:
    """fold_set.run_fold on the first fold: each epoch's seconds (training; no validation) and its training samples."""
    subject, train_idx = first_fold(run)
    seconds: list[float] = []
    run_fold(subject, run.data, run.cfg, run.settings, run.args.seed, run.device, checkpoint_dir / f"{subject}.pt",
             RunFacts([], {}, args_record(run.args)), on_epoch=lambda record: seconds.append(record["seconds"]))
    return seconds, len(train_idx)


def real_epoch(release: Path, flags: list[str], size: int, cache_dir: Path) -> dict:
    """Data preparation versus compute for one LOSO epoch on the CASME II-size release."""
    args = run_args(release, "5class", [*flags, "--img-size", str(size), "--epochs", "1"])
    out: dict = {"img_size": size}
    with tempfile.TemporaryDirectory(prefix="amgcn-bench-") as tmp:
        args.cache_dir = Path(tmp) / "cache"
        t0 = time.perf_counter()
        run_arrays(args)
        out["arrays_uncached_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        arrays = run_arrays(args)
        out["arrays_cached_s"] = time.perf_counter() - t0
        args.cache_dir = cache_dir
        t0 = time.perf_counter()
        run = run_inputs(args, arrays)
        sync(run.device)
        out["upload_s"] = time.perf_counter() - t0
        seconds, out["train_samples"] = fold_epochs(run, Path(tmp))
    out["epoch_s"] = seconds[0]
    out["samples"], out["subjects"] = len(arrays.labels), len(set(arrays.subjects))

    # The epoch's batches (random order, mirroring, scaling) without the model.
    _, train_idx = first_fold(run)
    _, motion_scale, _ = fold_statistics(run.data, train_idx, run.cfg, run.settings)

    def gather() -> None:
        for _ in training_batches(run.data, train_idx, motion_scale, run.settings.batch_size,
                                  torch.Generator().manual_seed(0), run.device):
            pass

    out["gather_s"] = med(timed(gather, run.device, 3))
    out["gather_share"] = out["gather_s"] / out["epoch_s"]
    out["arrays_cached_share"] = out["arrays_cached_s"] / out["epoch_s"]
    return out


def flow_case(folder: Path, flags: list[str], epochs: int, peak: float) -> dict:
    """Seconds per epoch at the real-flow setting (median of `epochs` after a warm-up one), the
    full LOSO they imply and the branches' FLOP shares."""
    args = run_args(folder, "3class", [*flags, *FLOW_FLAGS, "--epochs", str(1 + epochs)])
    run = run_inputs(args, run_arrays(args))
    with tempfile.TemporaryDirectory(prefix="amgcn-bench-") as tmp:
        seconds, train_samples = fold_epochs(run, Path(tmp))
    per_epoch = med(seconds[1:])  # the first epoch warms up
    folds, epochs = len(set(run.data.subjects)), THREE_CLASS_DEFAULTS["epochs"]
    flops = count_flops(build_model(run.cfg), run.cfg.img_size)
    gflops = 3 * flops["total"] * train_samples / per_epoch / 1e9
    return {"samples": len(run.data.labels), "subjects": folds, "classes": run.cfg.num_classes,
            "img_size": run.cfg.img_size, "width": run.cfg.width, "vit_depth": run.cfg.vit_depth,
            "batch": run.settings.batch_size, "train_samples": train_samples, "epoch_times": seconds,
            "epoch_s": per_epoch, "folds": folds, "epochs": epochs, "loso_s": folds * epochs * per_epoch,
            "forward_flops": flops, "flop_shares": shares(flops), "gflops": gflops, "of_peak": gflops / peak}


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats, 224 px steps only, epoch at 112 px")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--img-sizes", type=input_sizes, default=None,
                    help="comma-separated training sizes (default 224,112; quick: 224)")
    ap.add_argument("--batch-size", type=positive_int, default=32, help="batch of the 5-class cases (the flow case uses 32)")
    ap.add_argument("--repeats", type=positive_int, default=None,
                    help="timed training steps per model (default 3; quick 2)")
    ap.add_argument("--flow-epochs", type=positive_int, default=None,
                    help="timed epochs of the flow case, after one warm-up epoch (default 5; quick 3)")
    ap.add_argument("--epoch-size", type=positive_int, default=None, help="image size of the real epoch (default 224; quick 112)")
    ap.add_argument("--no-epoch", action="store_true", help="skip the real-epoch measurement")
    ap.add_argument("--flop-sizes", type=input_sizes, default=FLOP_SIZES, help="input sizes of the per-branch FLOP table")
    ap.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: as a run chooses)")
    ap.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
                    help="layout of the training-step models and inputs (the engine uses channels_last; "
                         "contiguous shows what it gains)")
    ap.add_argument("--release", type=Path,
                    help="CASME II release to train on (default: a synthetic one of CASME II's size, made once)")
    ap.add_argument("--motion-maps", type=Path,
                    help="motion-map folder of the flow case (default: a synthetic 3-class one, made once)")
    ap.add_argument("--cache-dir", type=Path, default=None,
                    help=f"where the synthetic data and the preprocessed arrays go (default {default_cache_dir()})")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return ap.parse_args(argv)


def print_env(device: torch.device) -> dict:
    env = {"device": str(device), "threads": torch.get_num_threads(), "cpu": cpu_model(),
           "cpu_cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), **versions()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    print("== environment")
    for k, v in env.items():
        print(f"  {k}: {v}")
    return env


def print_train_rows(rows: list[dict]) -> None:
    for r in rows:
        print(f"  {r['arch']:<6} {r['img_size']:>3} px: {r['step_s']:.3f} s/step, {r['samples_per_s']:7.1f} samples/s, "
              f"{r['gflops']:7.1f} GFLOP/s ({spread(r['times'])})", flush=True)
    a = rows[0]
    print(f"  AM-GCN at {a['img_size']} px: {a['of_peak']:.2f} of the GEMM peak measured in the same rounds "
          f"({a['round_gemm_gflops']:.1f} GFLOP/s); AM-GCN / MMNet step time: {a['vs_mmnet']:.2f}x "
          f"(medians of per-round ratios)", flush=True)


def print_epoch(e: dict, device: torch.device) -> None:
    print(f"  {e['samples']} samples, {e['subjects']} subjects; the first fold trains on {e['train_samples']}")
    print(f"  arrays (build_inputs + motion) uncached: {e['arrays_uncached_s']:.2f} s   cached: "
          f"{e['arrays_cached_s']:.2f} s   upload to {device}: {e['upload_s']:.2f} s")
    print(f"  one training epoch: {e['epoch_s']:.2f} s")
    print(f"  batch gather inside the epoch: {e['gather_s']:.3f} s = {100 * e['gather_share']:.2f}% of the epoch")
    print(f"  arrays (cached) = {100 * e['arrays_cached_share']:.1f}% of one epoch, once per run "
          f"(uncached: {100 * e['arrays_uncached_s'] / e['epoch_s']:.1f}%)")


def print_flow(f: dict) -> None:
    print(f"  {f['samples']} samples, {f['subjects']} subjects, {f['classes']} classes, {f['img_size']} px; "
          f"width {f['width']}, ViT depth {f['vit_depth']}, batch {f['batch']}; fold trains on {f['train_samples']}")
    print(f"  seconds per epoch: {f['epoch_s']:.3f} ({spread(f['epoch_times'][1:])}, after one warm-up epoch)")
    print(f"  training: {f['gflops']:.2f} GFLOP/s = {f['of_peak']:.3f} of the GEMM peak")
    print(f"  projected full LOSO: {f['folds']} folds x {f['epochs']} epochs x {f['epoch_s']:.3f} s = "
          f"{hms(f['loso_s'])}")
    print(f"  forward {f['forward_flops']['total'] / 1e6:.2f} MFLOPs/sample; share per branch: "
          + ", ".join(f"{b} {100 * s:.1f}%" for b, s in f["flop_shares"].items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run_benchmark(args)
    except (UsageError, DataError) as e:  # bad flags or data: one line, as the entry scripts say it
        print_error(e)
        return 2


def measure_steps(release: Path, sizes: list[int], step_flags: list[str], repeats: int, gemm_n: int,
                  device: torch.device, args: argparse.Namespace) -> tuple[list[dict], list[dict]]:
    """(training-step rows of every size, evaluation rows of the first size), printed as they come."""
    memory_format = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[args.memory_format]
    print(f"== training step (engine.train_one_epoch on one batch of {args.batch_size}, Adam"
          f"{', bf16 autocast' if device.type == 'cuda' else ', fp32'}, {args.memory_format})", flush=True)
    train, evals = [], []
    n_eval = 256 if device.type == "cuda" else 64
    for size in sizes:
        rows, runs = train_round_robin(release, size, step_flags, repeats, gemm_n, memory_format)
        train += rows
        print_train_rows(rows)
        if size == sizes[0]:
            evals = [eval_throughput(run, n_eval, repeats) for run in runs.values()]
    print("== evaluation (engine.evaluate)", flush=True)
    for r in evals:
        print(f"  {r['arch']:<6} {r['img_size']:>3} px: {r['samples_per_s']:7.1f} samples/s "
              f"({r['n']} samples in {r['seconds']:.3f} s, {r['gflops']:.1f} GFLOP/s)")
    return train, evals


def project_loso(train_rows: list[dict], epoch: dict | None, epoch_size: int, batch_size: int) -> dict:
    """The full 5-class LOSO's projected seconds, from the measured epoch and from the step time; printed."""
    folds, epochs = CASME_RELEASE["subjects"], FIVE_CLASS_DEFAULTS["epochs"]
    print(f"== projected full 5-class LOSO ({folds} folds x {epochs} epochs, 224 px, batch {batch_size})")
    projection = {}
    if epoch is not None and epoch_size == 224:
        projection["from_epoch_s"] = epoch["epoch_s"] * epochs * folds
        print(f"  from the measured epoch: {hms(projection['from_epoch_s'])} ({epoch['epoch_s']:.1f} s/epoch)")
    r224 = next((r for r in train_rows if r["arch"] == "amgcn" and r["img_size"] == 224), None)
    if r224 is not None:
        train_samples = epoch["train_samples"] if epoch else 240
        per_epoch = r224["step_s"] * train_samples / batch_size  # the last batch is partial
        projection["from_step_s"] = per_epoch * epochs * folds
        print(f"  from the step time: {hms(projection['from_step_s'])} ({per_epoch:.1f} s/epoch, "
              f"{train_samples} samples)")
    if not projection:
        print("  nothing to project from: no 224 px step or epoch was measured")
    return projection


def run_benchmark(args: argparse.Namespace) -> int:
    for flag, folder in (("--release", args.release), ("--motion-maps", args.motion_maps)):
        if folder is not None and not folder.is_dir():
            raise UsageError(f"{flag} {folder}: folder not found")
    torch.set_num_threads(args.threads or threads_per_process(DistInfo()))  # as main.run does
    torch.backends.cudnn.benchmark = True
    sizes = args.img_sizes or ([224] if args.quick else [224, 112])
    repeats = args.repeats or (2 if args.quick else 3)
    flow_epochs = args.flow_epochs or (3 if args.quick else 5)
    epoch_size = args.epoch_size or (112 if args.quick else 224)
    cache_dir = args.cache_dir or default_cache_dir()
    flags = ["--device", args.device, "--cache-dir", str(cache_dir), "--threads", str(torch.get_num_threads())]
    started = time.perf_counter()
    report: dict = {}

    device = resolve_device(args.device, DistInfo())
    report["env"] = print_env(device)

    t0 = time.perf_counter()
    release = args.release or synthetic_release(cache_dir / "bench-casme2-size-v2", CASME_RELEASE)
    folder = args.motion_maps or flow_map_folder(cache_dir / "bench-flow-maps-v1")
    report["data_s"] = time.perf_counter() - t0
    print(f"== data: release {release}, motion-map folder {folder} ({report['data_s']:.1f} s to find or make)")

    print("== fp32 GEMM peak", flush=True)
    gemm_sizes = [8192] if device.type == "cuda" else ([2048] if args.quick else [2048, 3072])
    gemm = gemm_peak(device, gemm_sizes, 5 if device.type == "cuda" else 3)
    report["gemm"] = gemm
    print(f"  peak: {gemm['peak']:.1f} GFLOP/s")

    step_flags = [*flags, "--batch-size", str(args.batch_size)]
    report["train"], report["eval"] = measure_steps(release, sizes, step_flags, repeats, gemm_sizes[0], device, args)

    epoch = None
    if not args.no_epoch:
        print(f"== one real fold epoch at {epoch_size} px (fold_set.run_fold, batch {args.batch_size})", flush=True)
        epoch = real_epoch(release, step_flags, epoch_size, cache_dir)
        report["epoch"] = epoch
        print_epoch(epoch, device)

    print(f"== flow-sized case (CASME2_3.py {' '.join(FLOW_FLAGS)})", flush=True)
    report["flow"] = flow_case(folder, flags, flow_epochs, gemm["peak"])
    print_flow(report["flow"])

    print(f"== AM-GCN forward FLOPs per branch by input size "
          f"(python -m models --sizes {','.join(map(str, args.flop_sizes))})")
    by_size = flops_by_size(args.flop_sizes)
    print(branch_share_table(by_size))
    report["flops_by_size"] = {size: {"flops": f, "shares": shares(f)} for size, f in by_size.items()}

    report["loso_projection"] = project_loso(report["train"], epoch, epoch_size, args.batch_size)
    report["bench_seconds"] = time.perf_counter() - started
    print(f"== benchmark took {report['bench_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
