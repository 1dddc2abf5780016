"""Predict with a trained model: class and AU probabilities of new clips, and pictures that explain them.

    python predict.py --model RUN/model.pt --clip DIR --onset N --apex M   # a folder of frames
    python predict.py --model RUN/model.pt --onset onset.jpg --apex apex.jpg
    python predict.py --model RUN/model.pt --motion-map map.npy [map_2.npy ...] [--face face.png]
    python predict.py --model RUN/model.pt --raf_path RELEASE_OR_MAP_FOLDER --csv predictions.csv
    ... --explain OUT_DIR                                                  # one PNG per sample

--model takes the model.pt a run writes with --final, or any fold checkpoint
(<checkpoint-dir>/<run>/<subject>.pt), which describes its network as model.pt does.
Every input goes through the preprocessing the model was trained with (face crop, size, motion
kind, flow method, motion normalisation). Bad input ends with one `error:` line and exit status 2.
"""
from __future__ import annotations

import argparse
import pickle
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from cli import CommandLineParser, UsageError, emit, path_value, print_error, resolve_device
from data.arrays import center_maps
from data.errors import DataError
from data.export import maps_export
from data.inputs import InputArrays, build_inputs, crop_method, preprocess_sample
from data.errors import MIN_MAP_SIZE
from data.layout import FRAME_SUFFIXES, MAX_FRAME, frame_path
from data.map_reading import file_kind, kind_problem, reading_differences
from data.motion import FLIP_SIGNS, motion_arrays
from data.motion_maps import (_WHY, _fit_motion, _read_image, _read_motion_file, _resize, _stored_size,
                              is_motion_map_folder, load_motion_maps, map_column)
from data.protocols import get_protocol
from data.release import Sample, load_release
from engine import DatasetTensors, class_probabilities
from models import ModelConfig, build_model
from utils.distributed import DistInfo
from utils.explain import explain, explainable, render
from utils.io import error_text, write_csv
from utils.model_file import FOLD_FORMAT, FORMAT, preprocessing_problem, record_problem
from utils.paths import file_stem, file_write_problem, write_problem

RAW_FRAME_SIZE = (640, 480)   # (W, H) of CASME II's camera frames: such a frame is face-cropped as the raw layout is
NEGATIVE_STRAIN = -0.02       # optical strain is never negative; a third channel below this is not a flow map


@dataclass
class LoadedModel:
    model: torch.nn.Module          # eval mode, on the device
    cfg: ModelConfig
    classes: list[str]
    adjacency: np.ndarray           # (K, K) the AU co-occurrence adjacency it was trained with
    motion_scale: torch.Tensor      # (1, 3M, 1, 1) each motion channel is divided by it
    preprocessing: dict             # img_size, motion, protocol, dataset, layout, flow_method, export, tta_flip
    source: str                     # what the file was, for the log
    map_columns: list[int]          # (M,) the motion-map folder columns it reads, stacked in this order

    def map_names(self) -> str:
        """'motion, motion_2, ...': the maps a sample brings, in the model's order."""
        return ", ".join(map_column(k) for k in self.map_columns)

    def maps_line(self) -> str:
        """'the model reads 4 maps per sample (motion, motion_2, motion_3, motion_4)'."""
        count = len(self.map_columns)
        return f"the model reads {count} map{'s' if count > 1 else ''} per sample ({self.map_names()})"


@dataclass
class Inputs:
    """Samples to predict, prepared as the model's training data was."""
    names: list[str]                # (N,)
    motion: np.ndarray              # (N, 3M, S, S) float32 motion maps, M stacked (before the motion scale)
    face: np.ndarray | None         # (N, 3, S, S) uint8 RGB onset faces; None when unknown
    labels: list[str] | None        # (N,) true class names when the dataset gives them
    file_kind: str = "frames"       # what the maps were read from (data.map_reading)


# --------------------------------------------------------------------------- the model

