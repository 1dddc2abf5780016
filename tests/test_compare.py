"""Tests of compare.py and utils/comparison.py (paired runs, subject bootstrap) and the confusion-based metrics."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, recall_score

from compare import main as compare_main
from utils.comparison import compare_runs, read_run
from utils.metrics import confusion, confusion_scores, pooled_metrics

CLASSES = ["negative", "positive", "surprise"]


def test_confusion_scores_equal_scikit_learn():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        labels = rng.integers(0, 2 if rng.random() < 0.3 else 3, n)   # sometimes a class is never true ...
        preds = rng.integers(0, 3, n)                                    # ... but still predicted
        present = sorted(set(labels.tolist()))
        m = pooled_metrics(labels, preds, 3)
        assert m["accuracy"] == pytest.approx(accuracy_score(labels, preds))
        assert m["uf1"] == pytest.approx(f1_score(labels, preds, labels=present, average="macro", zero_division=0))
        assert m["uar"] == pytest.approx(recall_score(labels, preds, labels=present, average="macro", zero_division=0))
    stack = np.stack([confusion([0, 1, 2, 2], [0, 2, 2, 1], 3), confusion([0, 0], [0, 1], 3)])
    scores = confusion_scores(stack)                                     # a stack scores each matrix
    assert scores["uar"].tolist() == pytest.approx([pooled_metrics([0, 1, 2, 2], [0, 2, 2, 1], 3)["uar"], 0.5])


def write_run(folder: Path, seeds: dict[int, list[tuple[str, str, str, str, str]]]) -> Path:
    """A --seeds run folder: per seed, rows (dataset, subject, sample, label, pred)."""
    for seed, rows in seeds.items():
        out = folder / f"seed{seed}"
        out.mkdir(parents=True)
        with open(out / "predictions.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["dataset", "subject", "sample", "label", "pred", *(f"p_{c}" for c in CLASSES)])
            for d, s, name, label, pred in rows:
                w.writerow([d, s, name, label, pred, *(1.0 if c == pred else 0.0 for c in CLASSES)])
    return folder


def samples(n_subjects: int = 6, per: int = 4, parts: tuple[str, ...] = ("samm", "smic")) -> list[tuple]:
    rows = []
    for j in range(n_subjects):
        for i in range(per):
            rows.append((parts[j % len(parts)], f"{parts[j % len(parts)]}/{j:03d}", f"{j}_{i}", CLASSES[(i + j) % 3]))
    return rows


def test_per_seed_differences_and_parts_equal_a_hand_computation(tmp_path):
    base = samples()
    rng = np.random.default_rng(1)
    runs = {}
    for name in ("a", "b"):
        runs[name] = {seed: [(*r, CLASSES[int(rng.integers(0, 3))]) for r in base] for seed in (0, 1)}
    result = compare_runs(read_run(write_run(tmp_path / "a", runs["a"])),
                          read_run(write_run(tmp_path / "b", runs["b"])), rounds=200)

    def uf1(rows, part=None):
        kept = [r for r in rows if part is None or r[0] == part]
        return pooled_metrics([CLASSES.index(r[3]) for r in kept], [CLASSES.index(r[4]) for r in kept], 3)["uf1"]

    diffs = [uf1(runs["b"][s]) - uf1(runs["a"][s]) for s in (0, 1)]
    assert result["all"]["uf1"]["per_seed"] == pytest.approx(diffs, abs=1e-4)
    assert result["all"]["uf1"]["b_minus_a"] == pytest.approx(np.mean(diffs))
    assert result["all"]["uf1"]["seed_sd"] == pytest.approx(np.std(diffs, ddof=1))
    assert result["all"]["uf1"]["a"] == pytest.approx(np.mean([uf1(runs["a"][s]) for s in (0, 1)]))
    assert set(result["parts"]) == {"samm", "smic"}
    assert result["parts"]["smic"]["subjects"] == 3 and result["parts"]["smic"]["n"] == 12
    assert result["parts"]["smic"]["uf1"]["b"] == pytest.approx(np.mean([uf1(runs["b"][s], "smic") for s in (0, 1)]))
    low, high = result["all"]["uf1"]["bootstrap_95"]
    assert low <= high


def test_bootstrap_of_identical_runs_is_zero_and_of_a_better_run_is_positive(tmp_path):
    base = samples(n_subjects=8)
    truth = {0: [(*r, r[3]) for r in base], 1: [(*r, r[3]) for r in base]}
    wrong = {s: [(*r, CLASSES[(CLASSES.index(r[3]) + 1) % 3]) for r in base] for s in (0, 1)}
    perfect, worse = write_run(tmp_path / "perfect", truth), write_run(tmp_path / "worse", wrong)
    same = compare_runs(read_run(perfect), read_run(perfect), rounds=300)
    assert same["all"]["uf1"]["bootstrap_95"] == [0.0, 0.0] and same["all"]["uf1"]["b_ahead_share"] == 0.0
    better = compare_runs(read_run(worse), read_run(perfect), rounds=300)
    assert better["all"]["uf1"]["b_minus_a"] == pytest.approx(1.0)
    assert better["all"]["uf1"]["bootstrap_95"] == pytest.approx([1.0, 1.0])
    assert better["all"]["uf1"]["b_ahead_share"] == 1.0


def test_cli_prints_the_table_and_writes_json(tmp_path, capsys):
    base = samples()
    a = write_run(tmp_path / "a", {0: [(*r, "negative") for r in base]})
    b = write_run(tmp_path / "b", {0: [(*r, r[3]) for r in base]})
    assert compare_main([str(a), str(b), "--rounds", "50", "--json", str(tmp_path / "cmp.json"),
                         "--plot", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").read_bytes().startswith(b"\x89PNG")
    out = capsys.readouterr().out
    assert "bootstrap 95%" in out and "(one seed: the seeds' spread is unknown)" in out
    saved = json.loads((tmp_path / "cmp.json").read_text())
    assert saved["all"]["uf1"]["b"] == pytest.approx(1.0) and saved["all"]["uf1"]["seed_sd"] is None


@pytest.mark.parametrize("case", ["other-samples", "other-seeds", "no-run", "bad-label", "rounds"])
def test_bad_input_is_one_error_line(tmp_path, capsys, case):
    base = samples()
    a = write_run(tmp_path / "a", {0: [(*r, r[3]) for r in base], 1: [(*r, r[3]) for r in base]})
    argv = [str(a)]
    if case == "other-samples":
        argv.append(str(write_run(tmp_path / "b", {s: [(*r, r[3]) for r in base[1:]] for s in (0, 1)})))
    elif case == "other-seeds":
        argv.append(str(write_run(tmp_path / "b", {0: [(*r, r[3]) for r in base]})))
    elif case == "no-run":
        (tmp_path / "empty").mkdir()
        argv.append(str(tmp_path / "empty"))
    elif case == "bad-label":
        argv.append(str(write_run(tmp_path / "b", {s: [(*r[:3], "anger", r[3]) for r in base] for s in (0, 1)})))
    else:
        argv += [str(a), "--rounds", "0"]
    assert compare_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    expected = {"other-samples": "not runs on the same data (1 sample(s) only in the first", "other-seeds": "other seeds",
                "no-run": "holds no predictions.csv", "bad-label": "line 2: label 'anger'", "rounds": "--rounds"}[case]
    assert expected in err[0]
