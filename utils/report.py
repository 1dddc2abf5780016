"""From fold results to the files of a run folder and the table printed at the end."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from utils.io import write_csv, write_json
from utils.metrics import confusion, pooled_metrics
from utils.plots import save_confusion_matrix

OPTIMISTIC_NOTE = ("each subject's best epoch chosen on that subject's own test data: "
                   "optimistic, not a valid result")


def pool(folds: Sequence[dict], labels: Sequence[int]) -> tuple[list[int], list[int], list[int]]:
    """(sample indices, labels, predictions) of all folds, in fold order."""
    idx = [i for f in folds for i in f["indices"]]
    preds = [p for f in folds for p in f["preds"]]
    return idx, [int(labels[i]) for i in idx], preds


def oracle_metrics(folds: Sequence[dict], labels: Sequence[int], num_classes: int) -> dict:
    """The literature's test-selected figure: per fold, the epoch with the best test accuracy."""
    truth, chosen = [], []
    for f in folds:
        y = np.array([labels[i] for i in f["indices"]])
        per_epoch = np.array(f["oracle_preds"])  # (epochs, n)
        best = int(np.argmax((per_epoch == y).sum(axis=1)))
        truth += y.tolist()
        chosen += per_epoch[best].tolist()
    return {**pooled_metrics(truth, chosen, num_classes), "note": OPTIMISTIC_NOTE}


VALIDATION_NOTE = ("mean over folds of the validation subjects' UF1 at the last epoch: "
                   "compare recipes by this, never by the test figures")
VALIDATION_LABEL = "validation: last epoch, mean over folds; choose recipes by this"


def validation_summary(folds: Sequence[dict]) -> dict | None:
    """The recipe-selection figure of a --val-subjects run (None without validation subjects)."""
    scores = [f.get("val_uf1") for f in folds]
    if not scores or any(s is None for s in scores):
        return None
    return {"uf1": float(np.mean(scores)), "folds": len(scores), "note": VALIDATION_NOTE}


CURVE_KEYS = ("train_loss", "train_acc", "val_uf1")


def epoch_curves(records: Sequence[dict], skip_fold: str) -> dict[str, list[float]]:
    """Per epoch, the mean over folds of each of CURVE_KEYS that every fold logged (from log.jsonl).

    A resumed fold logs some epochs twice: its last record of an epoch counts. Records of
    `skip_fold` (the final model's epochs) are not LOSO folds and are left out.
    """
    latest: dict[tuple[str, int], dict] = {}
    for r in records:
        if r.get("fold") != skip_fold and isinstance(r.get("epoch"), int) and "train_loss" in r:
            latest[(str(r["fold"]), r["epoch"])] = r
    by_epoch: dict[int, list[dict]] = {}
    for (_, epoch), r in sorted(latest.items(), key=lambda item: item[0][1]):
        by_epoch.setdefault(epoch, []).append(r)
    curves: dict[str, list[float]] = {"epoch": [float(e) for e in by_epoch]}
    for key in CURVE_KEYS:
        if latest and all(r.get(key) is not None for r in latest.values()):
            curves[key] = [float(np.mean([r[key] for r in rs])) for rs in by_epoch.values()]
    return curves


def part_metrics(idx: Sequence[int], truth: Sequence[int], preds: Sequence[int], datasets: Sequence[str],
                 num_classes: int) -> dict[str, dict]:
    """Pooled metrics of each dataset part (MEGC2019 composite convention): its subjects' predictions only."""
    parts: dict[str, dict] = {}
    for name in sorted(set(datasets[i] for i in idx)):
        mine = [k for k, i in enumerate(idx) if datasets[i] == name]
        parts[name] = pooled_metrics([truth[k] for k in mine], [preds[k] for k in mine], num_classes)
    return parts


def write_results(run_dir: Path, folds: Sequence[dict], labels: Sequence[int], subjects: Sequence[str],
                  names: Sequence[str], classes: Sequence[str], extra: dict,
                  datasets: Sequence[str] = ()) -> tuple[dict, list[list]]:
    """Write predictions.csv, folds.csv, summary.json and confusion_matrix.png.

    `datasets` (N,): each sample's dataset; when given, predictions.csv has a dataset column
    and the summary a `parts` entry with each dataset's pooled figures.
    Returns the summary and the per-fold rows (as in folds.csv).
    """
    num_classes = len(classes)
    idx, truth, preds = pool(folds, labels)
    summary = {**pooled_metrics(truth, preds, num_classes), "classes": list(classes), **extra}
    if datasets:
        summary["parts"] = part_metrics(idx, truth, preds, datasets, num_classes)
    if folds and all(f.get("oracle_preds") for f in folds):
        summary["oracle_optimistic"] = oracle_metrics(folds, labels, num_classes)
    validation = validation_summary(folds)
    if validation is not None:
        summary["validation"] = validation

    rows = []
    for f in folds:
        for i, pred, prob in zip(f["indices"], f["preds"], f["probs"]):
            rows.append([*([datasets[i]] if datasets else []), subjects[i], names[i], classes[labels[i]],
                         classes[pred], *prob])
    write_csv(run_dir / "predictions.csv",
              [*(["dataset"] if datasets else []), "subject", "sample", "label", "pred",
               *[f"p_{c}" for c in classes]], rows)

    fold_rows = []
    for f in folds:
        y = [labels[i] for i in f["indices"]]
        m = pooled_metrics(y, f["preds"], num_classes)
        fold_rows.append([f["subject"], m["n"], round(m["accuracy"], 4), round(m["uf1"], 4), round(m["uar"], 4),
                          f["selected_epoch"], f["train_samples"], f["seconds"]])
    write_csv(run_dir / "folds.csv",
              ["subject", "n", "accuracy", "uf1", "uar", "epoch", "train_samples", "seconds"], fold_rows)

    cm = confusion(truth, preds, num_classes)
    summary["confusion_matrix"] = cm.tolist()
    save_confusion_matrix(cm, classes, run_dir / "confusion_matrix.png",
                          title=f"pooled LOSO, n={len(truth)}, UF1 {summary['uf1']:.3f}, UAR {summary['uar']:.3f}")
    write_json(run_dir / "summary.json", summary)
    return summary, fold_rows


