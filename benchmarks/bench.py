"""How fast the toolkit trains here, and where the time goes.

    python -m benchmarks.bench [--quick] [--device auto|cpu|cuda] [--img-sizes 224,112]
                               [--batch-size 32] [--repeats N] [--memory-format F] [--json PATH]

One run measures, on this machine:
  * the fp32 GEMM peak (large square matmuls, median of repeats);
  * training throughput of AM-GCN and the MMNet baseline: engine.train_one_epoch itself,
    called on a one-batch index set so that each call is one optimiser step (forward,
    compute_loss, backward, Adam step, channels_last inputs, bf16 autocast on CUDA), with
    the achieved GFLOP/s from models.count_flops (training ~= 3x forward) and its ratio to
    the GEMM peak;
  * evaluation throughput (engine.evaluate);
  * one real epoch on a synthetic release of CASME II's size (249 samples, 26 subjects):
    build_inputs uncached and cached, tensor upload, the epoch's compute and the per-batch
    gather (indexing the in-memory tensors) as a share of it;
  * the projected wall time of a full 5-class LOSO (26 folds x 100 epochs).

Medians of repeats are reported: other processes may share the machine. Compare figures
only within one run (ratios) or across runs on an idle machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

if __package__ in (None, ""):  # `python benchmarks/bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data.inputs import build_inputs, default_cache_dir  # noqa: E402
from data.protocols import get_protocol  # noqa: E402
from data.release import au_multi_hot, load_release  # noqa: E402
from engine import ReleaseTensors, TrainSettings, _random_flip, evaluate, make_optimizer, train_one_epoch  # noqa: E402
from models import ModelConfig, build_model, cooccurrence_adjacency, count_flops  # noqa: E402

REFERENCE_SHEET = Path("/work/shared/reference/casme2/CASME2-coding-20190701.xlsx")
BENCH_RELEASE = "bench-release-v1"
LOSO = dict(folds=26, epochs=100, train_samples=240, img_size=224)


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


def settings_for(device: torch.device, batch_size: int, epochs: int = 100) -> TrainSettings:
    # the same choices main.py makes: bf16 autocast on CUDA, Adam, 5-class learning rate
    return TrainSettings(epochs=epochs, batch_size=batch_size, lr=8e-4, weight_decay=1e-4, optimizer="adam",
                         amp=device.type == "cuda")


def fresh_model(cfg: ModelConfig, device: torch.device, adjacency: torch.Tensor | None = None,
                memory_format: torch.memory_format = torch.channels_last):
    """A model and optimiser set up as engine.run_fold sets them up (channels_last unless told)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    model.set_adjacency(adjacency if adjacency is not None else torch.eye(len(cfg.aus)))
    model = model.to(device=device, memory_format=memory_format)
    optimizer = make_optimizer("adam", model.parameters(), 8e-4, 1e-4)
    return model, optimizer


def random_release(n: int, size: int, cfg: ModelConfig, device: torch.device, seed: int = 0,
                   memory_format: torch.memory_format = torch.channels_last) -> ReleaseTensors:
    rng = np.random.default_rng(seed)
    onset = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    apex = np.clip(onset.astype(np.int16) + rng.integers(-4, 5, onset.shape), 0, 255).astype(np.uint8)
    labels = rng.integers(0, cfg.num_classes, n)
    au = (rng.random((n, len(cfg.aus))) < 0.3).astype(np.float32)
    data = ReleaseTensors.from_arrays(onset, apex, labels, au, [f"sub{i % 4 + 1:02d}" for i in range(n)],
                                      [f"s{i}" for i in range(n)], device)
    data.motion = data.motion.contiguous(memory_format=memory_format)
    return data


_FLOPS: dict[tuple[str, int], int] = {}


def forward_flops(cfg: ModelConfig) -> int:
    key = (cfg.arch, cfg.img_size)
    if key not in _FLOPS:
        torch.manual_seed(0)
        _FLOPS[key] = count_flops(build_model(cfg), cfg.img_size)["total"]
    return _FLOPS[key]


# --------------------------------------------------------------------------- measurements