def build_arg_parser() -> argparse.ArgumentParser:
    p = CommandLineParser(prog="predict.py", description="Class and AU probabilities from a trained AM-GCN model.")
    p.add_argument("--model", type=path_value, required=True, help="model.pt of a run (--final) or a fold checkpoint")
    g = p.add_argument_group("input (one of)")
    g.add_argument("--clip", type=path_value, help="a folder of frames (img<N>.jpg or reg_img<N>.jpg); "
                                                   "give --onset N and --apex M as frame numbers")
    g.add_argument("--onset", help="onset frame number (with --clip) or onset image")
    g.add_argument("--apex", help="apex frame number (with --clip) or apex image")
    g.add_argument("--motion-map", type=path_value, nargs="+", metavar="MAP",
                   help="a sample's motion maps (3-channel images or .npy), one per map the model reads, in its order")
    g.add_argument("--face", type=path_value, help="the onset face of --motion-map")
    g.add_argument("--map-kind", choices=("diff", "flow"),
                   help="what --motion-map or a motion-map --raf_path holds; it settles the check of the maps' "
                        "values only for a model that does not record how its maps were read")
    g.add_argument("--raf_path", "--raf-path", type=path_value, help="a CASME II release or a motion-map folder")
    g = p.add_argument_group("preprocessing and output")
    g.add_argument("--crop", choices=("auto", "haar", "full"), default="auto",
                   help="frames: haar = find the face (the raw layout's crop), full = the frame is the face; "
                        "auto: haar for 640x480 frames or a model trained on the raw layout")
    g.add_argument("--cache-dir", type=path_value, help="preprocessed-input cache (as in training)")
    g.add_argument("--csv", type=path_value, help="also write the table to this CSV file")
    g.add_argument("--explain", type=path_value, metavar="OUT_DIR", help="write one explanation PNG per sample here")
    g.add_argument("--device", default="cpu", help="cpu (default), auto, cuda or cuda:N")
    g.add_argument("--batch-size", type=int, default=64, help="samples per forward pass")
    return p


def load_model(path: Path, device: torch.device) -> LoadedModel:
    """A model.pt (utils.model_file) or a fold checkpoint, ready to predict; UsageError naming the file."""
    if not path.is_file():
        raise UsageError(f"--model {path}: no such file")
    if not zipfile.is_zipfile(path):
        raise UsageError(f"--model {path}: not a PyTorch file (torch.save writes a zip archive)")
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UsageError(f"--model {path}: holds Python objects that weights-only loading refuses") from None
    except Exception as e:  # a damaged archive fails in many ways (zip, EOF, keys)
        raise UsageError(f"--model {path}: not a model file or checkpoint ({error_text(e)})") from None
    if isinstance(record, dict) and "format" not in record and isinstance(record.get("args"), dict):
        raise UsageError(f"--model {path}: a fold checkpoint of an earlier layout, which holds run arguments instead "
                         "of its model; use the run's model.pt (--final) or train the fold again")
    if not (isinstance(record, dict) and record.get("format") in (FORMAT, FOLD_FORMAT)):
        raise UsageError(f"--model {path}: neither a model file (model.pt of --final) nor a fold checkpoint")
    problem = record_problem(record)
    if problem:
        raise UsageError(f"--model {path}: {problem}")
    try:
        cfg = ModelConfig(**record["config"])
    except (TypeError, ValueError) as e:
        raise UsageError(f"--model {path}: its config cannot build a model ({error_text(e)})") from None
    classes, scale, preprocessing = list(record["classes"]), record["motion_scale"], record["preprocessing"]
    source = (f"model file ({record['training'].get('samples')} samples)" if record["format"] == FORMAT else
              f"fold checkpoint (held-out subject {record.get('subject')}, epoch {record.get('epoch')})")
    problem = preprocessing_problem(preprocessing)
    if problem:
        raise UsageError(f"--model {path}: {problem}")
    if len(classes) != cfg.num_classes:
        raise UsageError(f"--model {path}: {len(classes)} class names for a {cfg.num_classes}-class model")
    model = build_model(cfg)
    try:
        model.load_state_dict(record["model"])
    except (RuntimeError, TypeError, ValueError) as e:
        raise UsageError(f"--model {path}: the weights do not fit the model they describe ({error_text(e)})") from None
    if not all(torch.isfinite(v).all() for v in record["model"].values() if v.is_floating_point()):
        raise UsageError(f"--model {path}: the weights hold NaN or infinite values")
    graph = getattr(model, "graph", None)
    adjacency = graph.adjacency.numpy() if graph is not None else np.eye(len(cfg.aus), dtype=np.float32)
    return LoadedModel(model=model.to(device).eval(), cfg=cfg, classes=classes, adjacency=adjacency,
                       motion_scale=scale.float().reshape(1, -1, 1, 1).to(device), preprocessing=preprocessing,
                       source=source, map_columns=map_columns(path, record, cfg.maps))


