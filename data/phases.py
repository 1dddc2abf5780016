"""Phases of a clip: one motion map per phase, so a sample can bring the whole clip's motion.

    onset-apex    onset frame -> apex frame: the micro-expression rising (the usual single map)
    apex-offset   apex frame -> offset frame: its relaxation

A phase is built as a release of its own whose samples start at the phase's first frame and
end at its last one (`phase_release`): data.inputs then reads, crops and caches its two faces
and data.motion turns them into a map exactly as for onset-apex, so every phase is cached like
today's maps (the cache key holds both frame numbers and files). The crop box of the raw layout
is found on the phase's first frame. Where the sheet gives no apex, the apex is spotted
(data.inputs.spot_sample) with the same rule that onset-apex uses, so both phases meet at the
same frame.
"""
from __future__ import annotations

from dataclasses import replace

from data.errors import DataError
from data.inputs import crop_method, spot_sample
from data.layout import frame_path
from data.release import Release, Sample

PHASES: tuple[str, ...] = ("onset-apex", "apex-offset")
DEFAULT_PHASES: tuple[str, ...] = ("onset-apex",)


def parse_phases(text: str) -> tuple[str, ...]:
    """'onset-apex,apex-offset' -> ('onset-apex', 'apex-offset'); ValueError naming what is wrong."""
    phases = tuple(t.strip() for t in text.split(","))
    unknown = [p for p in phases if p not in PHASES]
    if unknown or not phases or len(set(phases)) != len(phases):
        raise ValueError(f"expected distinct phases from {', '.join(PHASES)}, comma-separated, got {text!r}")
    return phases


def _relaxation(sample: Sample, release: Release, method: str) -> tuple[Sample | None, list[str]]:
    """`sample` re-cut to run from its apex to its offset frame, or None with the reason."""
    where = f"{sample.subject} {sample.filename} (sheet row {sample.row})"
    start, start_path, notes = sample.apex, sample.apex_path, []
    if start_path is None:   # no annotated apex: the frame onset-apex spots
        found = spot_sample(sample, method)
        notes = list(found.notes)
        if found.path is None:
            return None, notes + [f"{where}: no apex could be spotted for phase apex-offset; skipped"]
        start, start_path = found.frame, found.path
    end_path = frame_path(release.frames_root or release.root, sample.subject, sample.filename, sample.offset)
    if end_path is None:
        return None, notes + [f"{where}: offset frame {sample.offset} not found in {sample.frame_dir} "
                              f"(phase apex-offset); skipped"]
    return replace(sample, onset=start, onset_path=start_path, apex=sample.offset, apex_path=end_path), notes


def phase_release(release: Release, phase: str, strict: bool = False) -> tuple[Release, list[str]]:
    """(the release whose samples span `phase` of each clip, notices); samples whose phase cannot be
    built are left out with a skip message (strict: DataError)."""
    if phase == "onset-apex":
        return release, []
    if phase != "apex-offset":
        raise DataError(f"unknown phase {phase!r}; valid phases: {', '.join(PHASES)}")
    method = crop_method(release.layout)
    samples, notices, skipped = [], [], []
    for sample in release.samples:
        cut, notes = _relaxation(sample, release, method)
        if cut is None:
            if strict:
                raise DataError(notes[-1].removesuffix("; skipped"))
            skipped.append(notes.pop())
        else:
            samples.append(cut)
        notices += notes
    return replace(release, samples=samples, warnings=notices + skipped, skipped=skipped), notices
