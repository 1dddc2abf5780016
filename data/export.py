"""A CASME II release written out as a motion-map folder (`python prepare.py export`).

The folder is what data.motion_maps reads (`--raf_path FOLDER` of the entry scripts):

    index.csv                      subject,sample,label,motion[,motion_2],face,aus,dataset
    <subject>/<sample>_motion.npy  (default style) or <sample>_flow.png (ststnet style); with
                                   several --phases, the second phase's map in _motion_2.npy / _flow_2.png
    <subject>/<sample>_face.png    the face, 8-bit RGB, lossless
    export.json                    the settings the folder was made with

Rows follow the release (data.release.load_release): its subject names (`sub01`), file
names, the protocol's class names, the sheet's AUs and `dataset` = `casme2`. Faces and
motion come from data.inputs.build_inputs and data.motion.motion_arrays, the functions a
run on the release itself uses; any unreadable or missing frame is an error (strict).

Styles
- default: the project's own motion maps, bit for bit. `--motion diff`: (apex - onset) / 255
  per RGB channel; `--motion flow`: u and v in percent of the face side and the optical
  strain x 10 (data.motion). Fixed scalings, no per-image normalisation, so magnitudes stay
  comparable across samples. Each map is a float32 (3, S, S) .npy at S = --size, the face the
  onset face as a PNG at S. A run with `--img-size S` and the same `--motion` on the folder
  therefore sees exactly the arrays a run on the release builds, and predicts identically.
- ststnet: the convention of STSTNet and the MEGC2019 works that followed it:
  1. onset and apex faces cropped as for the model, at --size px (data.inputs);
  2. optical flow from onset to apex (TV-L1 where opencv-contrib provides it, else
     Farneback; data.motion) and its optical strain sqrt(ux^2 + vy^2 + 0.5 (uy + vx)^2);
  3. u, v and strain each shrunk to 28 x 28 px by area averaging (cv2.INTER_AREA);
  4. each channel min-max normalised over its own 28 x 28 values:
     round(255 (x - min) / (max - min)); a constant channel becomes 0;
  5. written as an RGB PNG: R = u, G = v, B = strain;
  6. the face column holds the apex face (PNG at --size px).
  Per-image normalisation stretches every sample's motion to the full range, so
  magnitudes are not comparable across samples; the reader maps 0..255 to -1..1.

Resuming: export.json is written first; an --out folder holding an export made with other
settings is refused. Every file is written atomically (utils.io) and a sample whose files
both exist is not computed again; index.csv comes last. A killed export run again with the
same settings therefore ends with the same files as an unbroken one.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from data.action_units import format_action_units
from data.apex import APEX_MODES, SPOT_VERSION, without_apexes
from data.errors import DataError, check_map_size
from data.inputs import PREPROCESS_VERSION, InputArrays, build_inputs
from data.motion import METHOD_LABELS, MOTION_VERSION, default_flow_method, motion_arrays
from data.motion_maps import INDEX_NAME, map_column
from data.phases import DEFAULT_PHASES, phase_release
from data.release import Release, Sample
from utils.io import atomic_write_bytes, read_json, write_csv, write_json
from utils.paths import dataset_path

STYLES = ("default", "ststnet")
MANIFEST = "export.json"
EXPORT_VERSION = 1
STSTNET_SIDE = 28
DATASET = "casme2"
COLUMNS = ("subject", "sample", "label", "motion", "face", "aus", "dataset")   # motion_2 ... follow motion
CHUNK = 16            # samples computed between writes: a kill loses at most this many


@dataclass
class ExportReport:
    written: int                        # samples computed by this call
    kept: int                           # samples already in the folder
    spotted: int                        # samples whose apex was spotted
    notices: list[str] = field(default_factory=list)


def export_settings(release: Release, *, style: str, motion: str, size: int, apex: str,
                    phases: tuple[str, ...] = DEFAULT_PHASES) -> dict:
    """Everything that decides the folder's content; a resumed export must match it."""
    return {
        **({"phases": list(phases)} if tuple(phases) != DEFAULT_PHASES else {}),
        "format": EXPORT_VERSION, "style": style, "motion": motion, "size": size, "apex": apex,
        "protocol": release.protocol.name, "release": str(Path(release.root).resolve()),
        "layout": release.layout, "sheet": str(release.sheet_path.resolve()),
        "sheet_sha256": hashlib.sha256(release.sheet_path.read_bytes()).hexdigest(),
        "flow_method": default_flow_method() if motion == "flow" else None,
        "versions": {"preprocess": PREPROCESS_VERSION, "motion": MOTION_VERSION, "spot": SPOT_VERSION},
    }