def map_columns(path: Path, record: dict, count: int) -> list[int]:
    """The map columns a model reads: as its preprocessing records them, else as its run's --maps chose, else
    the first `count`; UsageError when they do not match its count of maps."""
    columns = record["preprocessing"].get("map_columns", record["training"].get("args", {}).get("maps"))
    if columns is None:
        return list(range(1, count + 1))
    if not (isinstance(columns, list) and len(columns) == count and len(set(columns)) == count
            and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in columns)):
        raise UsageError(f"--model {path}: its map columns {columns!r} are not {count} distinct map numbers")
    return columns


# --------------------------------------------------------------------------- inputs

def clip_sample(onset: Path, apex: Path, name: str) -> Sample:
    """A stand-in sheet row for one onset/apex pair, so data.inputs preprocesses it as training did."""
    return Sample(subject="", filename=name, label=0, emotion="", aus=frozenset(), onset=0, apex=1, offset=1,
                  row=0, onset_path=onset, apex_path=apex, frame_dir=onset.parent)


def frames_input(onset: Path, apex: Path, name: str, loaded: LoadedModel, crop: str, cache_dir: Path | None
                 ) -> Inputs:
    """Onset and apex frames -> faces (cropped and resized as in training) -> the model's motion map."""
    frames = []
    for flag, file in (("--onset", onset), ("--apex", apex)):
        if not file.is_file():
            raise UsageError(f"{flag} {file}: no such file")
        frame = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if frame is None:
            raise UsageError(f"{flag} {file}: cannot be read as an image")
        frames.append(frame)
    for note in degenerate_frames(onset, apex, frames[0], frames[1]):
        emit(f"warning: {note}")
    shapes = [(frame.shape[1], frame.shape[0]) for frame in frames]
    method = crop_method(loaded.preprocessing.get("layout") or "cropped") if crop == "auto" else crop
    if crop == "auto" and shapes[0] == RAW_FRAME_SIZE:  # a camera frame, not a face: crop it as the raw layout is
        method = "haar"
    size = loaded.preprocessing["img_size"]
    result = preprocess_sample(0, clip_sample(onset, apex, name), size, method, strict=True)
    if result.error or result.strict_error:
        raise DataError((result.strict_error or result.error).removesuffix("; skipped").lstrip(" :"))
    for note in result.notes:
        emit(f"warning: {note.lstrip(' :')}")
    inputs = InputArrays(samples=[], onset=result.onset[None], apex=result.apex[None], labels=np.zeros(1, np.int64),
                         subjects=[""], warnings=[])
    motion, notes = motion_arrays(inputs, loaded.preprocessing["motion"], cache_dir=cache_dir,
                                  method=loaded.preprocessing.get("flow_method"))
    for note in notes:  # the flow method, cache problems
        emit(note)
    return Inputs(names=[name], motion=motion, face=inputs.onset, labels=None)


def degenerate_frames(onset: Path, apex: Path, onset_frame: np.ndarray, apex_frame: np.ndarray) -> list[str]:
    """Why an onset/apex pair can show no facial motion, one line each (the prediction is still made)."""
    notes = []
    if onset.resolve() == apex.resolve():
        notes.append(f"--onset and --apex are the same file {onset}: the motion map is empty")
    elif onset_frame.shape == apex_frame.shape and np.array_equal(onset_frame, apex_frame):
        notes.append(f"--onset {onset} and --apex {apex} hold identical pixels: the motion map is empty")
    for flag, file, frame in (("--onset", onset, onset_frame), ("--apex", apex, apex_frame)):
        if min(frame.shape[:2]) < MIN_MAP_SIZE:
            notes.append(f"{flag} {file} is {frame.shape[1]}x{frame.shape[0]} px: too small to hold a face "
                         f"(under {MIN_MAP_SIZE} px a side)")
    return notes


