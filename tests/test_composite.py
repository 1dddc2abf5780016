"""Composite motion-map folders: verbatim subjects, a dataset column, per-part metrics,
AU loss masked for rows without AU coding, multi-seed aggregates, the linear floor."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from data import get_protocol
from data.motion_maps import load_motion_maps
from main import main
from models import ModelConfig, build_model, compute_loss
from tests.helpers import FIVE_CLASS_DEFAULTS, loso_args
from utils.report import aggregate_seeds, part_metrics

THREE = get_protocol("3class")
CLASSES = THREE.classes


def write_folder(root: Path, rows: list[tuple[str, str, str, str]], seed: int = 0) -> Path:
    """rows: (dataset, subject, label, aus); a random 8x8 motion image per row, no faces."""
    import cv2

    rng = np.random.default_rng(seed)
    (root / "motion").mkdir(parents=True, exist_ok=True)
    with open(root / "index.csv", "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["dataset", "subject", "sample", "label", "motion", "face", "aus"])
        for n, (dataset, subject, label, aus) in enumerate(rows):
            name = f"m{n}.png"
            # the class shifts the red channel, so a model can learn something
            img = rng.integers(0, 60, (8, 8, 3)).astype(np.uint8) + 60 * CLASSES.index(label)
            cv2.imwrite(str(root / "motion" / name), img)
            out.writerow([dataset, subject, f"s{n}", label, f"motion/{name}", "", aus])
    return root


def composite_rows() -> list[tuple[str, str, str, str]]:
    rows = []
    for dataset, subjects, aus in (("samm", ("006", "007", "008"), "4+7"), ("smic", ("06", "s07", "s08"), "")):
        for subject in subjects:
            for label in CLASSES * 2:
                rows.append((dataset, subject, label, aus))
    return rows


def test_subjects_verbatim_and_dataset_part_of_identity(tmp_path):
    rows = [("samm", "006", "negative", "4"), ("smic", "06", "positive", ""), ("smic", "006", "surprise", "")]
    rows = [r for r in rows for _ in range(2)]
    data = load_motion_maps(write_folder(tmp_path, rows), THREE, img_size=8)
    assert sorted(set(data.subjects)) == ["samm/006", "smic/006", "smic/06"]   # three people, not one 'sub06'
    assert data.datasets == ["samm"] * 2 + ["smic"] * 4
    assert data.aus[0] is not None and data.aus[2] is None   # blank aus = not coded


def test_folder_without_dataset_column_keeps_subjects_as_written(tmp_path):
    root = write_folder(tmp_path, [("x", s, lab, "") for s in ("01", "sub01", "S1") for lab in CLASSES])
    text = (root / "index.csv").read_text().replace("dataset,", "", 1)
    (root / "index.csv").write_text("\n".join(line.split(",", 1)[1] if i else line
                                              for i, line in enumerate(text.splitlines())) + "\n")
    data = load_motion_maps(root, THREE, img_size=8)
    assert sorted(set(data.subjects)) == ["01", "S1", "sub01"] and not any(data.datasets)


def test_part_metrics_equal_a_hand_computation():
    datasets = ["a", "a", "a", "b", "b", "b", "b"]          # of samples 0..6
    idx, truth, preds = [6, 0, 1, 2, 3, 4, 5], [1, 0, 0, 1, 2, 1, 0], [1, 0, 1, 1, 2, 0, 0]  # pooled order
    parts = part_metrics(idx, truth, preds, datasets, 3)
    # part a = samples 0, 1, 2 = pooled positions 1, 2, 3: truth 0, 0, 1, preds 0, 1, 1
    # F1(0) = 2/3, F1(1) = 2/3; recall(0) = 1/2, recall(1) = 1
    assert parts["a"] == {"accuracy": pytest.approx(2 / 3), "uf1": pytest.approx(2 / 3),
                          "uar": pytest.approx(3 / 4), "n": 3}
    # part b = samples 6, 3, 4, 5 = pooled positions 0, 4, 5, 6: truth 1, 2, 1, 0, preds 1, 2, 0, 0
    # F1(0) = 2/3, F1(1) = 2/3, F1(2) = 1; recall(0) = 1, recall(1) = 1/2, recall(2) = 1
    assert parts["b"] == {"accuracy": pytest.approx(3 / 4), "uf1": pytest.approx(7 / 9),
                          "uar": pytest.approx(5 / 6), "n": 4}


def test_au_loss_leaves_out_uncoded_rows():
    cfg = ModelConfig(num_classes=3, img_size=16, au_loss_weight=1.0)
    logits = torch.zeros(4, 3)
    au_logits = torch.tensor([[4.0] * 9, [4.0] * 9, [-4.0] * 9, [-4.0] * 9])
    targets = torch.tensor([[1.0] * 9, [1.0] * 9, [0.0] * 9, [0.0] * 9])
    known = torch.tensor([True, True, False, False])
    _, coded_only = compute_loss({"logits": logits, "au_logits": au_logits}, torch.zeros(4, dtype=torch.long),
                                 targets, cfg, au_known=known)
    _, first_two = compute_loss({"logits": logits[:2], "au_logits": au_logits[:2]}, torch.zeros(2, dtype=torch.long),
                                targets[:2], cfg)
    assert coded_only["au"] == pytest.approx(first_two["au"])
    # an uncoded row with a wrong "all absent" target changes nothing
    targets[2:] = 1.0 - targets[2:]
    _, flipped = compute_loss({"logits": logits, "au_logits": au_logits}, torch.zeros(4, dtype=torch.long),
                              targets, cfg, au_known=known)
    assert flipped["au"] == pytest.approx(coded_only["au"])
    _, none_known = compute_loss({"logits": logits, "au_logits": au_logits}, torch.zeros(4, dtype=torch.long),
                                 targets, cfg, au_known=torch.zeros(4, dtype=torch.bool))
    assert none_known["au"] == 0.0


def test_class_weights_balance_the_cross_entropy():
    from engine import balanced_class_weights

    w = balanced_class_weights(torch.tensor([0, 0, 0, 1]), 3)
    assert w.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])


def test_logit_adjustment_shifts_the_logits_in_the_loss_only():
    from models import ClassTerms

    cfg = ModelConfig(num_classes=3)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 0, 0, 0, 1, 2])
    offsets = torch.log(torch.tensor([4 / 6, 1 / 6, 1 / 6]))
    _, adjusted = compute_loss({"logits": logits, "au_logits": None}, labels, None, cfg, ClassTerms(offsets=offsets))
    assert adjusted["ce"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits + offsets, labels)))
    _, plain = compute_loss({"logits": logits, "au_logits": None}, labels, None, cfg, ClassTerms())
    assert plain["ce"] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, labels)))
    # a rare-class sample that wins by a logit of 1 still costs what it would against a frequent class 4x as likely
    wins_rare = torch.tensor([[0.0, 1.0, 0.0]])
    _, rare_plain = compute_loss({"logits": wins_rare, "au_logits": None}, torch.tensor([1]), None, cfg)
    _, rare_adjusted = compute_loss({"logits": wins_rare, "au_logits": None}, torch.tensor([1]), None, cfg,
                                    ClassTerms(offsets=offsets))
    assert rare_plain["ce"] == pytest.approx(np.log((2 + np.e) / np.e))
    assert rare_adjusted["ce"] == pytest.approx(np.log((4 + np.e + 1) / np.e))


def test_label_smoothing_spreads_the_target():
    from options import build_parser, model_config

    logits, labels = torch.tensor([[3.0, 0.0, -1.0], [0.5, 0.2, 0.1]]), torch.tensor([0, 2])
    _, parts = compute_loss({"logits": logits, "au_logits": None}, labels, None, ModelConfig(num_classes=3,
                            label_smoothing=0.3))
    log_p = torch.log_softmax(logits, 1)
    target = torch.full((2, 3), 0.1)
    target[[0, 1], labels] = 0.8                                   # 1 - 0.3 + 0.3 / 3
    assert parts["ce"] == pytest.approx(float(-(target * log_p).sum(1).mean()))
    arrays = type("Arrays", (), {"face": None, "aus": [None]})()
    parse = build_parser("3class", FIVE_CLASS_DEFAULTS).parse_args
    assert model_config(parse([]), 3, arrays).label_smoothing == 0.0
    assert model_config(parse(["--label-smoothing", "0.1"]), 3, arrays).label_smoothing == 0.1


def test_class_terms_come_from_the_fold_training_labels():
    from engine import TrainSettings, class_terms

    settings = dict(epochs=1, batch_size=2, lr=0.1, weight_decay=0.0, optimizer="adam")
    labels = torch.tensor([0, 0, 0, 1])
    off = class_terms(labels, 3, TrainSettings(**settings))
    assert off.weights is None and off.offsets is None
    both = class_terms(labels, 3, TrainSettings(**settings, class_balance=True, logit_adjust=0.5))
    assert both.weights.tolist() == pytest.approx([4 / 9, 4 / 3, 0.0])
    # class 2 is absent: counted once, so every offset stays finite
    assert both.offsets.tolist() == pytest.approx([0.5 * np.log(3 / 5), 0.5 * np.log(1 / 5), 0.5 * np.log(1 / 5)])


def test_loss_flags_reach_the_training_settings_and_override_the_preset(tmp_path):
    from options import build_parser, resolve_args, train_settings

    parser = build_parser("3class", FIVE_CLASS_DEFAULTS)
    base = ["--raf_path", str(tmp_path), "--preset", "flow28"]
    preset = train_settings(resolve_args(parser, base), torch.device("cpu"))
    assert preset.class_balance and preset.logit_adjust == 0.0
    swapped = train_settings(resolve_args(parser, base + ["--no-class-balance", "--logit-adjust", "1"]),
                             torch.device("cpu"))
    assert not swapped.class_balance and swapped.logit_adjust == 1.0


def test_linear_floor_is_one_layer_on_the_motion_map():
    model = build_model(ModelConfig(num_classes=3, img_size=16, arch="linear"))
    assert sum(p.numel() for p in model.parameters()) == 3 * 16 * 16 * 3 + 3
    out = model(torch.randn(2, 3, 16, 16), torch.zeros(2, 3, 1, 1))
    assert out["logits"].shape == (2, 3) and out["au_logits"] is None


def test_composite_run_reports_each_part_and_seeds_aggregate(tmp_path):
    root = write_folder(tmp_path / "maps", composite_rows())
    argv = loso_args(root, tmp_path, "run", "--img-size", "16", "--seeds", "0,1",
                     "--folds", "samm/006,smic/06,smic/s07", "--batch_size", "8", "--val-subjects", "1")
    assert main("3class", FIVE_CLASS_DEFAULTS, argv) == 0
    run = tmp_path / "run"
    per_seed = {s: json.loads((run / f"seed{s}" / "summary.json").read_text()) for s in (0, 1)}
    for seed, summary in per_seed.items():
        # the recipe-selection figure: each fold's validation UF1 at the last epoch, averaged over folds
        last = {}
        for line in (run / f"seed{seed}" / "log.jsonl").read_text().splitlines():
            record = json.loads(line)
            last[record["fold"]] = record["val_uf1"]
        assert len(last) == 3 and summary["validation"]["uf1"] == pytest.approx(np.mean(list(last.values())), abs=1e-4)
        assert (run / f"seed{seed}" / "training_curves.png").read_bytes().startswith(b"\x89PNG")
        assert set(summary["parts"]) == {"samm", "smic"}
        assert summary["parts"]["samm"]["n"] == 6 and summary["parts"]["smic"]["n"] == 12
        with open(run / "seed0" / "predictions.csv") as fh:
            header = next(csv.reader(fh))
        assert header[:2] == ["dataset", "subject"]
    agg = json.loads((run / "summary.json").read_text())
    assert agg == json.loads(json.dumps(aggregate_seeds(per_seed)))
    uf1 = [per_seed[s]["uf1"] for s in (0, 1)]
    assert agg["uf1"]["mean"] == pytest.approx(np.mean(uf1))
    assert agg["uf1"]["sd"] == pytest.approx(np.std(uf1, ddof=1))
    assert agg["parts"]["smic"]["uar"]["mean"] == pytest.approx(
        np.mean([per_seed[s]["parts"]["smic"]["uar"] for s in (0, 1)]))
    assert agg["validation"]["uf1"]["mean"] == pytest.approx(
        np.mean([per_seed[s]["validation"]["uf1"] for s in (0, 1)]))


def test_seeds_run_refused_before_its_first_seed_can_be_run_again(tmp_path, capsys):
    root = write_folder(tmp_path / "maps", composite_rows())
    common = ("--img-size", "16", "--seeds", "0,1", "--batch_size", "8", "--epochs", "1")
    assert main("3class", FIVE_CLASS_DEFAULTS, loso_args(root, tmp_path, "run", *common, "--folds", "nobody")) == 2
    assert "nobody" in capsys.readouterr().err
    # nothing was trained, so the corrected command needs no --resume
    argv = loso_args(root, tmp_path, "run", *common, "--folds", "samm/006")
    assert main("3class", FIVE_CLASS_DEFAULTS, argv) == 0
    assert (tmp_path / "run" / "summary.json").exists()
    # a parent whose seeds have started is a run: the same command is refused
    assert main("3class", FIVE_CLASS_DEFAULTS, argv) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_one_seed_says_so():
    summary = {"uf1": 0.5, "uar": 0.5, "accuracy": 0.5, "n": 10}
    agg = aggregate_seeds({3: summary})
    assert agg["note"] == "rests on one seed: no spread" and agg["uf1"] == {"mean": 0.5, "sd": 0.0}


def test_a_single_dataset_name_does_not_rename_subjects(tmp_path):
    rows = [("casme2", s, lab, "4") for s in ("sub01", "sub02") for lab in CLASSES]
    data = load_motion_maps(write_folder(tmp_path, rows), THREE, img_size=8)
    assert sorted(set(data.subjects)) == ["sub01", "sub02"] and set(data.datasets) == {"casme2"}


def test_center_maps_puts_each_maps_zero_at_zero():
    from data.arrays import center_maps

    rng = np.random.default_rng(0)
    motion = np.zeros((2, 3, 6, 6), np.float32) + np.array([0.3, -0.5, 0.9], np.float32)[None, :, None, None]
    motion[:, :, :2, :2] += rng.normal(0, 1, (2, 3, 2, 2)).astype(np.float32)   # a small moving patch
    centered = center_maps(motion)
    assert np.allclose(centered[:, :, 3:, 3:], 0.0)          # the still part of the face reads zero
    assert np.allclose(centered[:, :, :2, :2], motion[:, :, :2, :2] - motion[:, :, 5:, 5:].mean((2, 3), keepdims=True))


def test_preset_applies_unless_a_flag_is_given():
    from options import PRESETS, build_parser, resolve_args

    parser = build_parser("3class", dict(batch_size=24, lr=0.0001, epochs=100))
    args = resolve_args(parser, ["--raf_path", "x", "--preset", "flow28", "--epochs", "7"])
    assert args.epochs == 7 and args.img_size == PRESETS["flow28"]["img_size"] and args.center_maps
    assert args.width == PRESETS["flow28"]["width"] and args.class_balance and args.shift == 2
    # a flag typed at its parser default still wins over the preset
    assert resolve_args(parser, ["--raf_path", "x", "--preset", "flow28", "--shift", "0"]).shift == 0
    assert args.tta_flip and not resolve_args(parser, ["--raf_path", "x", "--preset", "flow28", "--no-tta-flip"]).tta_flip


def test_aus_flag_sets_the_graph_nodes(tmp_path, capsys):
    root = write_folder(tmp_path / "f", composite_rows())
    base = ["--raf_path", str(root), "--img-size", "16", "--dry-run"]
    assert main("3class", FIVE_CLASS_DEFAULTS, base) == 0
    assert "AU7 18" in capsys.readouterr().out               # 3 subjects x 6 rows; 7 is no default node
    assert main("3class", FIVE_CLASS_DEFAULTS, base + ["--aus", "4,7"]) == 0
    assert "(not used as labels): none" in capsys.readouterr().out
    for bad in ("4,99", "4,4", "4", "4,x"):
        assert main("3class", FIVE_CLASS_DEFAULTS, base + ["--aus", bad]) == 2
        assert capsys.readouterr().err.startswith("error: argument --aus:")


def test_aus_flag_reaches_the_model(tmp_path):
    from options import build_parser, model_config

    args = build_parser("3class", FIVE_CLASS_DEFAULTS).parse_args(["--aus", "1,7,12"])
    arrays = type("Arrays", (), {"face": None, "aus": [None]})()
    assert model_config(args, 3, arrays).aus == (1, 7, 12)
    assert model_config(build_parser("3class", FIVE_CLASS_DEFAULTS).parse_args([]), 3, arrays).aus == ModelConfig().aus


def test_head_flags_reach_the_model():
    from options import build_parser, model_config

    arrays = type("Arrays", (), {"face": None, "aus": [None]})()
    parse = build_parser("3class", FIVE_CLASS_DEFAULTS).parse_args
    plain = model_config(parse([]), 3, arrays)
    assert not plain.linear_path and plain.readout == "mean"
    flagged = model_config(parse(["--linear-path", "--readout", "nodes"]), 3, arrays)
    assert flagged.linear_path and flagged.readout == "nodes"
