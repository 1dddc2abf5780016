"""Class protocols: which sheet rows become samples, and with which label.

All protocols are defined here and nowhere else:
- '5class':   happiness, surprise, disgust, repression, others (fear/sadness left out).
- '3class':   negative = disgust + repression + fear + sadness, positive = happiness,
              surprise = surprise; 'others' left out.
- 'megc2019': the same three classes over the fixed MEGC2019 composite list of CASME II
              samples (data/megc2019_casme2.csv); labels come from that list, not the sheet.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from data.errors import DataError
from data.sheet import SheetRow

_FIVE = ("happiness", "surprise", "disgust", "repression", "others")
# Every emotion spelling seen in the official sheets; others are reported as unknown.
KNOWN_EMOTIONS = frozenset(_FIVE + ("fear", "sadness"))

MEGC2019_LIST = Path(__file__).with_name("megc2019_casme2.csv")


@dataclass(frozen=True)
class Protocol:
    name: str                                     # '5class' | '3class' | 'megc2019'
    classes: tuple[str, ...]                      # class names, index = label
    emotion_to_class: tuple[tuple[str, str], ...] = ()   # emotion -> class name
    fixed_list: Path | None = None                # CSV subject,filename,label (fixed-list protocols)
    description: str = ""

    def class_of(self, emotion: str) -> str | None:
        return dict(self.emotion_to_class).get(emotion)

    def fixed_labels(self) -> dict[tuple[str, str], int]:
        """(subject, filename) -> label index for fixed-list protocols (empty otherwise)."""
        if self.fixed_list is None:
            return {}
        return _read_fixed_list(self.fixed_list, self.classes)

    def label_of(self, row: SheetRow) -> tuple[int | None, str]:
        """Label index of `row`, or None with the reason it is left out."""
        if self.fixed_list is not None:
            label = self.fixed_labels().get(row.key)
            if label is None:
                return None, f"not in the {self.name} list"
            return label, "in list"
        if row.emotion not in KNOWN_EMOTIONS:
            return None, f"unknown emotion {row.emotion!r}"
        cls = self.class_of(row.emotion)
        if cls is None:
            return None, f"emotion {row.emotion!r} is not used by {self.name}"
        return self.classes.index(cls), "emotion"


@lru_cache(maxsize=None)
def _read_fixed_list(path: Path, classes: tuple[str, ...]) -> dict[tuple[str, str], int]:
    if not path.is_file():
        raise DataError(f"protocol list {path}: file not found")
    out: dict[tuple[str, str], int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"subject", "filename", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"protocol list {path}: missing column(s) {', '.join(sorted(missing))}")
        for line, rec in enumerate(reader, 2):
            match = re.fullmatch(r"(?:sub)?0*(\d+)", (rec["subject"] or "").strip(), re.IGNORECASE)
            label = (rec["label"] or "").strip().lower()
            if not match or label not in classes:
                raise DataError(f"protocol list {path} line {line}: bad subject or label "
                                f"({rec['subject']!r}, {rec['label']!r})")
            out[(f"sub{int(match.group(1)):02d}", (rec["filename"] or "").strip())] = classes.index(label)
    return out


_THREE = ("negative", "positive", "surprise")
_THREE_MAP = (("disgust", "negative"), ("repression", "negative"), ("fear", "negative"),
              ("sadness", "negative"), ("happiness", "positive"), ("surprise", "surprise"))

PROTOCOLS: dict[str, Protocol] = {
    "5class": Protocol(
        "5class", _FIVE, emotion_to_class=tuple((e, e) for e in _FIVE),
        description="five emotions; fear and sadness left out"),
    "3class": Protocol(
        "3class", _THREE,
        emotion_to_class=_THREE_MAP,
        description="negative/positive/surprise from the sheet's emotions; others left out"),
    "megc2019": Protocol(
        # the emotion map only serves to flag list labels that disagree with the sheet
        "megc2019", _THREE, emotion_to_class=_THREE_MAP, fixed_list=MEGC2019_LIST,
        description="MEGC2019 composite CASME II list (145 samples)"),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; DataError naming --protocol when there is none."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise DataError(f"unknown --protocol {name!r}; valid values: "
                        f"{', '.join(PROTOCOLS)}") from None


@dataclass
class Selection:
    """Result of applying a protocol to the sheet rows."""
    rows: list[tuple[SheetRow, int]]                       # (row, label) in sheet order
    excluded: dict[str, int] = field(default_factory=dict)  # emotion -> rows left out
    warnings: list[str] = field(default_factory=list)


def check_enough(labels: list[int], subjects: list[str], protocol: Protocol, context: str) -> None:
    """LOSO needs at least two classes and two subjects; DataError otherwise."""
    n_classes, n_subjects = len(set(labels)), len(set(subjects))
    if n_classes < 2 or n_subjects < 2:
        raise DataError(f"protocol {protocol.name} leaves {len(labels)} samples with "
                        f"{n_classes} class(es) and {n_subjects} subject(s) {context}; "
                        f"at least 2 classes and 2 subjects are needed")


def apply_protocol(rows: list[SheetRow], protocol: Protocol, sheet_name: str = "sheet") -> Selection:
    """Keep the rows `protocol` uses, with their labels; count and explain the rest."""
    selection = Selection(rows=[])
    excluded: Counter[str] = Counter()
    unknown: dict[str, list[int]] = {}
    for row in rows:
        if row.emotion not in KNOWN_EMOTIONS:
            unknown.setdefault(row.emotion, []).append(row.row)
        label, _ = protocol.label_of(row)
        if label is None:
            excluded[row.emotion] += 1
        else:
            selection.rows.append((row, label))
            expected = protocol.class_of(row.emotion) if protocol.fixed_list else None
            if expected is not None and expected != protocol.classes[label]:
                selection.warnings.append(
                    f"{sheet_name} row {row.row} ({row.subject} {row.filename}): the {protocol.name} "
                    f"list says {protocol.classes[label]!r} but the sheet's emotion {row.emotion!r} "
                    f"means {expected!r}; using the list")
    for emotion, where in unknown.items():
        shown = ", ".join(map(str, where[:5])) + (" ..." if len(where) > 5 else "")
        selection.warnings.append(
            f"{sheet_name}: unknown emotion {emotion!r} in {len(where)} row(s) ({shown}); "
            f"known: {', '.join(sorted(KNOWN_EMOTIONS))}")
    if protocol.fixed_list is not None:
        present = {row.key for row in rows}
        absent = [k for k in protocol.fixed_labels() if k not in present]
        for subject, filename in absent:
            selection.warnings.append(f"{protocol.name} list entry {subject} {filename} "
                                      f"is not in {sheet_name}; left out")
    selection.excluded = dict(sorted(excluded.items()))
    check_enough([label for _, label in selection.rows],
                 [row.subject for row, _ in selection.rows], protocol, f"in {sheet_name}")
    return selection
