"""LOSO driver shared by CASME2_3.py and CASME2_5.py (their command line: options.py).

sheet -> samples (data.release) -> cached arrays (data.inputs) -> tensors and one fold at a
time (fold_set) -> pooled predictions and metrics -> run folder (utils.report).
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch
import yaml
from tqdm import tqdm

from cli import UsageError, emit, print_error, resolve_device
from data.errors import DataError
from data.arrays import ModelArrays, center_maps, fingerprint_settings, provenance
from data.inputs import default_cache_dir
from data.map_reading import describe_maps
from data.phases import DEFAULT_PHASES
from data.protocols import Protocol, get_protocol
from data.source import DatasetSource
from engine import DatasetTensors, TrainingError, TrainSettings, load_pretrained, untrainable
from fold_set import FINAL_FOLD, fold_groups, run_fold, run_fold_group, train_final
from models import ModelConfig, build_model
from options import (args_record, build_parser, folds_with_samples, graph_aus, model_config, resolve_args,
                     resolve_threads, select_folds, train_settings)
from run_data import model_arrays, open_dataset, print_dataset
from utils.checkpoint import RunFacts, earlier_group_problem, read_checkpoint
from utils.distributed import DistInfo, assign_folds, barrier, init_distributed, shutdown, threads_per_process
from utils.io import append_jsonl, atomic_torch_save, read_json, read_jsonl, read_yaml, write_json, write_yaml
from utils.model_file import MODEL_FILE, model_record
from utils.paths import blocking_file, run_checkpoint_dir, seed_folder, write_problem
from utils.plots import save_training_curves
from utils.report import aggregate_seeds, epoch_curves, format_seed_table, format_table, write_results
from utils.run_state import (SAMPLES_FILE, check_samples, checkpoint_path, fold_result_path, read_fold_result,
                             sample_fingerprint)

# Files whose presence marks a folder as holding a run.
RUN_FILES = ("args.yaml", SAMPLES_FILE, "folds", "summary.json")


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


def data_settings(args: argparse.Namespace, dataset: DatasetSource) -> dict:
    """The settings that decide the arrays a run trains on, for its data fingerprint."""
    phases = tuple(args.phases)   # named only when not the default, so one-phase runs keep their fingerprint
    return {"protocol": args.protocol, "motion": args.motion, "img_size": args.img_size,
            **({"phases": list(phases)} if phases != DEFAULT_PHASES else {}),
            **fingerprint_settings(dataset, args.motion)}


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
                **provenance(dataset))


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
        print_error(e)
        return 2
    except TrainingError as e:
        print_error(e)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue with --resume RUN_FOLDER", file=sys.stderr)
        return 130
    finally:
        shutdown(info)
