"""Folds spread over torchrun processes give the same run as a single process."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

from helpers import loso_args
from utils.distributed import assign_folds
from utils.run_state import fold_result_path

ROOT = Path(__file__).resolve().parents[1]


def cli(release: Path, tmp: Path, name: str, *extra: str) -> list[str]:
    # one thread per process in every run: floating-point sums depend on the thread count
    return [str(ROOT / "CASME2_5.py"), *loso_args(release, tmp, name, "--threads", "1", *extra)]


def torchrun(nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]


def test_assign_folds_balances_and_is_deterministic():
    costs = {"sub01": 10, "sub02": 9, "sub03": 8, "sub04": 3, "sub05": 2, "sub06": 1}
    shares = assign_folds(costs, 2)
    assert shares == assign_folds(dict(reversed(costs.items())), 2)
    assert sorted(s for share in shares for s in share) == sorted(costs)
    loads = [sum(costs[s] for s in share) for share in shares]
    assert max(loads) - min(loads) <= 1
    assert assign_folds(costs, 1) == [sorted(costs)]


def test_two_processes_match_one_process(loso_release, tmp_path):
    single = subprocess.run([sys.executable, *cli(loso_release, tmp_path, "single")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    double = subprocess.run([*torchrun(2), *cli(loso_release, tmp_path, "double")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert double.returncode == 0, double.stderr
    a, b = tmp_path / "single", tmp_path / "double"
    assert (a / "predictions.csv").read_text() == (b / "predictions.csv").read_text()
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert (sa["accuracy"], sa["uf1"], sa["uar"], sa["n"]) == (sb["accuracy"], sb["uf1"], sb["uar"], sb["n"])
    ranks = json.loads((b / "fold_assignment.json").read_text())["ranks"]
    assert len(ranks) == 2 and all(len(share) == 2 for share in ranks.values())
    assert sorted(ranks["0"] + ranks["1"]) == ["sub01", "sub02", "sub03", "sub04"]


def test_resume_with_another_process_count_finishes_missing_folds(loso_release, tmp_path):
    first = subprocess.run([sys.executable, *cli(loso_release, tmp_path, "run", "--folds", "sub02")], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    (tmp_path / "run" / "summary.json").unlink()
    # A run of all folds is what a killed full run looks like after one finished fold.
    saved = yaml.safe_load((tmp_path / "run" / "args.yaml").read_text())
    saved["folds"] = None
    (tmp_path / "run" / "args.yaml").write_text(yaml.safe_dump(saved))
    done = fold_result_path(tmp_path / "run", "sub02").read_text()
    resumed = subprocess.run([*torchrun(2), str(ROOT / "CASME2_5.py"), "--resume", str(tmp_path / "run")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert fold_result_path(tmp_path / "run", "sub02").read_text() == done  # kept, not retrained
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["folds"] == ["sub01", "sub02", "sub03", "sub04"] and summary["n"] == 24


def test_a_failing_rank_stops_the_job_without_a_summary(loso_release, tmp_path):
    result = subprocess.run([*torchrun(2), *cli(loso_release, tmp_path, "run", "--lr", "10", "--optimizer", "sgd")], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert re.search(r"error: rank [01], fold sub0\d: the training loss became", result.stderr), result.stderr
    assert not (tmp_path / "run" / "summary.json").exists()