def maps_export(folder: Path) -> dict | None:
    """{'style', 'motion', 'size'} of the `prepare.py export` that wrote a motion-map folder, or None
    when the folder holds no readable export.json (a folder made by other tools)."""
    try:
        manifest = read_json(Path(folder) / MANIFEST)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    return {key: manifest.get(key) for key in ("style", "motion", "size")}


def open_out_folder(out: Path, release_root: Path, settings: dict) -> None:
    """Create --out or check that it holds an export with these settings; clear stale temp files."""
    out, release_root = Path(out), Path(release_root).resolve()
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: not a folder")
    if out.resolve() == release_root or release_root in out.resolve().parents:
        raise DataError(f"--out {out} lies inside the release {release_root}, which is only read")
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            saved = read_json(manifest)
        except (OSError, ValueError) as exc:
            raise DataError(f"{manifest}: cannot read ({exc})") from None
        saved = saved if isinstance(saved, dict) else {}
        changed = [k for k in settings if saved.get(k) != settings[k]]
        if changed:
            what = ", ".join(f"{k} {saved.get(k)!r} there, {settings[k]!r} now" for k in changed)
            raise DataError(f"--out {out} holds an export made with different settings ({what}); "
                            f"choose another --out or delete that folder")
        for stale in out.rglob(".*.tmp"):   # left by a kill in the middle of an atomic write
            stale.unlink()
        return
    if out.is_dir() and any(out.iterdir()):
        raise DataError(f"--out {out} is not empty and holds no export ({MANIFEST}); choose a new or empty folder")
    write_json(manifest, settings)


def sample_files(sample: Sample, style: str, phases: int = 1) -> tuple[list[str], str]:
    """([motion path of each phase], face path) of a sample, relative to the folder."""
    stem = f"{sample.subject}/{sample.filename}"
    base, suffix = (f"{stem}_motion", ".npy") if style == "default" else (f"{stem}_flow", ".png")
    return [base + ("" if k == 1 else f"_{k}") + suffix for k in range(1, phases + 1)], f"{stem}_face.png"


def _files_exist(out: Path, sample: Sample, style: str, phases: int) -> bool:
    motion, face = sample_files(sample, style, phases)
    return all((out / rel).is_file() for rel in [*motion, face])


def _phase_maps(part: Release, phase: str, settings: dict, cache_dir: Path | None, workers: int
                ) -> tuple[InputArrays, np.ndarray, list[str]]:
    """(inputs, motion maps (n, 3, S, S), notices) of `phase` of the samples of `part` (strict)."""
    cut, notes = phase_release(part, phase, strict=True)
    inputs = build_inputs(cut, img_size=settings["size"], cache_dir=cache_dir, workers=workers, strict=True,
                          progress=False)
    maps, motion_notes = motion_arrays(inputs, settings["motion"], cache_dir=cache_dir,
                                       method=settings["flow_method"])              # (n, 3, S, S)
    return inputs, maps, notes + inputs.warnings + motion_notes


def output_path(out: Path, relative: str, sample: Sample) -> Path:
    """Where a sample's file goes: inside --out, whatever its sheet cells say (utils.paths.dataset_path)."""
    try:
        return dataset_path(out, relative)
    except ValueError as exc:
        raise DataError(f"{sample.subject} {sample.filename} (sheet row {sample.row}): output file {exc}") from None


def png_bytes(rgb: np.ndarray) -> bytes:
    """(3, H, W) uint8 RGB -> PNG file contents."""
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb.transpose(1, 2, 0)[..., ::-1]))
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


