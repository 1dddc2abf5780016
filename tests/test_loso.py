"""End-to-end LOSO runs of the entry scripts on a tiny synthetic release."""
from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import engine
import fold_forms
import fold_set
from data.synthetic import generate_release
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main
from utils.paths import file_stem, run_checkpoint_dir
from utils.run_state import checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
FIVE = FIVE_CLASS_DEFAULTS


def read_predictions(run: Path) -> list[dict]:
    with open(run / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def hand_metrics(rows: list[dict]) -> dict:
    labels = [r["label"] for r in rows]
    preds = [r["pred"] for r in rows]
    f1s, recalls = [], []
    for c in sorted(set(labels)):
        tp = sum(1 for y, p in zip(labels, preds) if y == c and p == c)
        fp = sum(1 for y, p in zip(labels, preds) if y != c and p == c)
        fn = sum(1 for y, p in zip(labels, preds) if y == c and p != c)
        f1s.append(2 * tp / (2 * tp + fp + fn))
        recalls.append(tp / (tp + fn))
    return {"accuracy": sum(y == p for y, p in zip(labels, preds)) / len(rows),
            "uf1": sum(f1s) / len(f1s), "uar": sum(recalls) / len(recalls), "n": len(rows)}


def test_run_folder_and_pooled_metrics_match_predictions(loso_release, tmp_path, capsys):
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run")) == 0
    run = tmp_path / "run"
    for name in ("args.yaml", "log.jsonl", "predictions.csv", "folds.csv", "summary.json", "confusion_matrix.png"):
        assert (run / name).is_file(), name
    rows = read_predictions(run)
    assert list(rows[0])[:4] == ["subject", "sample", "label", "pred"]
    assert [c for c in rows[0] if c.startswith("p_")] == [f"p_{c}" for c in
                                                          ("happiness", "surprise", "disgust", "repression", "others")]
    for r in rows:  # the predicted class is the most probable one, and probabilities sum to 1
        probs = [float(v) for k, v in r.items() if k.startswith("p_")]
        assert abs(sum(probs) - 1) < 1e-4
        assert r["pred"] == ["happiness", "surprise", "disgust", "repression", "others"][int(np.argmax(probs))]
    summary = json.loads((run / "summary.json").read_text())
    expected = hand_metrics(rows)
    for key in ("accuracy", "uf1", "uar"):
        assert summary[key] == pytest.approx(expected[key], abs=1e-9), key
    assert summary["n"] == expected["n"] == 24
    assert sorted({r["subject"] for r in rows}) == ["sub01", "sub02", "sub03", "sub04"]
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 * 2 and {r["fold"] for r in log} == {"sub01", "sub02", "sub03", "sub04"}
    ckpts = sorted(p.name for p in run_checkpoint_dir(tmp_path / "ckpt", run).iterdir())
    assert ckpts == sorted(f"{file_stem(s)}.pt" for s in ("sub01", "sub02", "sub03", "sub04"))
    out = capsys.readouterr().out
    assert "pooled" in out and f"{summary['uf1']:.3f}" in out


def test_no_fold_sees_its_held_out_subject(loso_release, tmp_path, monkeypatch):
    seen: dict[str, set[str]] = {}
    adjacency_inputs: list[int] = []
    real_train, real_adj = engine.train_one_epoch, engine.cooccurrence_adjacency

    def spy_train(model, data, train_idx, *args, **kwargs):
        seen.setdefault(current["subject"], set()).update(data.subjects[i] for i in train_idx.tolist())
        return real_train(model, data, train_idx, *args, **kwargs)

    def spy_adj(au, *args):
        adjacency_inputs.append(len(au))
        return real_adj(au, *args)

    real_fold = fold_set.run_fold
    current = {}

    def spy_fold(subject, *args, **kwargs):
        current["subject"] = subject
        return real_fold(subject, *args, **kwargs)

    monkeypatch.setattr(fold_forms, "train_one_epoch", spy_train)
    monkeypatch.setattr(engine, "cooccurrence_adjacency", spy_adj)
    monkeypatch.setattr("main.run_fold", spy_fold)
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run", "--val-subjects", "1")) == 0
    assert set(seen) == {"sub01", "sub02", "sub03", "sub04"}
    for held_out, trained_on in seen.items():
        assert held_out not in trained_on
        assert len(trained_on) == 2  # 3 training subjects, one of them kept for validation
    assert adjacency_inputs == [12] * 4  # AU statistics from the 2 fitting subjects x 6 samples
    folds = list(csv.DictReader(open(tmp_path / "run" / "folds.csv")))
    assert all(1 <= int(f["epoch"]) <= 2 for f in folds)


def test_easy_synthetic_release_is_learned_above_chance(tmp_path):
    easy = generate_release(tmp_path / "easy", subjects=5, per_subject=12, size=(48, 56), seed=11,
                            clip_len=(8, 10), emotions=("happiness", "surprise", "disgust"))
    args = loso_args(easy, tmp_path, "run")
    args[args.index("--epochs") + 1] = "12"
    args[args.index("--img-size") + 1] = "48"
    assert main("3class", dict(batch_size=16, lr=0.001, epochs=12), args) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # Chance UF1 for 3 balanced classes is about 0.33.
    assert summary["uf1"] > 0.6, summary


def test_folds_flag_runs_only_those_subjects(loso_release, tmp_path):
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run", "--folds", "1,sub03")) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["folds"] == ["sub01", "sub03"]
    assert {r["subject"] for r in read_predictions(tmp_path / "run")} == {"sub01", "sub03"}


def test_report_oracle_is_labelled_and_separate(loso_release, tmp_path, capsys):
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run", "--report-oracle")) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    oracle = summary["oracle_optimistic"]
    assert "optimistic" in oracle["note"] and oracle["n"] == summary["n"]
    assert oracle["accuracy"] >= summary["accuracy"] - 1e-9  # picks the best epoch, including the last
    assert "optimistic" in capsys.readouterr().out


def _cli(*args: str, cwd: Path = ROOT) -> list[str]:
    return [sys.executable, str(ROOT / "CASME2_5.py"), *args]


def test_kill_then_resume_matches_uninterrupted_run(loso_release, tmp_path):
    whole = loso_args(loso_release, tmp_path, "whole", "--epochs", "3", "--checkpoint-interval", "0")
    assert main("5class", FIVE, whole) == 0

    killed = loso_args(loso_release, tmp_path, "killed", "--epochs", "3", "--checkpoint-interval", "0")
    proc = subprocess.Popen(_cli(*killed), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    log = tmp_path / "killed" / "log.jsonl"
    deadline = time.time() + 600
    while len(log.read_text().splitlines()) < 5 if log.exists() else True:  # kill within the second fold
        if proc.poll() is not None:
            pytest.fail("the run ended before it could be killed")
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run did not reach its second fold in time")
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "summary.json").exists()
    done_before = sorted(p.name for p in (tmp_path / "killed" / "folds").glob("*.json"))
    assert 1 <= len(done_before) < 4

    resumed = subprocess.run(_cli("--resume", str(tmp_path / "killed"), "--device", "cpu"), cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "killed" / "predictions.csv").read_text() == (tmp_path / "whole" / "predictions.csv").read_text()
    a = json.loads((tmp_path / "killed" / "summary.json").read_text())
    b = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert (a["accuracy"], a["uf1"], a["uar"]) == (b["accuracy"], b["uf1"], b["uar"])


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-1"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--batch_size", "0"], "--batch_size"),
    (["--img-size", "8"], "--img-size"),
    (["--folds", "sub99"], "--folds"),
    (["--device", "tpu"], "--device"),
    (["--pretrained", "/nonexistent/weights.pt"], "--pretrained"),
    (["--layout", "weird"], "--layout"),
    (["--protocol", "7class"], "--protocol"),
    (["--resume", "/nonexistent/run"], "--resume"),
    (["--embed-dim", "30"], "--embed-dim"),
])
def test_bad_flag_values_exit_2_with_a_clear_message(loso_release, tmp_path, capsys, flags, message):
    try:
        code = main("5class", FIVE, loso_args(loso_release, tmp_path, "run") + flags)
    except SystemExit as e:  # argparse's own errors (unknown choices)
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "error" in err


