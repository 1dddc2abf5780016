"""The final model file (--final), predict.py and its explanations, on a tiny synthetic release."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import predict
from data.action_units import ActionUnit
from data.arrays import source_arrays
from data.protocols import get_protocol
from data.release import load_release
from engine import DatasetTensors, TrainSettings, evaluate, load_pretrained
from helpers import FIVE_CLASS_DEFAULTS, loso_args
from main import main as loso_main
from models import ModelConfig, build_model
from utils.explain import explain
from utils.face_regions import au_boxes
from utils.model_file import MODEL_FILE, model_record
from utils.paths import run_checkpoint_dir
from utils.run_state import checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
CLASSES = list(get_protocol("5class").classes)


@pytest.fixture(scope="module")
def trained(loso_release, tmp_path_factory) -> dict:
    """The shared LOSO release, a one-fold LOSO run with --final on it, and where its files are."""
    tmp = tmp_path_factory.mktemp("predict")
    assert loso_main("5class", FIVE_CLASS_DEFAULTS, loso_args(loso_release, tmp, "run", "--folds", "1", "--final")) == 0
    run = tmp / "run"
    return {"tmp": tmp, "release": loso_release, "run": run, "model": run / MODEL_FILE, "cache": tmp / "cache",
            "fold": checkpoint_path(run_checkpoint_dir(tmp / "ckpt", run), "sub01")}


def run_predict(capsys, *argv: str) -> tuple[int, str, str]:
    code = predict.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def engine_probabilities(trained: dict, tta_flip: bool = False) -> tuple[list[str], np.ndarray]:
    """'subject/sample' names and class probabilities of every sample, by engine.evaluate on model.pt."""
    record = torch.load(trained["model"], weights_only=True)
    cfg = ModelConfig(**record["config"])
    model = build_model(cfg)
    model.load_state_dict(record["model"])
    release = load_release(trained["release"], get_protocol("5class"))
    arrays = source_arrays(release, motion="diff", img_size=32, cache_dir=trained["cache"], workers=0, strict=False,
                           progress=False)
    au, au_known = arrays.au_targets(cfg.aus)
    data = DatasetTensors.from_arrays(arrays.motion, arrays.face, arrays.labels, au, arrays.subjects, arrays.names,
                                      torch.device("cpu"), cfg.grid, au_known=au_known)
    settings = TrainSettings(epochs=1, batch_size=2, lr=1.0, weight_decay=0.0, optimizer="adam", tta_flip=tta_flip)
    probs = evaluate(model, data, torch.arange(len(data.labels)), record["motion_scale"].view(1, 3, 1, 1), settings,
                     torch.device("cpu"))
    return [f"{s}/{n}" for s, n in zip(arrays.subjects, arrays.names)], probs.numpy()


def test_model_file_round_trip(trained):
    record = torch.load(trained["model"], weights_only=True)
    cfg = ModelConfig(**record["config"])
    assert record["classes"] == CLASSES and record["aus"] == list(cfg.aus) and cfg.img_size == 32
    model = build_model(cfg)
    model.load_state_dict(record["model"])               # strict: every tensor fits the rebuilt network
    assert torch.equal(record["adjacency"], record["model"]["graph.adjacency"])
    assert not torch.equal(record["adjacency"], torch.eye(len(cfg.aus)))   # the AU co-occurrence, not the identity
    assert record["flip_signs"] == [1.0, 1.0, 1.0]
    pre = record["preprocessing"]
    assert (pre["img_size"], pre["motion"], pre["protocol"], pre["dataset"], pre["layout"]) == \
        (32, "diff", "5class", "release", "cropped")
    assert record["training"]["subjects"] == ["sub01", "sub02", "sub03", "sub04"] and record["training"]["samples"] == 24
    # the motion scale is each channel's standard deviation over every training sample
    release = load_release(trained["release"], get_protocol("5class"))
    arrays = source_arrays(release, motion="diff", img_size=32, cache_dir=trained["cache"], workers=0, strict=False,
                           progress=False)
    expected = torch.from_numpy(arrays.motion).std(dim=(0, 2, 3))
    assert torch.allclose(record["motion_scale"], expected, rtol=1e-5)
    # --pretrained takes the file as it is: every tensor loads
    loaded, total = load_pretrained(build_model(cfg), trained["model"])
    assert loaded == total


def test_final_only_trains_the_same_model(trained):
    run = trained["tmp"] / "final-only"
    argv = loso_args(trained["release"], trained["tmp"], "final-only", "--final-only")
    assert loso_main("5class", FIVE_CLASS_DEFAULTS, argv) == 0
    assert not (run / "summary.json").exists()         # no LOSO ran
    alone, after = torch.load(run / MODEL_FILE, weights_only=True), torch.load(trained["model"], weights_only=True)
    for name, tensor in after["model"].items():        # same recipe and seed: the same weights
        assert torch.allclose(alone["model"][name].float(), tensor.float(), atol=1e-6), name


def test_predict_equals_engine_evaluation(trained, capsys, tmp_path):
    names, expected = engine_probabilities(trained)
    table = tmp_path / "all.csv"
    code, out, _ = run_predict(capsys, "--model", trained["model"], "--raf_path", trained["release"], "--csv", table)
    assert code == 0
    rows = read_csv(table)
    assert [r["sample"] for r in rows] == names
    got = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in rows])
    assert np.abs(got - expected).max() < 1e-4          # the CSV keeps 4 decimals
    assert [r["pred"] for r in rows] == [CLASSES[i] for i in expected.argmax(1)]
    assert all(0 <= float(r["au12"]) <= 1 for r in rows) and "accuracy" in out

    # single clips, given as a frame folder with frame numbers, are prepared exactly as in the release
    samples = [s for s in load_release(trained["release"], get_protocol("5class")).samples if s.apex is not None][:3]
    for sample in samples:
        code, out, err = run_predict(capsys, "--model", trained["model"], "--clip", sample.frame_dir,
                                     "--onset", sample.onset, "--apex", sample.apex)
        assert code == 0, err
        header, row = out.splitlines()[:2]
        cells = dict(zip(header.split(), row.split()))
        want = expected[names.index(f"{sample.subject}/{sample.filename}")]
        assert np.abs(np.array([float(cells[f"p_{c}"]) for c in CLASSES]) - want).max() < 1e-4


def test_predict_tests_on_mirror_images_as_the_model_was_tested(trained, capsys, tmp_path):
    record = torch.load(trained["model"], weights_only=True)
    assert record["preprocessing"]["tta_flip"] is False
    record["preprocessing"]["tta_flip"] = True          # as --final --tta-flip writes it
    flipped = tmp_path / "tta.pt"
    torch.save(record, flipped)
    names, expected = engine_probabilities(trained, tta_flip=True)
    _, plain = engine_probabilities(trained)
    assert np.abs(expected - plain).max() > 1e-3
    table = tmp_path / "tta.csv"
    code, _, err = run_predict(capsys, "--model", flipped, "--raf_path", trained["release"], "--csv", table)
    assert code == 0, err
    got = np.array([[float(r[f"p_{c}"]) for c in CLASSES] for r in read_csv(table)])
    assert np.abs(got - expected).max() < 1e-4


def test_fold_checkpoint_predicts_as_its_fold(trained, capsys, tmp_path):
    fold_rows = [r for r in read_csv(trained["run"] / "predictions.csv") if r["subject"] == "sub01"]
    table = tmp_path / "fold.csv"
    code, _, err = run_predict(capsys, "--model", trained["fold"], "--raf_path", trained["release"], "--csv", table)
    assert code == 0, err
    rows = {r["sample"]: r for r in read_csv(table)}
    for want in fold_rows:
        got = rows[f"sub01/{want['sample']}"]
        for c in CLASSES:
            assert abs(float(got[f"p_{c}"]) - float(want[f"p_{c}"])) < 1e-4, c


def test_a_fold_checkpoint_of_the_earlier_layout_is_refused_in_one_line(trained, capsys, tmp_path):
    ckpt = torch.load(trained["fold"], weights_only=True)
    earlier = {k: ckpt[k] for k in ("model", "optimizer", "scheduler", "epoch", "subject", "best", "oracle_preds")}
    earlier.update(args=ckpt["training"]["args"], motion_scale=ckpt["motion_scale"])   # what it held instead
    old = tmp_path / "old.pt"
    torch.save(earlier, old)
    code, out, err = run_predict(capsys, "--model", old, "--raf_path", trained["release"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "earlier layout" in err and "model.pt" in err


def test_explain_writes_one_picture_per_sample(trained, capsys, tmp_path):
    sample = next(s for s in load_release(trained["release"], get_protocol("5class")).samples if s.apex is not None)
    code, _, err = run_predict(capsys, "--model", trained["model"], "--onset", sample.onset_path,
                               "--apex", sample.apex_path, "--explain", tmp_path / "why")
    assert code == 0, err
    pictures = list((tmp_path / "why").glob("*.png"))
    assert len(pictures) == 1
    image = cv2.imread(str(pictures[0]))
    assert image is not None and image.shape[1] > 3 * image.shape[0]   # five panels side by side


# --------------------------------------------------------------------------- Grad-CAM

SIDE = 32


def region_motion(unit: ActionUnit) -> torch.Tensor:
    """(1, 3, S, S) a difference image that is zero except inside `unit`'s first box, like skin moving there."""
    x0, y0, x1, y1 = (round(v * SIDE) for v in au_boxes(unit.au, unit.side)[0])
    motion = torch.zeros(1, 3, SIDE, SIDE)
    motion[:, :, y0:y1, x0:x1] = torch.randn(1, 3, y1 - y0, x1 - x0, generator=torch.Generator().manual_seed(unit.au))
    return motion