def clip_frame_notes(clip: Path, onset: int, apex: int) -> list[str]:
    """Why a --clip's frame choice is doubtful, one line each: the apex before the onset, a one-frame clip
    (one frame for both is said by degenerate_frames)."""
    notes = []
    if apex < onset:
        notes.append(f"--apex {apex} comes before --onset {onset}: the map shows the movement backwards")
    if sum(1 for p in clip.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES) == 1:
        notes.append(f"--clip {clip} holds a single frame: there is no movement to see")
    return notes


def clip_input(clip: Path, onset: str, apex: str, loaded: LoadedModel, crop: str, cache_dir: Path | None) -> Inputs:
    if not clip.is_dir():
        raise UsageError(f"--clip {clip}: no such folder")
    paths, numbers = [], []
    for flag, text in (("--onset", onset), ("--apex", apex)):
        if not (text.strip().isdigit() and len(text.strip()) <= len(str(MAX_FRAME)) and int(text) <= MAX_FRAME):
            raise UsageError(f"{flag} {text[:20]!r}: with --clip, give a frame number from 0 to {MAX_FRAME}")
        found = frame_path(clip, "", "", int(text))   # the clip folder is the frames root of itself
        if found is None:
            raise UsageError(f"{flag} {text}: no frame {text} in {clip} (reg_img{int(text)}.jpg or img{int(text)}.jpg)")
        paths.append(found)
        numbers.append(int(text))
    for note in clip_frame_notes(clip, *numbers):
        emit(f"warning: {note}")
    return frames_input(paths[0], paths[1], clip.name, loaded, crop, cache_dir)


def motion_map_input(map_paths: list[Path], face_path: Path | None, loaded: LoadedModel) -> Inputs:
    """One sample of --motion-map files (one per map the model reads) and --face, sized as in training."""
    size = loaded.preprocessing["img_size"]
    stored = []
    for map_path in map_paths:
        raw = _read_motion_file(map_path)
        if isinstance(raw, str):
            why = "has one (grey) channel; motion maps need 3" if raw == "grey" else _WHY[raw]
            raise UsageError(f"--motion-map {map_path}: {why}")
        stored.append(raw)
    sizes = [_stored_size(raw, p) for raw, p in zip(stored, map_paths)]
    if len(set(sizes)) > 1:
        raise UsageError("--motion-map: a sample's maps must have one size, these are "
                         + ", ".join(f"{p.name} {h}x{w}" for p, (h, w) in zip(map_paths, sizes)))
    motion = np.concatenate([_fit_motion(raw, p, size) for raw, p in zip(stored, map_paths)])   # (3M, S, S)
    face = None
    if face_path is not None:
        image = _read_image(face_path, colour=False)
        if isinstance(image, str):
            raise UsageError(f"--face {face_path}: {_WHY[image]}")
        face = np.clip(_resize(image, size) * 255.0 + 0.5, 0, 255).astype(np.uint8)[None]   # (1, 3, S, S)
    return Inputs(names=[map_paths[0].stem], motion=motion[None], face=face, labels=None,
                  file_kind=file_kind(map_paths))


def dataset_input(root: Path, loaded: LoadedModel, cache_dir: Path | None) -> Inputs:
    """Every sample of a release (preprocessed as training did) or of a motion-map folder."""
    protocol = get_protocol(loaded.preprocessing["protocol"])
    size = loaded.preprocessing["img_size"]
    if is_motion_map_folder(root):
        maps = load_motion_maps(root, protocol, img_size=size, maps=loaded.map_columns)
        for note in maps.warnings:
            emit(f"warning: {note}")
        names, motion, face, labels = maps.names, maps.motion, maps.face, maps.labels
        subjects, kind_of_file = maps.subjects, maps.file_kind
    else:
        release = load_release(root, protocol)
        progress = sys.stderr.isatty()
        inputs = build_inputs(release, img_size=size, cache_dir=cache_dir, progress=progress)
        motion, notes = motion_arrays(inputs, loaded.preprocessing["motion"], cache_dir=cache_dir, progress=progress,
                                      method=loaded.preprocessing.get("flow_method"))
        for note in [*release.warnings, *inputs.warnings, *notes]:
            emit(note if note.startswith("motion:") else f"warning: {note}")
        names, face, labels = [s.filename for s in inputs.samples], inputs.onset, inputs.labels
        subjects, kind_of_file = inputs.subjects, "frames"
    return Inputs(names=[f"{s}/{n}" for s, n in zip(subjects, names)], motion=motion, face=face,
                  labels=[protocol.classes[i] for i in labels], file_kind=kind_of_file)


