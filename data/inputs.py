"""Model inputs from a release: onset and apex faces as uint8 arrays, with an on-disk cache.

For each sample the onset and apex frames are read (BGR -> RGB), the face is cropped
(cropped layouts: the frame is the face; raw layout: a Haar face box found on the onset
frame, used for both frames of the clip) and resized to img_size x img_size. A sample
without an annotated apex gets the frame data.apex spots among the clip's frames.

Each sample is cached as one small .npy file (onset and apex stacked, then a CRC-32 of pixels
and notes: a damaged entry is rebuilt with a warning) named by a hash of
everything that decides its content: the sample's identity and frames, the frame files' paths, sizes and mtimes,
the image size, the crop method and PREPROCESS_VERSION (and SPOT_VERSION for a spotted
apex). A changed setting or a touched file therefore gives a new name (a miss), never a stale hit. The cache lives outside the
dataset (which may be read-only): AMGCN_CACHE or ~/.cache/amgcn-mer.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import re
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from data.apex import METHOD_NOTE, SPOT_SIZE, SPOT_VERSION, spot_apex
from data.errors import DataError, check_map_size
from data.protocols import check_enough
from data.release import Release, Sample
from utils.io import atomic_write

# Bump when the preprocessing itself changes (crop rule, interpolation, ...): old entries
# then stop matching instead of being served.
PREPROCESS_VERSION = 2          # 2: entries end with a CRC-32 of their contents
CHECKSUM_BYTES = 4
CROPPED_LAYOUTS = ("cropped", "cropped-updated", "simple")
HAAR_FILE = "haarcascade_frontalface_default.xml"
FACE_MARGIN = 0.10            # the Haar box grows by this fraction of its size (5% a side)
CENTRE_FRACTION = 0.75        # fallback crop: centred square, this fraction of the short side
DETECT_SIDE = 240             # face detection runs on frames shrunk to this short side
_FRAME_NAME = re.compile(r"^(?:reg_)?img(\d+)\.(?:jpg|jpeg|png|bmp)$", re.IGNORECASE)
# the note of a spotted apex (written by preprocess_sample, replayed on cache hits) names its frame
_SPOTTED_NOTE = re.compile(r": no annotated apex; using frame (\d+) \(")


@dataclass
class InputArrays:
    samples: list[Sample]        # those preprocessed successfully, same order as arrays
    onset: np.ndarray            # (N, 3, S, S) uint8 RGB onset face
    apex: np.ndarray             # (N, 3, S, S) uint8 RGB apex face
    labels: np.ndarray           # (N,) int64
    subjects: list[str]          # (N,)
    warnings: list[str]
    cache_hits: int = 0
    cache_misses: int = 0
    skipped: list[str] = field(default_factory=list)   # why each skipped sample was skipped
    spotted: dict[tuple[str, str], int] = field(default_factory=dict)   # sample key -> spotted apex frame


def default_cache_dir() -> Path:
    """AMGCN_CACHE if set, else ~/.cache/amgcn-mer; never inside the dataset folder."""
    env = os.environ.get("AMGCN_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "amgcn-mer"


def writable_folder(folder: Path) -> bool:
    """Create `folder` if needed; False when it cannot be written (run without a cache)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.access(folder, os.W_OK)
    except OSError:
        return False


def crop_method(layout: str) -> str:
    return "full" if layout in CROPPED_LAYOUTS else "haar"


# --------------------------------------------------------------------------- frames

def clip_frames(sample: Sample) -> dict[int, Path]:
    """Frame number -> file for the frames of the clip that exist in onset..offset."""
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(sample.frame_dir))
    except OSError:
        return found
    for entry in entries:
        m = _FRAME_NAME.match(entry.name)
        if m and sample.onset <= int(m.group(1)) <= sample.offset:
            n = int(m.group(1))
            # reg_img<N> wins over img<N>, as in data.layout.frame_path
            if n not in found or entry.name.lower().startswith("reg_"):
                found[n] = Path(entry.path)
    return dict(sorted(found.items()))


def _stat(path: Path) -> list:
    try:
        st = path.stat()
        return [str(path), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), -1, -1]


