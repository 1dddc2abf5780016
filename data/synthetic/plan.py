"""Release planning: the clips of a synthetic sheet (with the real sheets' quirks), or those of a given
sheet, and the .xlsx sheet written from them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.action_units import ActionUnit, parse_action_units
from data.protocols import PROTOCOLS
from data.sheet import read_sheet
from data.synthetic.randomness import _rng
from utils.face_regions import AU_REGIONS

# Sheet spellings of the action units typical of each emotion; one is drawn per clip.
EMOTION_AUS: dict[str, tuple[str, ...]] = {
    "happiness": ("6+12", "12", "R12", "6+12+25", "L12"),
    "surprise": ("1+2", "1+2+25", "1+2+26", "L1+L2", "1+2+5"),
    "disgust": ("4+9", "4+10", "4+L10", "4+7+10", "9+10"),
    "repression": ("14", "15", "17", "15+17", "R14", "14+17"),
    "others": ("4", "7", "4+7", "5", "18", "24", "38"),
    "sadness": ("1+4+15", "1+4+15+17", "4+15"),
    "fear": ("1+2+4+20", "1+2+4+20+25", "4+20"),
}
FIVE_CLASSES = PROTOCOLS["5class"].classes
OBJECTIVE_CLASS = {"happiness": 1, "surprise": 2, "disgust": 4, "repression": 5,
                   "others": 7, "sadness": 6, "fear": 3}
# Irregular file names seen in the real sheets; the generator mixes them in.
IRREGULAR_NAMES = ("EP06_02_01", "EP09f", "EP01_2", "EP08_1")


@dataclass(frozen=True)
class Clip:
    """One row of the synthetic sheet, plus what the renderer needs."""
    subject: int            # 1-based
    filename: str
    onset: int
    apex: int | None        # None: the sheet says '/'
    offset: int
    aus_cell: object        # as written to the sheet (int or str)
    emotion: str
    motion_aus: tuple[ActionUnit, ...]   # the AUs that move in the frames
    true_apex: int          # the frame of peak motion (== apex unless apex is None)


def _subject_cell(subject: int, version: str) -> object:
    # the 2019 copies store subjects as text '01'; some 2014 copies as integers
    return f"{subject:02d}" if version == "2019" else subject


def _aus_cell(text: str) -> object:
    # Excel stores a lone numeric AU as a number
    return int(text) if text.isdigit() else text


def plan_clips(*, subjects: int, per_subject: int, version: str, seed: int,
               emotions: Sequence[str] | None = None,
               clip_len: tuple[int, int] = (24, 80)) -> list[Clip]:
    """The rows of a synthetic sheet, with the real sheets' quirks built in.

    Quirks: a filename shared by two subjects, an irregular filename (EP06_02_01),
    one-sided AU codes (L10, R12), numeric AU cells, 'none' AUs (2014), one '/' apex (2019).
    """
    if subjects < 1 or per_subject < 1:
        raise ValueError("subjects and per_subject must be >= 1")
    labels = _planned_emotions(subjects * per_subject, version, seed, emotions)
    names = [f"EP{a:02d}_{b:02d}{'f' if (a + b) % 3 == 0 else ''}"
             for a in range(1, 20) for b in range(1, 8)]
    clips: list[Clip] = []
    forced = {"L": False, "R": False, "none": False, "slash": False}
    slash_subject = min(4, subjects)   # like sub04 EP12_01f in the real 2019 sheet
    for s in range(1, subjects + 1):
        srng = _rng(seed, "subject", s)
        for j, filename in enumerate(_subject_filenames(s, per_subject, names, srng)):
            emotion = labels[(s - 1) * per_subject + j]
            text = _aus_text(emotion, srng, forced)
            motion = tuple(sorted(parse_action_units(text)))
            cell: object = _aus_cell(text)
            if version == "2014" and emotion == "others" and not forced["none"]:
                cell, forced["none"] = "none", True   # motion stays: the coder saw no AU
            length = int(srng.integers(clip_len[0], clip_len[1] + 1))
            onset = int(srng.integers(1, 200))
            offset = onset + length - 1
            apex = onset + int(round(length * srng.uniform(0.3, 0.6)))
            apex = min(max(apex, onset + 1), offset - 1) if length >= 3 else onset
            sheet_apex: int | None = apex
            if (version == "2019" and s == slash_subject and not forced["slash"]
                    and (emotion in FIVE_CLASSES or j == per_subject - 1)):
                sheet_apex, forced["slash"] = None, True   # kept by the five-class protocol
            clips.append(Clip(s, filename, onset, sheet_apex, offset, cell, emotion, motion, apex))
    return clips


def _planned_emotions(total: int, version: str, seed: int, emotions: Sequence[str] | None) -> list[str]:
    """The `total` clips' emotions, cycling through the pool, in a seeded random order."""
    if emotions is None:
        pool = list(FIVE_CLASSES)
    else:
        pool = [str(e).strip().lower() for e in emotions]
        if not pool:
            raise ValueError("emotions must not be empty")
    labels = [pool[i % len(pool)] for i in range(total)]
    if emotions is None and version == "2019" and total >= 15:
        # the 2019 sheet's rare emotions, left out by the five-class protocol
        labels[total - 1] = "sadness"
        labels[total - 8] = "fear"
    rng = _rng(seed, "plan", version)
    rng.shuffle(labels)
    return labels


