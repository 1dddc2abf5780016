"""What a run folder remembers between a start and a --resume, and the checks made on it.

- samples.json: the fingerprint of the data the run trains on (each sample's subject, name
  and label, in order, plus the preprocessing settings). A resumed run refuses other data:
  fold results hold row numbers, which only mean something for the same sample list.
- folds/<stem>.json: one fold's result, named by utils.paths.file_stem of its subject. It is
  checked whole before it is trusted (a damaged or foreign file is an error naming it).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from data.errors import DataError
from utils.io import error_text, read_json, write_json
from utils.model_file import MODEL_FILE
from utils.paths import file_stem, seed_folders

SAMPLES_FILE = "samples.json"
FOLD_KEYS = ("subject", "indices", "preds", "probs", "epochs", "train_samples", "seconds", "selected_epoch")
SHOWN = 5   # sample names listed per kind of change


def fold_result_path(run_dir: Path, subject: str) -> Path:
    return Path(run_dir) / "folds" / f"{file_stem(subject)}.json"


def checkpoint_path(checkpoint_folder: Path, subject: str) -> Path:
    """The checkpoint of fold `subject` in a run's checkpoint folder (utils.paths.run_checkpoint_dir)."""
    return Path(checkpoint_folder) / f"{file_stem(subject)}.pt"


# --------------------------------------------------------------------------- what a run folder holds

RUN_KINDS = {"loso": "LOSO", "seeds": "--seeds", "final-only": "--final-only"}


def run_kind(args_seeds: object, final_only: bool) -> str:
    """The kind of run an argument set describes (a key of RUN_KINDS)."""
    return "seeds" if args_seeds else "final-only" if final_only else "loso"


def held_run_kind(folder: Path) -> str | None:
    """The kind of run `folder`'s files show (a key of RUN_KINDS), None when it holds no results yet;
    DataError for results that no kind explains (a summary without the samples it pooled)."""
    folder = Path(folder)
    if seed_folders(folder):
        return "seeds"
    if (folder / SAMPLES_FILE).exists() or (folder / "folds").exists():
        return "loso"
    if (folder / "summary.json").exists():
        raise DataError(f"{folder} holds summary.json but neither {SAMPLES_FILE} nor seed folders, so the run "
                        "cannot be checked or continued; start a new run (another --output)")
    return "final-only" if (folder / MODEL_FILE).exists() else None


def check_run_kind(folder: Path, wanted: str, saved: Path) -> None:
    """DataError when `folder` holds another kind of run than its arguments (`saved`) describe: resuming
    would train the wrong thing into it and replace its results (a --seeds parent whose seeds were lost)."""
    held = held_run_kind(folder)
    if held is not None and held != wanted:
        raise DataError(f"--resume {folder}: the folder holds a {RUN_KINDS[held]} run, but {saved} describes a "
                        f"{RUN_KINDS[wanted]} run; nothing was changed (restore {saved.name} or start a new run)")


# --------------------------------------------------------------------------- samples.json

def sample_fingerprint(subjects: Sequence[str], names: Sequence[str], labels: Sequence[int],
                       classes: Sequence[str], settings: dict) -> dict:
    """The data a run trains on: (subject, name, class) per sample, in order, and the settings."""
    return {"settings": dict(settings),
            "samples": [[s, n, classes[int(y)]] for s, n, y in zip(subjects, names, labels)]}


def _listed(keys: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{s}/{n}" for s, n in keys[:SHOWN])
    return shown + (f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")


def fingerprint_changes(saved: dict, current: dict) -> str | None:
    """What differs between two fingerprints, in words ('3 samples added: ...; 1 removed: ...'); None if equal."""
    parts = []
    old = {(s, n): y for s, n, y in saved["samples"]}
    new = {(s, n): y for s, n, y in current["samples"]}
    added = [k for k in new if k not in old]
    removed = [k for k in old if k not in new]
    relabelled = [k for k in new if k in old and old[k] != new[k]]
    if added:
        parts.append(f"{len(added)} sample(s) added: {_listed(added)}")
    if removed:
        parts.append(f"{len(removed)} removed: {_listed(removed)}")
    if relabelled:
        parts.append(f"{len(relabelled)} relabelled: "
                     + ", ".join(f"{s}/{n} ({old[(s, n)]} -> {new[(s, n)]})" for s, n in relabelled[:SHOWN]))
    if not parts and saved["samples"] != current["samples"]:
        parts.append("the same samples in another order")
    keys = sorted(set(saved["settings"]) | set(current["settings"]))
    settings = [f"{k} {saved['settings'].get(k)!r} -> {current['settings'].get(k)!r}"
                for k in keys if saved["settings"].get(k) != current["settings"].get(k)]
    if settings:
        parts.append("settings changed: " + ", ".join(settings))
    return "; ".join(parts) or None


def _fingerprint_problem(saved: Any) -> str | None:
    if not isinstance(saved, dict) or not isinstance(saved.get("settings"), dict) \
            or not isinstance(saved.get("samples"), list):
        return "not a fingerprint (needs 'settings' and 'samples')"
    for i, entry in enumerate(saved["samples"]):
        if not (isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, str) for v in entry)):
            return f"sample {i} is not [subject, name, class]"
    return None