def cache_key(sample: Sample, img_size: int, method: str) -> str:
    """Hash of everything the cached arrays depend on."""
    if sample.apex_path is not None:
        files = [_stat(sample.onset_path), _stat(sample.apex_path)]
    else:
        # the apex is chosen among the clip's frames: any of them changing matters
        frames = clip_frames(sample)
        frames.setdefault(sample.onset, sample.onset_path)
        files = [_stat(p) for p in frames.values()]
    key = {
        "version": PREPROCESS_VERSION,
        "sample": [sample.subject, sample.filename, sample.onset, sample.apex, sample.offset],
        "files": files, "img_size": int(img_size), "crop": method,
    }
    if sample.apex_path is None:
        key["spot"] = SPOT_VERSION   # a changed spotting method may choose another frame
    blob = json.dumps(key, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


# --------------------------------------------------------------------------- faces

_CASCADE: cv2.CascadeClassifier | None = None


def _cascade() -> cv2.CascadeClassifier:
    global _CASCADE  # one per process: loading the XML costs ~50 ms
    if _CASCADE is None:
        _CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + HAAR_FILE)
        if _CASCADE.empty():
            raise DataError(f"cannot load OpenCV's {HAAR_FILE} from {cv2.data.haarcascades}")
    return _CASCADE


