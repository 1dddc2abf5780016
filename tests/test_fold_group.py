"""Folds trained together (fold_set, fold_forms) give what they give alone, and resume exactly."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import DatasetTensors, TrainSettings
from fold_set import fold_groups, run_fold, run_fold_group
from main import main
from models import ModelConfig
from utils.checkpoint import RunFacts
from tests.helpers import FIVE_CLASS_DEFAULTS, loso_args
from tests.test_composite import composite_rows, write_folder

CPU = torch.device("cpu")
FACTS = RunFacts(["a", "b", "c"], {}, {})


def paths(folder: Path, folds: list[str]) -> list[Path]:
    """One checkpoint per fold, as a run keeps them."""
    return [folder / f"{s}.pt" for s in folds]


def tensors(cfg: ModelConfig, sizes: dict[str, int], seed: int = 0) -> DatasetTensors:
    """Random motion with a class signal, AUs on some rows; `sizes`: samples per subject."""
    rng = np.random.default_rng(seed)
    subjects = [s for s, n in sizes.items() for _ in range(n)]
    n = len(subjects)
    labels = rng.integers(0, cfg.num_classes, n)
    motion = rng.normal(0, 1, (n, 3, cfg.img_size, cfg.img_size)).astype(np.float32) + 0.3 * labels[:, None, None, None]
    face = rng.integers(0, 255, (n, 3, cfg.img_size, cfg.img_size)).astype(np.uint8)
    au = (rng.random((n, len(cfg.aus))) < 0.3).astype(np.float32)
    return DatasetTensors.from_arrays(motion, face, labels, au, subjects, [str(i) for i in range(n)], CPU, cfg.grid,
                                      au_known=rng.random(n) < 0.7)


EQUAL = {f"s{i}": 6 for i in range(4)}
# holding out s0, s1, s2 leaves 19, 18, 17 samples: 3 batches of 6 each (19's last batch of one is
# left out), but s2's last batch holds 5, so the last step runs two vmapped calls
UNEQUAL = {"s0": 5, "s1": 6, "s2": 7, "s3": 6}


@pytest.mark.parametrize("arch, val_subjects, shift, mixup, erase, sizes", [
    ("amgcn", 0, 0, 0.0, 0.0, EQUAL), ("mmnet", 1, 0, 0.0, 0.0, EQUAL), ("amgcn", 0, 2, 0.4, 0.5, EQUAL),
    ("amgcn", 0, 0, 0.0, 0.0, UNEQUAL)])
def test_folds_together_equal_folds_alone(tmp_path, arch, val_subjects, shift, mixup, erase, sizes):
    cfg = ModelConfig(num_classes=3, img_size=16, width=0.0625, vit_depth=1, arch=arch)
    data = tensors(cfg, sizes)
    settings = TrainSettings(epochs=2, batch_size=6, lr=1e-3, weight_decay=1e-4, optimizer="adamw",
                             class_balance=True, val_subjects=val_subjects, shift=shift, mixup=mixup,
                             erase=erase)
    folds = ["s0", "s1", "s2"] if sizes is UNEQUAL else ["s0", "s2", "s3"]
    alone = [run_fold(s, data, cfg, settings, 7, CPU, tmp_path / f"{s}.pt", FACTS) for s in folds]
    together = run_fold_group(folds, data, cfg, settings, 7, CPU, paths(tmp_path / "group", folds), FACTS)
    for a, t in zip(alone, together):
        assert (a.subject, a.indices, a.selected_epoch) == (t.subject, t.indices, t.selected_epoch)
        assert (a.val_uf1 is None) == (t.val_uf1 is None) == (val_subjects == 0)
        if val_subjects:
            assert a.val_uf1 == pytest.approx(t.val_uf1, abs=1e-6)
        assert np.allclose(a.probs, t.probs, atol=5e-3), a.subject
    # training changed each fold's model differently: the folds did not share weights
    assert len({tuple(map(tuple, t.probs)) for t in together}) == len(folds)


def test_groups_hold_folds_whose_epochs_hold_as_many_batches():
    cfg = ModelConfig(num_classes=3, img_size=16)
    settings = TrainSettings(epochs=1, batch_size=4, lr=1e-3, weight_decay=0.0, optimizer="adam")
    data = tensors(cfg, {"a": 2, "b": 3, "c": 2, "d": 2, "e": 3})
    # holding out a 3-sample subject leaves 9 samples: 2 batches (the last one of one is left out);
    # a 2-sample one leaves 10: 3 batches
    assert fold_groups(["a", "b", "c", "d", "e"], data, settings, 0, max_group=2) == [["b", "e"], ["a", "c"], ["d"]]
    data = tensors(cfg, {"a": 2, "b": 3, "c": 4, "d": 2, "e": 3})
    # 12, 11, 10, 12, 11 samples: 3 batches each, one group although the sets differ in size
    assert fold_groups(["a", "b", "c", "d", "e"], data, settings, 0, max_group=8) == [["a", "b", "c", "d", "e"]]


def test_a_killed_group_resumes_exactly(tmp_path):
    cfg = ModelConfig(num_classes=3, img_size=16, width=0.0625, vit_depth=1)
    data = tensors(cfg, {f"s{i}": 6 for i in range(4)})
    settings = TrainSettings(epochs=3, batch_size=6, lr=1e-3, weight_decay=1e-4, optimizer="adam",
                             checkpoint_interval=0.0)
    folds = ["s1", "s2"]
    unbroken = run_fold_group(folds, data, cfg, settings, 0, CPU, paths(tmp_path / "a", folds), FACTS)

    def kill_after_epoch_2(record: dict) -> None:
        if record["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_fold_group(folds, data, cfg, settings, 0, CPU, paths(tmp_path / "b", folds), FACTS,
                       on_epoch=kill_after_epoch_2)
    resumed = run_fold_group(folds, data, cfg, settings, 0, CPU, paths(tmp_path / "b", folds), FACTS)
    assert [r.probs for r in resumed] == [r.probs for r in unbroken]


def test_command_line_folds_together(tmp_path):
    root = write_folder(tmp_path / "maps", composite_rows())
    probs = {}
    for name, extra in (("alone", []), ("together", ["--folds-together", "8"])):
        argv = loso_args(root, tmp_path, name, "--img-size", "16", "--width", "0.0625", "--batch_size", "6",
                         "--folds", "samm/006,samm/007,smic/06", *extra)
        assert main("3class", FIVE_CLASS_DEFAULTS, argv) == 0
        with open(tmp_path / name / "predictions.csv") as fh:
            rows = sorted(csv.reader(fh))
        probs[name] = np.array([[float(x) for x in r[-3:]] for r in rows if r[0] != "dataset"])
    assert probs["alone"].shape == (18, 3)
    assert np.allclose(probs["alone"], probs["together"], atol=5e-3)


@pytest.mark.parametrize("samples, batch_size", [(9, 4), (10, 4), (12, 4), (13, 6), (5, 8), (1, 4)])
def test_batches_per_epoch_counts_what_training_batches_yields(samples, batch_size):
    from augment import batches_per_epoch, training_batches

    cfg = ModelConfig(num_classes=3, img_size=16)
    data = tensors(cfg, {"a": samples})
    yielded = training_batches(data, torch.arange(samples), torch.ones(1, 3, 1, 1), batch_size,
                               torch.Generator().manual_seed(0), CPU)
    assert sum(1 for _ in yielded) == batches_per_epoch(samples, batch_size)