def local_model(cfg: ModelConfig) -> torch.nn.Module:
    """An AM-GCN whose motion-branch convolutions keep only their centre tap: each cell of the fused map then
    reads the one input pixel under it, so motion in one region reaches that region's cells and no other."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for conv in (m for m in model.motion.modules() if isinstance(m, torch.nn.Conv2d)):
            k = conv.kernel_size[0] // 2
            centre = conv.weight[:, :, k, k].clone()
            conv.weight.zero_()
            conv.weight[:, :, k, k] = centre
    return model


def test_grad_cam_peaks_inside_the_moved_region():
    """Grad-CAM must put its peak, and all its mass, in the cells whose input moved. The model is random but
    local by construction, so where its evidence can be is known exactly; a transposed, flipped or mirrored
    map fails (one-sided regions, R12 and L2, put those elsewhere)."""
    cfg = ModelConfig(num_classes=5, img_size=SIDE, width=0.25, embed_dim=32, vit_depth=1, use_pos=False)
    model = local_model(cfg)
    stride = SIDE // cfg.grid                                     # input pixels per cell
    for unit in (ActionUnit(12, "R"), ActionUnit(2, "L"), ActionUnit(17)):
        motion = region_motion(unit)
        moved = (motion[0, :, ::stride, ::stride] != 0).any(0).numpy()          # (g, g) cells whose pixel moved
        x0, y0, x1, y1 = au_boxes(unit.au, unit.side)[0]
        rows, cols = np.nonzero(moved)
        assert moved.any() and (rows >= int(y0 * cfg.grid)).all() and (rows < y1 * cfg.grid).all() \
            and (cols >= int(x0 * cfg.grid)).all() and (cols < x1 * cfg.grid).all(), (unit, moved)   # the setup
        explained = 0
        for target in range(cfg.num_classes):
            found = explain(model, motion, torch.zeros(1, 3, cfg.grid, cfg.grid), target=target)
            if found.cam.max() == 0:   # this class's evidence is negative everywhere: nothing to show
                continue
            explained += 1
            assert moved[np.unravel_index(found.cam.argmax(), found.cam.shape)], (unit, target, found.cam)
            assert (found.cam[~moved] == 0).all(), (unit, target, found.cam)
        assert explained >= 1, unit


# --------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_files(trained, tmp_path_factory) -> dict:
    """Files each case below gets wrong in its own way."""
    tmp = tmp_path_factory.mktemp("bad")
    files = {"text": tmp / "notes.pt", "list": tmp / "list.pt", "nodict": tmp / "nodict.pt",
             "misfit": tmp / "misfit.pt", "flow": tmp / "flow.pt", "linear": tmp / "linear.pt",
             "jpg": tmp / "broken.jpg", "grey": tmp / "grey.png", "two": tmp / "two.npy",
             "diffmap": tmp / "diff.npy", "flowmap": tmp / "flow.npy", "face": tmp / "face.png",
             "blocker": tmp / "blocker", "objects": tmp / "objects.pt"}
    files["text"].write_text("not a model")
    torch.save([1, 2, 3], files["list"])
    torch.save({"weights": torch.zeros(2)}, files["nodict"])
    torch.save({"model": {}, "where": Path("somewhere")}, files["objects"])     # a Python object in it
    record = torch.load(trained["model"], weights_only=True)
    misfit = dict(record, config=dict(record["config"], num_classes=3), classes=CLASSES[:3])
    torch.save(misfit, files["misfit"])
    flow_reading = dict(record["preprocessing"]["maps"], range=[[-3.0, 3.0], [-3.0, 3.0], [0.0, 2.0]],
                        position=[[0.2, 0.8], [0.2, 0.8], [0.0, 0.2]])    # strain: never negative, mostly still
    torch.save(dict(record, preprocessing=dict(record["preprocessing"], motion="flow", flow_method="farneback",
                                               maps=flow_reading)), files["flow"])
    linear = ModelConfig(num_classes=5, img_size=32, arch="linear")
    torch.save(model_record(build_model(linear).state_dict(), linear, CLASSES, torch.eye(9), torch.ones(3), (1.0, 1.0, 1.0),
                            record["preprocessing"], {}), files["linear"])
    files["jpg"].write_bytes(b"\xff\xd8 truncated")
    cv2.imwrite(str(files["grey"]), np.full((20, 20), 128, np.uint8))
    np.save(files["two"], np.zeros((20, 20, 2), np.float32))
    rng = np.random.default_rng(0)
    np.save(files["diffmap"], rng.normal(0, 0.05, (3, 20, 20)).astype(np.float32))     # signed in every channel
    np.save(files["flowmap"], np.abs(rng.normal(0, 0.05, (3, 20, 20))).astype(np.float32))   # strain >= 0
    cv2.imwrite(str(files["face"]), np.full((20, 20, 3), 128, np.uint8))
    files["blocker"].write_text("a file where a folder should be")
    return files


def bad_cases(t: dict, f: dict) -> dict[str, tuple[list, str]]:
    """case -> (arguments after --model ..., text the error line must hold)."""
    model = t["model"]
    clip = next(s for s in load_release(t["release"], get_protocol("5class")).samples if s.apex is not None)
    onset, apex = str(clip.onset), str(clip.apex)
    return {
        "model missing": (["--model", t["tmp"] / "none.pt", "--motion-map", f["diffmap"]], "none.pt: no such file"),
        "model not torch": (["--model", f["text"], "--motion-map", f["diffmap"]], "notes.pt: not a PyTorch file"),
        "model a list": (["--model", f["list"], "--motion-map", f["diffmap"]], "list.pt: neither a model file"),
        "model foreign dict": (["--model", f["nodict"], "--motion-map", f["diffmap"]], "nodict.pt: neither"),
        "python objects": (["--model", f["objects"], "--motion-map", f["diffmap"]], "objects.pt: holds Python"),
        "weights misfit": (["--model", f["misfit"], "--motion-map", f["diffmap"]], "weights do not fit"),
        "no input": (["--model", model], "give an input"),
        "two inputs": (["--model", model, "--clip", clip.frame_dir, "--motion-map", f["diffmap"]], "give one input"),
        "clip missing": (["--model", model, "--clip", t["tmp"] / "noclip", "--onset", "1", "--apex", "2"],
                         "noclip: no such folder"),
        "onset not in clip": (["--model", model, "--clip", clip.frame_dir, "--onset", "99999", "--apex", apex],
                              "--onset 99999: no frame 99999"),
        "onset not a number": (["--model", model, "--clip", clip.frame_dir, "--onset", "first", "--apex", apex],
                               "--onset 'first'"),
        "apex missing": (["--model", model, "--clip", clip.frame_dir, "--onset", onset], "--onset and --apex"),
        "onset image missing": (["--model", model, "--onset", t["tmp"] / "gone.jpg", "--apex", clip.apex_path],
                                "gone.jpg: no such file"),
        "onset unreadable": (["--model", model, "--onset", f["jpg"], "--apex", clip.apex_path], "broken.jpg"),
        "grey motion map": (["--model", model, "--motion-map", f["grey"], "--face", f["face"]], "grey.png: has one"),
        "two-channel npy": (["--model", model, "--motion-map", f["two"], "--face", f["face"]], "two.npy: is not"),
        "no face": (["--model", model, "--motion-map", f["diffmap"]], "give --face"),
        "face unreadable": (["--model", model, "--motion-map", f["diffmap"], "--face", f["jpg"]], "--face"),
        "flow map, diff model": (["--model", model, "--motion-map", f["flowmap"], "--face", f["face"]],
                                 "look like flow maps"),
        "diff map, flow model": (["--model", f["flow"], "--motion-map", f["diffmap"], "--face", f["face"]],
                                 "look like difference images"),
        "stated kind": (["--model", model, "--motion-map", f["diffmap"], "--face", f["face"], "--map-kind", "flow"],
                        "--map-kind says the maps hold flow"),
        "release missing": (["--model", model, "--raf_path", t["tmp"] / "norelease"], "norelease"),
        "csv unwritable": (["--model", model, "--motion-map", f["diffmap"], "--face", f["face"], "--csv",
                            f["blocker"] / "out.csv"], "--csv"),
        "explain linear": (["--model", f["linear"], "--motion-map", f["diffmap"], "--explain", t["tmp"] / "why"],
                           "no feature map"),
        "unknown flag": (["--model", model, "--clips", "x"], "unrecognized arguments"),
    }


def test_bad_input_is_one_error_line(trained, bad_files, capsys):
    for case, (argv, expected) in bad_cases(trained, bad_files).items():
        code, out, err = run_predict(capsys, *argv)
        errors = [line for line in (out + err).splitlines() if "error:" in line]
        assert code == 2, (case, out, err)
        assert len(errors) == 1 and expected in errors[0], (case, errors)
        assert "Traceback" not in out + err, case


def test_command_line_exit_status(trained, bad_files):
    done = subprocess.run([sys.executable, str(ROOT / "predict.py"), "--model", str(bad_files["text"]),
                           "--motion-map", str(bad_files["diffmap"])], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 2
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == \
        [f"error: --model {bad_files['text']}: not a PyTorch file (torch.save writes a zip archive)"]
    assert "Traceback" not in done.stderr
