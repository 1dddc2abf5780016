"""Two LOSO runs on the same samples, compared: is the gap between two models more than noise?

A gap between two mean UF1s says little by itself on folders of 20-50 subjects: the seeds'
spread and, more so, which subjects happen to be in the folder move it. This module pairs two
runs sample by sample and seed by seed and reports

    per seed      UF1 / UAR of A and B and B - A (the seeds' noise: mean +- sd of the paired differences)
    bootstrap     subjects drawn with replacement, all their samples kept (LOSO's unit is the subject);
                  per draw, each seed's pooled UF1 of A and of B over the drawn samples, averaged over
                  seeds; the 2.5 / 97.5 percentiles of B - A and the share of draws where B is ahead

overall and, with a dataset column, per dataset part (drawing that part's subjects only).
The inputs are the runs' predictions.csv files; nothing is retrained.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import DataError
from utils.metrics import confusion_scores
from utils.paths import seed_folders

METRICS = ("uf1", "uar")


@dataclass
class RunPredictions:
    """The pooled predictions of one run, one row per seed, samples in a fixed order."""
    folder: Path
    seeds: list[str]            # "seed0", ... ; ["-"] for a single-seed run folder
    classes: list[str]
    keys: list[tuple[str, str, str]]   # (dataset, subject, sample), sorted
    labels: np.ndarray          # (n,) class index
    preds: np.ndarray           # (S, n) class index per seed

    @property
    def subjects(self) -> list[tuple[str, str]]:
        return [(d, s) for d, s, _ in self.keys]


def _read_predictions(path: Path) -> tuple[list[str], dict[tuple[str, str, str], tuple[str, str]]]:
    """(classes, {(dataset, subject, sample): (label, pred)}) of one predictions.csv."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot be read ({e})") from None
    missing = [c for c in ("subject", "sample", "label", "pred") if c not in header]
    classes = [c[2:] for c in header if c.startswith("p_")]
    if missing or not classes:
        raise DataError(f"{path}: not a run's predictions.csv (missing {', '.join(missing) or 'p_<class> columns'})")
    out, lines = {}, {}
    for line, r in enumerate(rows, start=2):
        if r["label"] not in classes or r["pred"] not in classes:
            raise DataError(f"{path}, line {line}: label {r['label']!r} / pred {r['pred']!r} "
                            f"not among the classes {', '.join(classes)}")
        key = (r.get("dataset", ""), r["subject"], r["sample"])
        if key in out:   # kept, it would silently count once; the run wrote each sample once
            raise DataError(f"{path}, lines {lines[key]} and {line}: both describe {'/'.join(filter(None, key))}")
        out[key], lines[key] = (r["label"], r["pred"]), line
    return classes, out


def read_run(folder: Path) -> RunPredictions:
    """A run folder: its predictions.csv, or one per seed folder (seed0/, seed1/, ...) of a --seeds run."""
    seed_dirs = [p for p in seed_folders(folder) if (p / "predictions.csv").is_file()]
    files = [p / "predictions.csv" for p in seed_dirs] or [folder / "predictions.csv"]
    if not files[0].is_file():
        raise DataError(f"{folder}: holds no predictions.csv (nor seed*/predictions.csv): not a finished run")
    read = [_read_predictions(f) for f in files]
    classes, first = read[0]
    for f, (c, rows) in zip(files[1:], read[1:]):
        if c != classes or rows.keys() != first.keys():
            raise DataError(f"{f}: other samples or classes than {files[0]}")
    keys = sorted(first)
    labels = np.array([classes.index(first[k][0]) for k in keys])
    preds = np.array([[classes.index(rows[k][1]) for k in keys] for _, rows in read])
    return RunPredictions(folder, [p.name for p in seed_dirs] or ["-"], classes, keys, labels, preds)


def check_paired(a: RunPredictions, b: RunPredictions) -> None:
    """DataError unless the two runs hold the same samples, labels, classes and seeds."""
    if a.classes != b.classes:
        raise DataError(f"{a.folder} and {b.folder}: other classes ({', '.join(a.classes)} vs {', '.join(b.classes)})")
    if a.keys != b.keys or not np.array_equal(a.labels, b.labels):
        only_a, only_b = sorted(set(a.keys) - set(b.keys)), sorted(set(b.keys) - set(a.keys))
        detail = f"{len(only_a)} sample(s) only in the first, {len(only_b)} only in the second" if only_a or only_b \
            else "the same samples with other labels"
        raise DataError(f"{a.folder} and {b.folder}: not runs on the same data ({detail})")
    if a.seeds != b.seeds:
        raise DataError(f"{a.folder} and {b.folder}: other seeds ({', '.join(a.seeds)} vs {', '.join(b.seeds)}); "
                        "compare runs of the same seeds")