def test_bad_input_from_the_command_line_has_no_traceback(loso_release, tmp_path):
    for args in (["--raf_path", str(tmp_path / "nowhere")], [*loso_args(loso_release, tmp_path, "run"), "--lr", "0"]):
        result = subprocess.run(_cli(*args), cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
        assert ("--raf_path" if "nowhere" in args[1] else "--lr") in result.stderr


def test_a_new_run_never_reuses_an_earlier_runs_files(loso_release, tmp_path, capsys):
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run", "--folds", "1", "--epochs", "1")) == 0
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run", "--folds", "1")) == 2
    assert "--resume" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "run")  # the run folder is gone, its checkpoints are not
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "run", "--folds", "1")) == 2
    assert "checkpoints of an earlier run" in capsys.readouterr().err


def test_pretrained_weights_are_loaded_and_reported(loso_release, tmp_path, capsys):
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "first", "--folds", "1", "--epochs", "1")) == 0
    weights = checkpoint_path(run_checkpoint_dir(tmp_path / "ckpt", tmp_path / "first"), "sub01")
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "second", "--folds", "1", "--epochs", "1",
                                          "--pretrained", str(weights))) == 0
    err = capsys.readouterr().err
    loaded, total = (int(w) for w in err.split("pretrained: ")[1].split(" tensors")[0].split(" of "))
    assert loaded == total > 0  # same architecture: every tensor fits
    unrelated = tmp_path / "unrelated.pt"
    torch.save({"something.else": torch.zeros(3)}, unrelated)
    assert main("5class", FIVE, loso_args(loso_release, tmp_path, "third", "--pretrained", str(unrelated))) == 2
    assert "no tensor matches" in capsys.readouterr().err