def check_samples(run_dir: Path, current: dict, has_results: bool) -> None:
    """Record the fingerprint in a run folder that has none yet, or refuse data that differ
    from the recorded one (DataError naming what changed)."""
    path = Path(run_dir) / SAMPLES_FILE
    if not path.exists():
        if has_results:
            raise DataError(f"{path} is missing, so the data this run trained on cannot be checked; "
                            "start a new run (another --output)")
        write_json(path, current)
        return
    try:
        saved = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"{path}: cannot be read ({error_text(e)})") from None
    problem = _fingerprint_problem(saved)
    if problem:
        raise DataError(f"{path}: {problem}")
    changes = fingerprint_changes(saved, current)
    if changes:
        raise DataError(f"--resume {run_dir}: the data differ from those the run started with ({path}): "
                        f"{changes}; start a new run (another --output)")


# --------------------------------------------------------------------------- fold results

def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _class_lists_problem(name: str, rows: Any, n: int, num_classes: int) -> str | None:
    if not (isinstance(rows, list) and len(rows) == n
            and all(_is_int(p) and 0 <= p < num_classes for p in rows)):
        return f"'{name}' is not a list of {n} class numbers below {num_classes}"
    return None


def keys_problem(record: Any, keys: Sequence[str], what: str) -> str | None:
    """Why `record` is not a mapping holding every one of `keys` (`what` names it: 'a fold result'), or None."""
    if not isinstance(record, dict):
        return f"not {what} (a {type(record).__name__}, not a mapping)"
    missing = [k for k in keys if k not in record]
    return f"missing key(s) {', '.join(missing)}" if missing else None


def fold_problem(result: Any, subject: str, indices: list[int], num_classes: int, epochs: int) -> str | None:
    """What is wrong with one fold's result for this run, or None."""
    problem = keys_problem(result, FOLD_KEYS, "a fold result")
    if problem:
        return problem
    if result["subject"] != subject:
        return f"holds fold {result['subject']!r}, not {subject!r}"
    if result["indices"] != indices:
        return f"tests other samples than this run's {len(indices)} of {subject}"
    n = len(indices)
    problem = _class_lists_problem("preds", result["preds"], n, num_classes)
    if problem:
        return problem
    probs = result["probs"]
    if not (isinstance(probs, list) and len(probs) == n and all(
            isinstance(row, list) and len(row) == num_classes and all(_is_number(p) and p >= 0 for p in row)
            for row in probs)):
        return f"'probs' is not {n} rows of {num_classes} finite probabilities"
    if result["epochs"] != epochs:
        return f"trained for {result['epochs']!r} epochs, this run for {epochs}"
    if not (_is_int(result["selected_epoch"]) and 1 <= result["selected_epoch"] <= epochs):
        return f"'selected_epoch' {result['selected_epoch']!r} is not an epoch of 1..{epochs}"
    if not (_is_int(result["train_samples"]) and result["train_samples"] >= 0):
        return f"'train_samples' {result['train_samples']!r} is not a count"
    if not (_is_number(result["seconds"]) and result["seconds"] >= 0):
        return f"'seconds' {result['seconds']!r} is not a duration"
    val_uf1 = result.get("val_uf1")
    if val_uf1 is not None and not (_is_number(val_uf1) and 0 <= val_uf1 <= 1):
        return f"'val_uf1' {val_uf1!r} is not a UF1 between 0 and 1"
    oracle = result.get("oracle_preds", [])
    if not isinstance(oracle, list):
        return "'oracle_preds' is not a list"
    for epoch_preds in oracle:
        problem = _class_lists_problem("oracle_preds", epoch_preds, n, num_classes)
        if problem:
            return problem
    return None


def read_fold_result(path: Path, subject: str, indices: list[int], num_classes: int, epochs: int) -> dict:
    """One fold's result file, checked against this run; DataError naming the file otherwise."""
    try:
        result = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"fold result {path}: cannot be read ({error_text(e)}); "
                        "delete it to run that fold again") from None
    problem = fold_problem(result, subject, indices, num_classes, epochs)
    if problem:
        raise DataError(f"fold result {path}: {problem}; delete it to run that fold again")
    return result