def npy_bytes(array: np.ndarray) -> bytes:
    """np.save's file contents for `array` as float32."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def ststnet_map(flow_maps: np.ndarray) -> np.ndarray:
    """(3, S, S) u, v, strain (any fixed scaling) -> (3, 28, 28) uint8, each channel min-max to 0..255."""
    out = np.zeros((3, STSTNET_SIDE, STSTNET_SIDE), np.uint8)
    for c in range(3):
        small = cv2.resize(np.ascontiguousarray(flow_maps[c], dtype=np.float32), (STSTNET_SIDE, STSTNET_SIDE),
                           interpolation=cv2.INTER_AREA).astype(np.float64)     # (28, 28)
        low, high = small.min(), small.max()
        if high > low:
            out[c] = np.round(255.0 * (small - low) / (high - low)).astype(np.uint8)
    return out


def _write_chunk(release: Release, chunk: list[Sample], out: Path, settings: dict, cache_dir: Path | None,
                 workers: int) -> list[str]:
    """Compute and write the files of `chunk`; returns the notices of the computation."""
    part = replace(release, samples=chunk)
    phases = settings.get("phases", DEFAULT_PHASES)
    computed = [_phase_maps(part, phase, settings, cache_dir, workers) for phase in phases]
    inputs = computed[0][0]
    for i, sample in enumerate(inputs.samples):   # strict: every phase holds every sample, in order
        motion_rels, face_rel = sample_files(sample, settings["style"], len(phases))
        for rel, (_, maps, _) in zip(motion_rels, computed):
            data = npy_bytes(maps[i]) if settings["style"] == "default" else png_bytes(ststnet_map(maps[i]))
            atomic_write_bytes(output_path(out, rel, sample), data)
        face = inputs.onset[i] if settings["style"] == "default" else inputs.apex[i]
        atomic_write_bytes(output_path(out, face_rel, sample), png_bytes(face))
    return [n for _, _, notes in computed for n in notes if not n.startswith("motion:")]


def export_release(release: Release, out: Path, *, style: str = "default", motion: str = "diff", size: int = 224,
                   apex: str = "annotated", cache_dir: Path | None = None, workers: int = 0,
                   progress: bool = True, phases: tuple[str, ...] = DEFAULT_PHASES) -> ExportReport:
    """Write `release` as a motion-map folder in `out` (see the module docstring); resumable."""
    if style not in STYLES:
        raise DataError(f"--style {style!r}: valid values are {', '.join(STYLES)}")
    if apex not in APEX_MODES:
        raise DataError(f"--apex {apex!r}: valid values are {', '.join(APEX_MODES)}")
    if style == "ststnet" and motion != "flow":
        raise DataError(f"--style ststnet writes optical flow; --motion {motion} does not apply")
    check_map_size("--size", size)
    if apex == "auto":
        release = without_apexes(release)
    out = Path(out)
    settings = export_settings(release, style=style, motion=motion, size=size, apex=apex, phases=tuple(phases))
    open_out_folder(out, release.root, settings)

    todo = [s for s in release.samples if not _files_exist(out, s, style, len(phases))]
    notices: list[str] = []
    if motion == "flow":
        notices.append(f"motion: optical flow by {METHOD_LABELS[settings['flow_method']]} at {size}x{size} px")
    bar = tqdm(total=len(release.samples), initial=len(release.samples) - len(todo), desc="export",
               unit="sample", disable=not progress)
    try:
        step = max(CHUNK, 4 * workers)
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            notices += _write_chunk(release, chunk, out, settings, cache_dir, workers)
            bar.update(len(chunk))
    finally:
        bar.close()

    rows = []
    for s in release.samples:
        motion_rels, face_rel = sample_files(s, style, len(phases))
        rows.append([s.subject, s.filename, release.protocol.classes[s.label], *motion_rels, face_rel,
                     format_action_units(s.aus), DATASET])
    columns = ["subject", "sample", "label", *(map_column(k) for k in range(1, len(phases) + 1)),
               *COLUMNS[COLUMNS.index("face"):]]
    write_csv(out / INDEX_NAME, columns, rows)
    return ExportReport(written=len(todo), kept=len(release.samples) - len(todo),
                        spotted=sum(s.apex_path is None for s in release.samples),
                        notices=list(dict.fromkeys(notices)))