def gemm_peak(device: torch.device, sizes: list[int], repeats: int) -> dict:
    """Best median fp32 GFLOP/s over square matmuls of the given sizes."""
    rows = {}
    for n in sizes:
        times = timed(make_gemm(device, n), device, repeats)
        rows[n] = 2 * n ** 3 / med(times) / 1e9
        print(f"  gemm fp32 {n}x{n}: {rows[n]:8.1f} GFLOP/s ({spread(times)})", flush=True)
    return {"sizes": rows, "peak": max(rows.values())}


def make_gemm(device: torch.device, n: int) -> Callable[[], object]:
    a, b, c = (torch.randn(n, n, device=device) for _ in range(3))
    return lambda: torch.mm(a, b, out=c)


def train_round_robin(size: int, batch: int, device: torch.device, repeats: int, gemm_n: int,
                      memory_format: torch.memory_format = torch.channels_last) -> list[dict]:
    """Optimiser steps of AM-GCN and MMNet through engine.train_one_epoch, interleaved.

    Each call of train_one_epoch gets a one-batch index set, so it is exactly one step
    (forward, compute_loss, backward, Adam) on random inputs. Every round times one GEMM,
    one AM-GCN step and one MMNet step back to back, so the ratios of a round share the
    machine's load at that moment; the medians of the per-round ratios are reported.
    """
    gemm = make_gemm(device, gemm_n)
    runs = {}
    for arch in ("amgcn", "mmnet"):
        cfg = ModelConfig(img_size=size, arch=arch)
        data = random_release(batch, size, cfg, device, memory_format=memory_format)
        idx = torch.arange(batch, device=device)
        scale = data.motion.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
        model, optimizer = fresh_model(cfg, device, memory_format=memory_format)
        settings = settings_for(device, batch)
        gen = torch.Generator().manual_seed(0)
        runs[arch] = (cfg, (lambda m=model, d=data, i=idx, sc=scale, o=optimizer, c=cfg, st=settings, g=gen:
                            train_one_epoch(m, d, i, sc, o, c, st, g, device)))
    warmup = 2 if device.type == "cuda" else 1
    times: dict[str, list[float]] = {"gemm": [], "amgcn": [], "mmnet": []}
    for r in range(warmup + repeats):
        for name, fn in (("gemm", gemm), *((a, runs[a][1]) for a in ("amgcn", "mmnet"))):
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if r >= warmup:
                times[name].append(time.perf_counter() - t0)
    gemm_rate = [2 * gemm_n ** 3 / t / 1e9 for t in times["gemm"]]
    out = []
    for arch in ("amgcn", "mmnet"):
        work = 3 * forward_flops(runs[arch][0]) * batch
        rates = [work / t / 1e9 for t in times[arch]]
        out.append({"arch": arch, "img_size": size, "batch": batch, "step_s": med(times[arch]),
                    "times": times[arch], "samples_per_s": batch / med(times[arch]), "gflops": med(rates),
                    "of_peak": med([a / g for a, g in zip(rates, gemm_rate)]),
                    "round_gemm_gflops": med(gemm_rate),
                    "vs_mmnet": med([a / m for a, m in zip(times[arch], times["mmnet"])])})
    return out


def eval_throughput(arch: str, size: int, n: int, device: torch.device, repeats: int) -> dict:
    cfg = ModelConfig(img_size=size, arch=arch)
    data = random_release(n, size, cfg, device, seed=1)
    idx = torch.arange(n, device=device)
    scale = data.motion.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    model, _ = fresh_model(cfg, device)
    settings = settings_for(device, 32)
    times = timed(lambda: evaluate(model, data, idx, scale, settings, device), device, repeats)
    return {"arch": arch, "img_size": size, "n": n, "seconds": med(times), "samples_per_s": n / med(times),
            "gflops": forward_flops(cfg) * n / med(times) / 1e9}


def bench_release() -> tuple[Path, float, str]:
    """The synthetic CASME II-size release, generated once into the cache folder."""
    from data.synthetic import generate_release

    root = default_cache_dir() / BENCH_RELEASE
    how = "CASME II 2019 sheet" if REFERENCE_SHEET.is_file() else "26 subjects x 10 clips"
    if (root / ".complete").exists():
        return root, 0.0, how
    t0 = time.perf_counter()
    if REFERENCE_SHEET.is_file():
        generate_release(root, sheet=REFERENCE_SHEET, layout="cropped", frames="key")
    else:
        generate_release(root, subjects=26, per_subject=10, layout="cropped", frames="key")
    (root / ".complete").touch()
    return root, time.perf_counter() - t0, how