def face_box(frame: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the largest detected face, grown by FACE_MARGIN; None if no face."""
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    h, w = gray.shape
    # detect at reduced resolution (short side DETECT_SIDE): 4x faster on 640x480 frames,
    # and a face filling a good part of the frame stays far above the 24 px detector window
    scale = min(1.0, DETECT_SIDE / min(h, w))
    if scale < 1.0:
        gray = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    min_side = max(24, min(gray.shape) // 12)
    faces = ()
    # strict settings on the plain image first; equalised contrast and finer scales rescue
    # dim or low-contrast faces without inviting false boxes on easy ones
    for image, step, neighbours in ((gray, 1.1, 3), (cv2.equalizeHist(gray), 1.1, 3),
                                    (gray, 1.05, 2)):
        faces = _cascade().detectMultiScale(image, scaleFactor=step, minNeighbors=neighbours,
                                            minSize=(min_side, min_side))
        if len(faces):
            break
    if len(faces) == 0:
        return None
    x, y, bw, bh = (v / scale for v in max(faces, key=lambda f: f[2] * f[3]))
    mx, my = bw * FACE_MARGIN / 2, bh * FACE_MARGIN / 2
    return (max(0, int(x - mx)), max(0, int(y - my)),
            min(w, int(round(x + bw + mx))), min(h, int(round(y + bh + my))))


def centre_box(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    side = int(min(h, w) * CENTRE_FRACTION)
    x0, y0 = (w - side) // 2, (h - side) // 2
    return x0, y0, x0 + side, y0 + side


def to_face(frame: np.ndarray, box: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """BGR frame -> (3, size, size) uint8 RGB face."""
    if box is not None:
        x0, y0, x1, y1 = box
        h, w = frame.shape[:2]
        crop = frame[min(y0, h - 1):max(y1, y0 + 1), min(x0, w - 1):max(x1, x0 + 1)]
        frame = crop if crop.size else frame
    face = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)   # (S, S, 3)
    return np.ascontiguousarray(cv2.cvtColor(face, cv2.COLOR_BGR2RGB).transpose(2, 0, 1))


# --------------------------------------------------------------------------- one sample

@dataclass
class _Result:
    index: int
    onset: np.ndarray | None = None
    apex: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)   # warnings, replayed on cache hits
    error: str | None = None                          # reason the sample is skipped
    strict_error: str | None = None                   # what strict mode raises


def _name(sample: Sample) -> str:
    return f"{sample.subject} {sample.filename}"


def _read(path: Path) -> np.ndarray | None:
    return cv2.imread(str(path), cv2.IMREAD_COLOR)


def clip_box(sample: Sample, onset_frame: np.ndarray,
             method: str) -> tuple[tuple[int, int, int, int] | None, list[str]]:
    """Crop box used for every frame of the clip (None: the frame is the face), and notes."""
    if method != "haar":
        return None, []
    box = face_box(onset_frame)
    if box is not None:
        return box, []
    return centre_box(onset_frame.shape), [f"{_name(sample)}: no face found in "
                                           f"{sample.onset_path.name}; using a centre crop"]


@dataclass
class ApexSearch:
    frame: int | None = None                          # spotted frame number; None: none readable
    path: Path | None = None
    notes: list[str] = field(default_factory=list)
    strict_error: str | None = None                   # an unreadable frame, under strict


def spot_face(frame: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """BGR frame -> (SPOT_SIZE, SPOT_SIZE) grey face for apex spotting."""
    face = to_face(frame, box, SPOT_SIZE)                                   # (3, s, s) RGB
    return cv2.cvtColor(np.ascontiguousarray(face.transpose(1, 2, 0)), cv2.COLOR_RGB2GRAY)


def find_apex(sample: Sample, onset_frame: np.ndarray, box: tuple[int, int, int, int] | None,
              strict: bool) -> ApexSearch:
    """Spot the apex among the readable frames of onset..offset (data.apex.spot_apex)."""
    found = ApexSearch()
    numbers, faces = [sample.onset], [spot_face(onset_frame, box)]
    for n, path in clip_frames(sample).items():
        if n == sample.onset:
            continue
        frame = _read(path)
        if frame is None:
            msg = f"{_name(sample)}: cannot read frame {path}; left out of the apex search"
            if strict:
                found.strict_error = msg
                return found
            found.notes.append(msg)
            continue
        numbers.append(n)
        faces.append(spot_face(frame, box))
    if len(numbers) > 1:
        found.frame = spot_apex(numbers, np.stack(faces))
        found.path = clip_frames(sample)[found.frame]
    return found


def spot_sample(sample: Sample, method: str) -> ApexSearch:
    """Spot one sample's apex as preprocessing would, whatever its annotation (prepare.py spot)."""
    onset_frame = _read(sample.onset_path)
    if onset_frame is None:
        return ApexSearch(notes=[f"{_name(sample)}: cannot read onset frame {sample.onset_path}"])
    box, notes = clip_box(sample, onset_frame, method)
    found = find_apex(sample, onset_frame, box, strict=False)
    found.notes = notes + found.notes
    return found


def preprocess_sample(index: int, sample: Sample, img_size: int, method: str,
                      strict: bool) -> _Result:
    """Read, crop and resize one sample's onset and apex (module level: runs in workers)."""
    res = _Result(index)
    onset_frame = _read(sample.onset_path)
    if onset_frame is None:
        res.error = f"{_name(sample)}: cannot read onset frame {sample.onset_path}; skipped"
        return res
    box, res.notes = clip_box(sample, onset_frame, method)
    res.onset = to_face(onset_frame, box, img_size)

    apex_path = sample.apex_path
    if apex_path is None:   # no annotated apex ('/', no ApexFrame column, --apex auto): spot it
        found = find_apex(sample, onset_frame, box, strict)
        res.notes += found.notes
        if found.strict_error:
            res.strict_error = found.strict_error
            return res
        if found.frame is None:
            res.error = (f"{_name(sample)}: no annotated apex and no other frame of "
                         f"{sample.onset}..{sample.offset} is readable in {sample.frame_dir}; skipped")
            return res
        res.notes.append(f"{_name(sample)}: no annotated apex; using frame {found.frame} "
                         f"({METHOD_NOTE} {sample.onset}..{sample.offset})")
        apex_path = found.path
    apex_frame = _read(apex_path)
    if apex_frame is None:
        res.error = f"{_name(sample)}: cannot read apex frame {apex_path}; skipped"
        return res
    if apex_frame.shape[:2] != onset_frame.shape[:2]:  # resized apart, the motion between them is distorted
        (h0, w0), (h1, w1) = onset_frame.shape[:2], apex_frame.shape[:2]
        res.notes.append(f"{_name(sample)}: apex frame {apex_path.name} is {w1}x{h1} px but onset frame "
                         f"{sample.onset_path.name} is {w0}x{h0} px; each is resized to {img_size}x{img_size} on its own")
    res.apex = to_face(apex_frame, box, img_size)
    return res


# --------------------------------------------------------------------------- cache files

def npy_header(shape: tuple[int, ...], dtype: str) -> bytes:
    """The exact .npy header np.save writes for an array of this shape and dtype."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": tuple(shape)})
    return buf.getvalue()


def _npy_header(img_size: int) -> bytes:
    """The exact .npy header np.save writes for a (2, 3, S, S) uint8 array."""
    return npy_header((2, 3, img_size, img_size), "u1")


def checksum(*parts) -> bytes:
    """CRC-32 of the bytes of `parts` (C-contiguous arrays or bytes), as the trailer of a cache entry."""
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return crc.to_bytes(CHECKSUM_BYTES, "little")


def _load_entry(path: Path, header: bytes, out_onset: np.ndarray,
                out_apex: np.ndarray) -> tuple[str, list[str]]:
    """Copy a cached pair into the two (3, S, S) outputs: ('hit', its notes), ('miss', []) when
    there is no entry, ('damaged', []) when it is truncated, foreign or fails its checksum.

    Hits are the common case and the cache is ours, so instead of np.load (header parsing
    dominated its cost) the file is checked against the one header np.save writes for
    this shape and the pixels are read straight into the result arrays.
    """
    n = out_onset.size
    notes_path = path.with_suffix(".txt")
    try:
        with open(path, "rb") as f:
            # read straight into the result arrays: one copy of the pixels, not two
            if (f.read(len(header)) != header or f.readinto(out_onset.reshape(-1)) != n
                    or f.readinto(out_apex.reshape(-1)) != n):
                return "damaged", []
            stored = f.read(CHECKSUM_BYTES + 1)
        text = notes_path.read_bytes() if notes_path.exists() else b""
    except (FileNotFoundError, IsADirectoryError):
        return "miss", []  # no entry (a folder in its place: saving it says so)
    except OSError:
        return "damaged", []
    if stored != checksum(out_onset.reshape(-1), out_apex.reshape(-1), text):
        return "damaged", []
    return "hit", text.decode("utf-8", "replace").splitlines()


def _save_entry(path: Path, onset: np.ndarray, apex: np.ndarray, notes: list[str]) -> None:
    # a plain .npy loads several times faster than an .npz (no zip layer); the rare notes
    # (warnings to replay on hits) go to a .txt beside it, written first so the .npy,
    # whose presence makes the hit, always finds them
    # a trailing CRC-32 of pixels and notes lets a damaged entry be told from a good one
    text = "\n".join(notes).encode("utf-8")
    if notes:
        atomic_write(path.with_suffix(".txt"), lambda f: f.write(text), durable=False)
    else:
        path.with_suffix(".txt").unlink(missing_ok=True)

    def write(f) -> None:
        np.save(f, np.stack([onset, apex]))
        f.write(checksum(np.ascontiguousarray(onset).reshape(-1), np.ascontiguousarray(apex).reshape(-1), text))
    atomic_write(path, write, durable=False)


def spotted_frame(notes: list[str]) -> int | None:
    """The apex frame a sample's notes say was spotted; None when its apex was annotated."""
    for note in notes:
        found = _SPOTTED_NOTE.search(note)
        if found:
            return int(found.group(1))
    return None


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the pool provides the parallelism


# --------------------------------------------------------------------------- all samples

def build_inputs(release: Release, *, img_size: int = 224, cache_dir: Path | None = None,
                 workers: int = 0, strict: bool = False, progress: bool = True) -> InputArrays:
    """Preprocess every sample of `release` (from the cache where possible).

    A sample whose frame cannot be read is skipped with a warning naming the file
    (strict=True: DataError). workers > 0 preprocesses cache misses in that many processes
    (started fresh, so a calling script needs the usual `if __name__ == "__main__":` guard).
    """
    check_map_size("--img-size", img_size)
    method = crop_method(release.layout)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    warnings: list[str] = []
    writable = writable_folder(cache)
    if not writable:
        warnings.append(f"cache folder {cache} is not writable; preprocessing without a cache")

    samples = release.samples
    shape = (len(samples), 3, img_size, img_size)
    onset, apex = np.empty(shape, np.uint8), np.empty(shape, np.uint8)   # (N, 3, S, S) each
    header = _npy_header(img_size)
    notes: list[list[str]] = [[] for _ in samples]
    errors: list[str | None] = [None] * len(samples)
    paths: list[Path] = []
    todo: list[int] = []
    bar = tqdm(total=len(samples), desc="preprocess", unit="sample", disable=not progress)
    for i, sample in enumerate(samples):
        path = cache / f"{cache_key(sample, img_size, method)}.npy"
        paths.append(path)
        status, found = _load_entry(path, header, onset[i], apex[i])
        if status == "hit":
            notes[i] = found
            bar.update(1)
        else:
            if status == "damaged":
                warnings.append(f"cache entry {path} is damaged (truncated or failing its checksum); rebuilt")
            todo.append(i)

    def finish(res: _Result) -> None:
        if res.strict_error or (res.error and strict):
            raise DataError(res.strict_error or res.error.removesuffix("; skipped"))
        notes[res.index], errors[res.index] = res.notes, res.error
        if res.error is None:
            onset[res.index], apex[res.index] = res.onset, res.apex
            if writable:
                try:
                    _save_entry(paths[res.index], res.onset, res.apex, res.notes)
                except OSError as e:  # e.g. a folder where the entry belongs
                    warnings.append(f"cache entry {paths[res.index]} cannot be written ({e.strerror or e}); "
                                    f"{_name(samples[res.index])} is not cached")
        bar.update(1)

    try:
        _preprocess_misses(todo, samples, img_size, method, strict, workers, finish)
    finally:
        bar.close()
    return _collected(release, onset, apex, notes, errors, warnings, len(todo))


def _collected(release: Release, onset: np.ndarray, apex: np.ndarray, notes: list[list[str]],
               errors: list[str | None], warnings: list[str], misses: int) -> InputArrays:
    """The InputArrays of build_inputs: every sample's notes and errors among the warnings, the
    spotted apexes recorded, the skipped samples left out."""
    for sample_notes, error in zip(notes, errors):
        warnings.extend(sample_notes)
        if error:
            warnings.append(error)
    arrays = _without_skipped(release, onset, apex, errors, warnings, misses)
    frames = [spotted_frame(n) if e is None else None for n, e in zip(notes, errors)]
    arrays.spotted = {s.key: f for s, f in zip(release.samples, frames) if f is not None}
    return arrays


def _preprocess_misses(todo: list[int], samples: list[Sample], img_size: int, method: str, strict: bool,
                       workers: int, finish: Callable[[_Result], None]) -> None:
    """Preprocess the samples `todo` (in `workers` processes when > 0), handing each result to `finish`."""
    if workers > 0 and len(todo) > 1:
        # forkserver, not fork: a child forked from a parent whose OpenCV thread pool
        # is busy can deadlock inside cv2 (seen with fork and 2 workers)
        ctx = multiprocessing.get_context(
            "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                 initializer=_worker_init) as pool:
            futures = [pool.submit(preprocess_sample, i, samples[i], img_size, method, strict)
                       for i in todo]
            try:
                for fut in as_completed(futures):
                    finish(fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    else:
        for i in todo:
            finish(preprocess_sample(i, samples[i], img_size, method, strict))


def _without_skipped(release: Release, onset: np.ndarray, apex: np.ndarray, errors: list[str | None],
                     warnings: list[str], misses: int) -> InputArrays:
    """The InputArrays of the samples whose frames were read (`errors[i]` is None)."""
    samples = release.samples
    keep = [i for i in range(len(samples)) if errors[i] is None]
    if len(keep) < len(samples):
        onset, apex = onset[keep], apex[keep]
    kept = [samples[i] for i in keep]
    skipped = [e for e in errors if e]
    if skipped:
        check_enough([s.label for s in kept], [s.subject for s in kept], release.protocol,
                     f"after skipping {len(skipped)} sample(s) whose frames cannot be read under "
                     f"{release.frames_root or release.root}")
    return InputArrays(
        samples=kept,
        onset=onset,                                            # (N, 3, S, S)
        apex=apex,                                              # (N, 3, S, S)
        labels=np.array([s.label for s in kept], dtype=np.int64),
        subjects=[s.subject for s in kept],
        warnings=warnings,
        cache_hits=len(samples) - misses,
        cache_misses=misses,
        skipped=skipped,
    )