def _subject_filenames(s: int, per_subject: int, names: list[str], srng: np.random.Generator) -> list[str]:
    """Subject `s`'s clip names, sorted: EP02_01f under subjects 1 and 2, irregular names under subject 1."""
    picks = list(srng.choice(len(names), size=min(per_subject, len(names)), replace=False))
    chosen = [names[i] for i in picks]
    while len(chosen) < per_subject:
        chosen.append(f"EP{20 + len(chosen):02d}_01")
    # the same filename under subjects 1 and 2; irregular names for subject 1
    if s in (1, 2):
        if "EP02_01f" in chosen:
            chosen.remove("EP02_01f")
            chosen.insert(0, "EP02_01f")
        else:
            chosen[0] = "EP02_01f"
    if s == 1 and per_subject >= 2:
        for k, irregular in enumerate(IRREGULAR_NAMES[: per_subject - 1]):
            chosen[k + 1] = irregular
    chosen = sorted(dict.fromkeys(chosen))  # real sheets list each subject's clips by name
    while len(chosen) < per_subject:
        chosen.append(f"EP{30 + len(chosen):02d}_02")
    return chosen


def _aus_text(emotion: str, srng: np.random.Generator, forced: dict[str, bool]) -> str:
    """A clip's AU code for `emotion`; the first disgust and happiness clips get the one-sided codes."""
    variants = EMOTION_AUS.get(emotion)
    if variants is None:  # an emotion outside the table: one or two random AUs
        k = srng.choice(sorted(AU_REGIONS), size=int(srng.integers(1, 3)), replace=False)
        text = "+".join(str(int(a)) for a in sorted(k))
    else:
        text = variants[int(srng.integers(len(variants)))]
    # make sure the one-sided codes and 'none' appear at least once
    if emotion == "disgust" and not forced["L"]:
        text, forced["L"] = "4+L10", True
    elif emotion == "happiness" and not forced["R"]:
        text, forced["R"] = "R12", True
    return text


def _clips_from_sheet(path: Path, seed: int) -> list[Clip]:
    """Clips for every row of an existing sheet: frames follow its onset/apex/offset.

    Motion = the row's annotated AUs plus a typical AU set of its emotion, so the class is
    recoverable from the frames even where the coders gave few or shared AUs.
    """
    rows, _ = read_sheet(path)
    clips = []
    for r in rows:
        rng = _rng(seed, "row", r.subject, r.filename)
        variants = EMOTION_AUS.get(r.emotion, EMOTION_AUS["others"])
        motion = parse_action_units(variants[int(rng.integers(len(variants)))]) | r.aus
        true_apex = r.apex if r.apex is not None else (r.onset + r.offset) // 2
        clips.append(Clip(int(r.subject[3:]), r.filename, r.onset, r.apex, r.offset, None,
                          r.emotion, tuple(sorted(motion)), true_apex))
    return clips


def write_sheet(path: Path, clips: Sequence[Clip], version: str) -> None:
    """The official column order: Subject, Filename, -, OnsetFrame, ApexFrame, OffsetFrame, -,
    Action Units, Estimated Emotion, then 'Objective Classes' (2019) or a blank header (2014)."""
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.title = "Sheet1"
    last = "Objective Classes" if version == "2019" else None
    ws.append(["Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None,
               "Action Units", "Estimated Emotion", last])
    for c in clips:
        ws.append([_subject_cell(c.subject, version), c.filename, None, c.onset,
                   "/" if c.apex is None else c.apex, c.offset, None, c.aus_cell, c.emotion,
                   OBJECTIVE_CLASS.get(c.emotion, 7)])
    book.create_sheet("Sheet2")
    book.create_sheet("Sheet3")
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