def check_maps(inputs: Inputs, loaded: LoadedModel, stated: str | None, export: dict | None, what: str) -> None:
    """Maps read from files, checked against how the model's training maps were read (data.map_reading):
    UsageError for maps of another motion kind (as --map-kind or their export.json say, else as the record
    shows), one warning line for maps built another way. A model that records nothing falls back on a guess."""
    kind = loaded.preprocessing["motion"]
    for source, said in (("--map-kind", stated), (f"{what}'s export.json", (export or {}).get("motion"))):
        if said is not None and said != kind:
            raise UsageError(f"{what}: {source} says the maps hold {said}, but the model was trained on {kind} maps")
    record = loaded.preprocessing.get("maps")
    if record is None:
        guess_map_kind(inputs, loaded, stated, export, what)
        return
    given = inputs.motion.shape[1] // 3
    if record["count"] != given:
        raise UsageError(f"{what}: the model reads {record['count']} motion map(s) per sample, this input gives "
                         f"{given}")
    problem = kind_problem(record, inputs.motion, kind)
    if problem:
        raise UsageError(f"{what}: {problem}")
    warn_differences(inputs, loaded, export, what)


def warn_differences(inputs: Inputs, loaded: LoadedModel, export: dict | None, what: str) -> None:
    """One warning line naming what differs between how these maps and the model's training maps were built."""
    record = loaded.preprocessing.get("maps")
    if record is None:
        return
    differences = reading_differences(record, inputs.motion, inputs.file_kind)
    trained_style = (loaded.preprocessing.get("export") or {}).get("style")
    if export is not None and trained_style is not None and export.get("style") != trained_style:
        differences.append(f"{export.get('style')}-style export, the model's maps {trained_style}-style")
    if differences:
        emit(f"warning: {what}: built another way than the model's training maps: {'; '.join(differences)}; "
             "the predictions may be off")


def guess_map_kind(inputs: Inputs, loaded: LoadedModel, stated: str | None, export: dict | None, what: str) -> None:
    """For a model that does not record how its maps were read: UsageError when the values look like another
    motion kind (optical strain is never negative); --map-kind naming the model's kind settles it instead."""
    kind = loaded.preprocessing["motion"]
    trained_export = loaded.preprocessing.get("export") or {}
    if export is not None and export.get("style") != trained_export.get("style", "default"):
        raise UsageError(f"{what}: {export.get('style')}-style maps, but the model was trained on "
                         f"{trained_export.get('style', 'default')}-style maps")
    if stated == kind or trained_export.get("style") == "ststnet":
        return  # said by the user; or min-max normalised maps, whose strain channel is stretched to -1..1
    third = inputs.motion[:, 2].reshape(len(inputs.motion), -1)             # (N, S*S)
    negative = third.min(1) < NEGATIVE_STRAIN
    looks_like_flow = (~negative) & (third.max(1) > -NEGATIVE_STRAIN)
    hint = f" (the model records no reading of its maps; if they are {kind} maps, say --map-kind {kind})"
    if kind == "flow" and negative.mean() > 0.5:
        raise UsageError(f"{what}: the third channel has negative values, which optical strain never has: "
                         f"these look like difference images, but the model was trained on flow maps{hint}")
    if kind == "diff" and looks_like_flow.mean() > 0.5:
        raise UsageError(f"{what}: the third channel is never negative, as optical strain is: these look like "
                         f"flow maps, but the model was trained on difference images{hint}")