def real_epoch(size: int, batch: int, device: torch.device) -> dict:
    """Data preparation versus compute for one LOSO epoch on the CASME II-size release."""
    root, gen_s, how = bench_release()
    release = load_release(root, get_protocol("5class"))
    cfg = ModelConfig(img_size=size)
    out: dict = {"release": how, "generated_s": gen_s, "samples": len(release.samples),
                 "subjects": len(release.subjects), "img_size": size}
    with tempfile.TemporaryDirectory(prefix="amgcn-bench-cache-") as cache:
        t0 = time.perf_counter()
        build_inputs(release, img_size=size, cache_dir=Path(cache), progress=False)
        out["build_uncached_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        inputs = build_inputs(release, img_size=size, cache_dir=Path(cache), progress=False)
        out["build_cached_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    data = ReleaseTensors.from_arrays(inputs.onset, inputs.apex, inputs.labels, au_multi_hot([s.aus for s in inputs.samples], cfg.aus),
                                      inputs.subjects, [s.filename for s in inputs.samples], device)
    sync(device)
    out["upload_s"] = time.perf_counter() - t0

    held_out = sorted(set(data.subjects))[0]
    train_idx = data.indices(set(data.subjects) - {held_out})
    test_idx = data.indices({held_out})
    adjacency = cooccurrence_adjacency(data.au[train_idx].cpu(), cfg.adj_threshold, cfg.adj_reweight)
    scale = data.motion[train_idx].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-3)
    model, optimizer = fresh_model(cfg, device, adjacency)
    settings = settings_for(device, batch)
    gen_seed = 12345
    t0 = time.perf_counter()
    train_one_epoch(model, data, train_idx, scale, optimizer, cfg, settings,
                    torch.Generator().manual_seed(gen_seed), device)
    sync(device)
    out["epoch_s"] = time.perf_counter() - t0
    out["train_samples"] = len(train_idx)
    t0 = time.perf_counter()
    evaluate(model, data, test_idx, scale, settings, device)
    out["test_eval_s"] = time.perf_counter() - t0

    # The per-batch gather of train_one_epoch (same order, same ops), without the model.
    def gather() -> None:
        g = torch.Generator().manual_seed(gen_seed)
        order = torch.randperm(len(train_idx), generator=g).to(device)
        flips = (torch.rand(len(train_idx), generator=g) < 0.5).to(device)
        perm = train_idx[order]
        for start in range(0, len(perm), batch):
            idx = perm[start:start + batch]
            flip = flips[start:start + len(idx)]
            _random_flip(data.motion[idx], flip) / scale
            _random_flip(data.face[idx], flip)
            data.labels[idx], data.au[idx]

    out["gather_s"] = med(timed(gather, device, 3))
    out["gather_share"] = out["gather_s"] / out["epoch_s"]
    out["build_cached_share"] = out["build_cached_s"] / out["epoch_s"]
    return out


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="about a minute: fewer repeats, 224 px only, epoch at 112 px")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    ap.add_argument("--img-sizes", default=None, help="comma-separated training sizes (default 224,112; quick: 224)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=None, help="timed training steps per model (default 3; quick 2)")
    ap.add_argument("--epoch-size", type=int, default=None, help="image size of the real epoch (default 224; quick 112)")
    ap.add_argument("--no-epoch", action="store_true", help="skip the real-epoch measurement")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
                    help="layout of the training-step models and inputs (the engine uses channels_last; "
                         "contiguous shows what it gains)")
    ap.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    sizes = [int(s) for s in (args.img_sizes or ("224" if args.quick else "224,112")).split(",")]
    repeats = args.repeats or (2 if args.quick else 3)
    epoch_size = args.epoch_size or (112 if args.quick else 224)
    started = time.perf_counter()
    report: dict = {}

    env = {"device": str(device), "threads": torch.get_num_threads(), "cpu": cpu_model(),
           "cpu_cores": os.cpu_count(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), **versions()}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    report["env"] = env
    print("== environment")
    for k, v in env.items():
        print(f"  {k}: {v}")

    print("== fp32 GEMM peak", flush=True)
    gemm_sizes = [8192] if device.type == "cuda" else ([2048] if args.quick else [2048, 3072])
    gemm = gemm_peak(device, gemm_sizes, 5 if device.type == "cuda" else 3)
    peak = gemm["peak"]
    report["gemm"] = gemm
    print(f"  peak: {peak:.1f} GFLOP/s")

    memory_format = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}[args.memory_format]
    print(f"== training step (engine.train_one_epoch, batch {args.batch_size}, Adam"
          f"{', bf16 autocast' if device.type == 'cuda' else ', fp32'}, {args.memory_format})", flush=True)
    train = []
    for size in sizes:
        rows = train_round_robin(size, args.batch_size, device, repeats, gemm_sizes[0], memory_format)
        train += rows
        for r in rows:
            print(f"  {r['arch']:<6} {size:>3} px: {r['step_s']:.3f} s/step, {r['samples_per_s']:7.1f} samples/s, "
                  f"{r['gflops']:7.1f} GFLOP/s ({spread(r['times'])})", flush=True)
        a = rows[0]
        print(f"  AM-GCN at {size} px: {a['of_peak']:.2f} of the GEMM peak measured in the same rounds "
              f"({a['round_gemm_gflops']:.1f} GFLOP/s); AM-GCN / MMNet step time: {a['vs_mmnet']:.2f}x "
              f"(medians of per-round ratios)", flush=True)
    report["train"] = train

    print("== evaluation (engine.evaluate)", flush=True)
    n_eval = 256 if device.type == "cuda" else 64
    evals = [eval_throughput(arch, sizes[0], n_eval, device, repeats) for arch in ("amgcn", "mmnet")]
    for r in evals:
        print(f"  {r['arch']:<6} {r['img_size']:>3} px: {r['samples_per_s']:7.1f} samples/s "
              f"({r['n']} samples in {r['seconds']:.3f} s, {r['gflops']:.1f} GFLOP/s)")
    report["eval"] = evals

    epoch = None
    if not args.no_epoch:
        print(f"== one real epoch at {epoch_size} px (synthetic release of CASME II size)", flush=True)
        epoch = real_epoch(epoch_size, args.batch_size, device)
        report["epoch"] = epoch
        if epoch["generated_s"]:
            print(f"  release generated once in {epoch['generated_s']:.1f} s (cached for later runs)")
        print(f"  release: {epoch['release']}, {epoch['samples']} samples, {epoch['subjects']} subjects; "
              f"fold trains on {epoch['train_samples']}")
        print(f"  build_inputs uncached: {epoch['build_uncached_s']:.2f} s   cached: {epoch['build_cached_s']:.2f} s   "
              f"upload to {device}: {epoch['upload_s']:.2f} s")
        print(f"  one training epoch: {epoch['epoch_s']:.2f} s; test evaluation: {epoch['test_eval_s']:.3f} s")
        print(f"  per-batch data gather inside the epoch: {epoch['gather_s']:.3f} s = "
              f"{100 * epoch['gather_share']:.2f}% of the epoch")
        print(f"  build_inputs (cached) = {100 * epoch['build_cached_share']:.1f}% of one epoch, once per run "
              f"(uncached: {100 * epoch['build_uncached_s'] / epoch['epoch_s']:.1f}%)")

    print("== projected full 5-class LOSO (26 folds x 100 epochs x ~240 samples, 224 px, "
          f"batch {args.batch_size})")
    steps = math.ceil(LOSO["train_samples"] / args.batch_size)
    r224 = next((r for r in train if r["arch"] == "amgcn" and r["img_size"] == 224), None)
    projection = {}
    if epoch is not None and epoch_size == 224:
        per_epoch = epoch["epoch_s"] * LOSO["train_samples"] / epoch["train_samples"]
        projection["from_epoch_s"] = per_epoch * LOSO["epochs"] * LOSO["folds"]
        print(f"  from the measured epoch: {hms(projection['from_epoch_s'])} "
              f"({per_epoch:.1f} s/epoch)")
    if r224 is not None:
        per_epoch = r224["step_s"] * LOSO["train_samples"] / args.batch_size  # the last batch is partial
        projection["from_step_s"] = per_epoch * LOSO["epochs"] * LOSO["folds"]
        print(f"  from the step time: {hms(projection['from_step_s'])} ({per_epoch:.1f} s/epoch, "
              f"{steps} steps)")
    report["loso_projection"] = projection
    report["bench_seconds"] = time.perf_counter() - started
    print(f"== benchmark took {report['bench_seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