def _subject_confusions(run: RunPredictions, rows: np.ndarray) -> tuple[list[tuple[str, str]], np.ndarray]:
    """(subjects, (S, J, C, C) each seed's confusion counts of each subject) over the samples `rows`."""
    subjects = sorted({run.subjects[i] for i in rows})
    where = {s: j for j, s in enumerate(subjects)}
    k = len(run.classes)
    subject_of = np.array([where[run.subjects[i]] for i in rows])
    counts = np.zeros((len(run.seeds), len(subjects), k, k))
    for s, preds in enumerate(run.preds):
        np.add.at(counts[s], (subject_of, run.labels[rows], preds[rows]), 1)
    return subjects, counts


def compare_part(a: RunPredictions, b: RunPredictions, rows: np.ndarray, rounds: int,
                 rng: np.random.Generator) -> dict:
    """Per-seed figures and the subject bootstrap of B - A over the samples `rows`."""
    subjects, conf_a = _subject_confusions(a, rows)
    _, conf_b = _subject_confusions(b, rows)
    fig_a, fig_b = confusion_scores(conf_a.sum(1)), confusion_scores(conf_b.sum(1))       # each (S,) per metric
    # each draw: how often each subject was drawn; its pooled confusion is the weighted sum of theirs
    drawn = rng.multinomial(len(subjects), np.full(len(subjects), 1 / len(subjects)), size=rounds)  # (R, J)
    boot_a = confusion_scores(np.einsum("rj,sjab->rsab", drawn, conf_a))                 # (R, S) per metric
    boot_b = confusion_scores(np.einsum("rj,sjab->rsab", drawn, conf_b))
    out = {"n": int(len(rows)), "subjects": len(subjects), "seeds": len(a.seeds)}
    for m in METRICS:
        diff = fig_b[m] - fig_a[m]                                                       # (S,)
        draws = (boot_b[m] - boot_a[m]).mean(1)                                          # (R,)
        out[m] = {"a": float(fig_a[m].mean()), "b": float(fig_b[m].mean()), "b_minus_a": float(diff.mean()),
                  "seed_sd": float(diff.std(ddof=1)) if len(diff) > 1 else None,
                  "per_seed": [round(float(x), 4) for x in diff],
                  "bootstrap_95": [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))],
                  "b_ahead_share": float((draws > 0).mean())}
    return out


def compare_runs(a: RunPredictions, b: RunPredictions, rounds: int = 1000, seed: int = 0) -> dict:
    """B against A, overall and per dataset part (when the runs have more than one)."""
    check_paired(a, b)
    rng = np.random.default_rng(seed)
    everything = np.arange(len(a.keys))
    out = {"a": str(a.folder), "b": str(b.folder), "seeds": a.seeds, "bootstrap_rounds": rounds,
           "all": compare_part(a, b, everything, rounds, rng)}
    parts = sorted({d for d, _, _ in a.keys})
    if len(parts) > 1:
        out["parts"] = {p: compare_part(a, b, np.array([i for i, k in enumerate(a.keys) if k[0] == p]), rounds, rng)
                        for p in parts}
    return out


def format_comparison(result: dict) -> str:
    """The printed table: one line per part and metric."""
    lines = [f"A: {result['a']}", f"B: {result['b']}",
             f"seeds: {', '.join(result['seeds'])}; subject bootstrap: {result['bootstrap_rounds']} draws",
             f"{'part':<10}{'metric':<7}{'n':>5}{'subj':>5}{'A':>8}{'B':>8}{'B - A':>9}{'seed sd':>9}"
             f"{'bootstrap 95%':>20}{'B ahead':>9}"]
    for name, part in [("all", result["all"]), *result.get("parts", {}).items()]:
        for m in METRICS:
            f = part[m]
            sd = f"{f['seed_sd']:.3f}" if f["seed_sd"] is not None else "-"
            low, high = f["bootstrap_95"]
            lines.append(f"{name:<10}{m:<7}{part['n']:>5}{part['subjects']:>5}{f['a']:>8.3f}{f['b']:>8.3f}"
                         f"{f['b_minus_a']:>+9.3f}{sd:>9}{f'[{low:+.3f}, {high:+.3f}]':>20}{f['b_ahead_share']:>9.2f}")
    if len(result["seeds"]) == 1:
        lines.append("(one seed: the seeds' spread is unknown)")
    return "\n".join(lines)