def input_flag(args: argparse.Namespace, loaded: LoadedModel) -> str:
    """The one input the flags name ('--clip', '--onset', '--motion-map' or '--raf_path'); UsageError
    for none, several, flags that do not go with it, or frames for a model that reads several maps."""
    given = [flag for flag, value in (("--clip", args.clip), ("--motion-map", args.motion_map),
                                      ("--raf_path", args.raf_path)) if value is not None]
    if not given and args.onset is None and args.apex is None:
        raise UsageError("give an input: --clip DIR --onset N --apex M, --onset IMG --apex IMG, "
                         "--motion-map IMG or --raf_path PATH")
    if len(given) > 1 or (args.onset is not None and given and given[0] != "--clip"):
        raise UsageError(f"give one input, not {' and '.join(given + (['--onset'] if args.onset else []))}")
    if (given in ([], ["--clip"])) and (args.onset is None or args.apex is None):
        raise UsageError("--onset and --apex go together" + (" with --clip" if given else ""))
    if args.face is not None and given != ["--motion-map"]:
        raise UsageError("--face goes with --motion-map (other inputs bring their own face)")
    maps_folder = given == ["--raf_path"] and is_motion_map_folder(args.raf_path)
    if args.map_kind is not None and not (given == ["--motion-map"] or maps_folder):
        raise UsageError("--map-kind goes with --motion-map or a motion-map folder as --raf_path")
    flag = given[0] if given else "--onset"
    if len(loaded.map_columns) > 1 and flag != "--motion-map" and not maps_folder:
        raise UsageError(f"{flag}: frames make one motion map, but {loaded.maps_line()}; give them with "
                         "--motion-map or a motion-map folder as --raf_path")
    return flag


def read_inputs(args: argparse.Namespace, loaded: LoadedModel) -> Inputs:
    """The one input the flags name, prepared for the model."""
    flag = input_flag(args, loaded)
    if flag == "--clip":
        inputs = clip_input(args.clip, args.onset, args.apex, loaded, args.crop, args.cache_dir)
        warn_differences(inputs, loaded, None, f"--clip {args.clip}")
        return inputs
    if flag == "--onset":
        onset, apex = Path(args.onset), Path(args.apex)
        inputs = frames_input(onset, apex, onset.stem, loaded, args.crop, args.cache_dir)
        warn_differences(inputs, loaded, None, f"--onset {onset} --apex {apex}")
        return inputs
    if flag == "--motion-map":
        return map_files_input(args, loaded)
    inputs = dataset_input(args.raf_path, loaded, args.cache_dir)
    if is_motion_map_folder(args.raf_path):
        if inputs.face is None and loaded.cfg.pos_on:
            raise UsageError(f"--raf_path {args.raf_path}: the folder has no faces, which this model's position "
                             "branch reads")
        check_maps(inputs, loaded, args.map_kind, maps_export(args.raf_path), f"--raf_path {args.raf_path}")
    else:
        warn_differences(inputs, loaded, None, f"--raf_path {args.raf_path}")
    return inputs


def map_files_input(args: argparse.Namespace, loaded: LoadedModel) -> Inputs:
    """The sample of --motion-map (one file per map the model reads) and --face, checked as a map folder is."""
    paths = args.motion_map
    if len(paths) != len(loaded.map_columns):
        raise UsageError(f"{loaded.maps_line()}; --motion-map gave {len(paths)}")
    for path in paths:
        if not path.is_file():
            raise UsageError(f"--motion-map {path}: no such file")
    if args.face is None and loaded.cfg.pos_on:
        raise UsageError("--motion-map: this model's position branch reads the onset face; give --face IMG")
    inputs = motion_map_input(paths, args.face, loaded)
    export = next((e for e in (maps_export(f) for f in paths[0].parents[:2]) if e is not None), None)
    check_maps(inputs, loaded, args.map_kind, export, f"--motion-map {' '.join(map(str, paths))}")
    return inputs


# --------------------------------------------------------------------------- prediction