def format_table(summary: dict, fold_rows: Sequence[Sequence]) -> str:
    """Per-fold lines, then the pooled result (and the optimistic figure, labelled)."""
    lines = [f"{'fold':<10}{'n':>5}{'acc':>8}{'uf1':>8}{'uar':>8}"]
    for subject, n, acc, uf1, uar, *_ in fold_rows:
        lines.append(f"{subject:<10}{n:>5}{acc:>8.3f}{uf1:>8.3f}{uar:>8.3f}")
    lines.append("-" * 39)
    lines.append(f"{'pooled':<10}{summary['n']:>5}{summary['accuracy']:>8.3f}{summary['uf1']:>8.3f}"
                 f"{summary['uar']:>8.3f}   ({summary.get('selection', 'last epoch')})")
    for name, m in summary.get("parts", {}).items():
        lines.append(f"{name:<10}{m['n']:>5}{m['accuracy']:>8.3f}{m['uf1']:>8.3f}{m['uar']:>8.3f}   (its subjects only)")
    if "validation" in summary:
        lines.append(f"{'validation':<23}{summary['validation']['uf1']:>8.3f}   ({VALIDATION_LABEL})")
    if "oracle_optimistic" in summary:
        o = summary["oracle_optimistic"]
        lines.append(f"{'oracle*':<10}{o['n']:>5}{o['accuracy']:>8.3f}{o['uf1']:>8.3f}{o['uar']:>8.3f}")
        lines.append(f"* {OPTIMISTIC_NOTE}")
    return "\n".join(lines)


SEED_METRICS = ("uf1", "uar", "accuracy")


def _spread(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "sd": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}


def aggregate_seeds(summaries: dict[int, dict]) -> dict:
    """Each seed's pooled figures and their mean and sd, overall and per dataset part."""
    seeds = sorted(summaries)
    out: dict = {"seeds": seeds, "per_seed": {str(s): {m: summaries[s][m] for m in (*SEED_METRICS, "n")}
                                              for s in seeds}}
    out.update({m: _spread([summaries[s][m] for s in seeds]) for m in SEED_METRICS})
    parts = sorted(set().union(*(summaries[s].get("parts", {}) for s in seeds)))
    if parts:
        out["parts"] = {p: {m: _spread([summaries[s]["parts"][p][m] for s in seeds]) for m in SEED_METRICS}
                        for p in parts}
    if all("validation" in summaries[s] for s in seeds):
        out["validation"] = {"uf1": _spread([summaries[s]["validation"]["uf1"] for s in seeds]),
                             "per_seed": {str(s): summaries[s]["validation"]["uf1"] for s in seeds},
                             "note": VALIDATION_NOTE}
    if len(seeds) == 1:
        out["note"] = "rests on one seed: no spread"
    for key in ("protocol", "model", "classes", "selection", "model_config"):
        if key in summaries[seeds[0]]:
            out[key] = summaries[seeds[0]][key]
    return out


def format_seed_table(agg: dict) -> str:
    """One line per seed, then mean +- sd (and per dataset part)."""
    lines = [f"{'seed':<10}{'n':>5}{'acc':>8}{'uf1':>8}{'uar':>8}"]
    for seed, m in agg["per_seed"].items():
        lines.append(f"{seed:<10}{m['n']:>5}{m['accuracy']:>8.3f}{m['uf1']:>8.3f}{m['uar']:>8.3f}")
    lines.append("-" * 39)

    def line(name: str, figures: dict) -> str:
        return name.ljust(10) + " " * 5 + "".join(
            f"  {figures[m]['mean']:.3f}+-{figures[m]['sd']:.3f}" for m in ("accuracy", "uf1", "uar"))

    lines.append(line("mean+-sd", agg))
    for part, figures in agg.get("parts", {}).items():
        lines.append(line(part, figures))
    if "validation" in agg:
        v = agg["validation"]["uf1"]
        lines.append(f"{'validation':<31}{v['mean']:.3f}+-{v['sd']:.3f}   ({VALIDATION_LABEL})")
    if "note" in agg:
        lines.append(f"({agg['note']})")
    return "\n".join(lines)