@torch.no_grad()
def predict(loaded: LoadedModel, data: DatasetTensors, batch_size: int, device: torch.device
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities (N, C) and AU probabilities (N, K) or None, as engine.evaluate computes them."""
    loaded.model.eval()
    probs, au_probs = [], []
    starts = range(0, len(data.labels), batch_size)
    for start in tqdm(starts, desc="predict", unit="batch", disable=len(starts) < 2 or not sys.stderr.isatty()):
        batch = slice(start, start + batch_size)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            p, out = class_probabilities(loaded.model, data.motion[batch] / loaded.motion_scale, data.face[batch],
                                         data.flip_signs, loaded.preprocessing.get("tta_flip", False))
        probs.append(p.cpu())
        if out["au_logits"] is not None:
            au_probs.append(torch.sigmoid(out["au_logits"].float()).cpu())
    return torch.cat(probs).numpy(), (torch.cat(au_probs).numpy() if au_probs else None)


def to_tensors(inputs: Inputs, loaded: LoadedModel, device: torch.device) -> DatasetTensors:
    """The engine's own tensors (face pooling and ImageNet normalisation included)."""
    n = len(inputs.names)
    face = inputs.face if loaded.cfg.pos_on else None   # a model without the position branch reads no face
    return DatasetTensors.from_arrays(inputs.motion, face, np.zeros(n, np.int64), np.zeros((n, len(loaded.cfg.aus))),
                                      [""] * n, inputs.names, device, loaded.cfg.grid,
                                      flip_signs=FLIP_SIGNS[loaded.preprocessing["motion"]] * loaded.cfg.maps)


def table(inputs: Inputs, loaded: LoadedModel, probs: np.ndarray, au_probs: np.ndarray | None
          ) -> tuple[list[str], list[list]]:
    header = ["sample"] + (["label"] if inputs.labels is not None else []) + ["pred"]
    header += [f"p_{c}" for c in loaded.classes]
    header += [f"au{a}" for a in loaded.cfg.aus] if au_probs is not None else []
    rows = []
    for i, name in enumerate(inputs.names):
        row = [name] + ([inputs.labels[i]] if inputs.labels is not None else [])
        row.append(loaded.classes[int(probs[i].argmax())])
        row += [f"{p:.4f}" for p in probs[i]] + ([f"{p:.4f}" for p in au_probs[i]] if au_probs is not None else [])
        rows.append(row)
    return header, rows


def format_table(header: list[str], rows: list[list]) -> str:
    widths = [max(len(str(v)) for v in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    if rows and "label" in header:
        hits = sum(r[1] == r[2] for r in rows)
        lines.append(f"accuracy {hits}/{len(rows)} = {hits / len(rows):.3f}")
    return "\n".join(lines)


def write_explanations(out_dir: Path, inputs: Inputs, data: DatasetTensors, loaded: LoadedModel) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(tqdm(inputs.names, desc="explain", disable=len(inputs.names) < 2
                                  or not sys.stderr.isatty())):
        found = explain(loaded.model, data.motion[i:i + 1] / loaded.motion_scale, data.face[i:i + 1])
        title = name + (f" (label {inputs.labels[i]})" if inputs.labels is not None else "")
        render(out_dir / f"{i:04d}_{file_stem(name)}.png", inputs.face[i] if inputs.face is not None else None,
               inputs.motion[i], loaded.preprocessing["motion"], found, loaded.classes, loaded.cfg.aus,
               loaded.adjacency, title, [map_column(k) for k in loaded.map_columns])
    emit(f"explanations: {len(inputs.names)} PNG file(s) in {out_dir}")


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.batch_size <= 100_000:
        raise UsageError(f"--batch-size must be an integer from 1 to 100000, got {args.batch_size}")
    for flag, path, problem_of in (("--csv", args.csv, file_write_problem), ("--explain", args.explain, write_problem)):
        problem = problem_of(path) if path is not None else None
        if problem:
            raise UsageError(f"{flag} {path}: {problem}")
    device = resolve_device(args.device, DistInfo())
    loaded = load_model(args.model, device)
    if args.explain is not None and not explainable(loaded.model):
        raise UsageError(f"--explain: a {loaded.cfg.arch} model has no feature map to explain")
    emit(f"model: {args.model}, {loaded.source}: {loaded.cfg.arch}, {loaded.preprocessing['motion']} maps at "
         f"{loaded.preprocessing['img_size']} px, classes {', '.join(loaded.classes)}")
    inputs = read_inputs(args, loaded)
    if loaded.preprocessing.get("center_maps"):  # trained with --center-maps: each map's median is its zero
        inputs.motion = center_maps(inputs.motion)
    data = to_tensors(inputs, loaded, device)
    probs, au_probs = predict(loaded, data, args.batch_size, device)
    header, rows = table(inputs, loaded, probs, au_probs)
    print(format_table(header, rows))
    if args.csv is not None:
        write_csv(args.csv, header, rows)
        emit(f"table: {args.csv}")
    if args.explain is not None:
        write_explanations(args.explain, inputs, data, loaded)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_arg_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        return run(args)
    except (UsageError, DataError) as e:
        print_error(e)
        return 2
    except OSError as e:  # an output that cannot be written (a full disk, a folder in the way)
        print_error(f"{error_text(e)}{f' ({e.filename})' if e.filename else ''}")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
