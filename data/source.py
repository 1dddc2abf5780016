"""What a run needs from a dataset, whichever kind it is.

Two kinds implement it: a CASME II release (`data.release.Release`: sheet + frame folders,
preprocessed into the cache) and a folder of precomputed motion maps
(`data.motion_maps.MotionMapData`: index.csv + images). The command line works through this
interface and data.arrays (which turns any source into the arrays a run trains on); a new kind
of dataset subclasses DatasetSource, gives the fields below, gets its branch in data.arrays and
is opened in run_data.open_dataset.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from data.action_units import ActionUnit
    from data.protocols import Protocol


class DatasetSource:
    """Base of the dataset kinds; per-sample fields are (N,) in the order of their ModelArrays."""

    if TYPE_CHECKING:  # what each kind provides, as fields or properties
        protocol: Protocol
        subjects: list[str]         # (N,) each sample's subject (its LOSO fold)
        names: list[str]            # (N,) each sample's name within its subject
        datasets: list[str]         # (N,) each sample's dataset; '' for a single unnamed one
        labels: np.ndarray          # (N,) int64 class index of the protocol
        aus: list[frozenset[ActionUnit] | None] | None  # (N,) AU sets (None: not coded); None: no AU labels
        warnings: list[str]         # everything worth showing (includes the skip messages)
        excluded: dict[str, int]    # emotion -> rows left out by the protocol
        skipped: list[str]          # samples skipped (missing files), with the reason

    uses_cache = False              # whether building its arrays writes to the preprocessing cache

    @property
    def subject_list(self) -> list[str]:
        """The sorted unique subjects."""
        return sorted(set(self.subjects))

    def class_counts(self) -> dict[str, int]:
        """Class name -> samples, in the protocol's class order."""
        counts = Counter(np.asarray(self.labels).tolist())
        return {name: counts.get(i, 0) for i, name in enumerate(self.protocol.classes)}

    def describe(self) -> list[str]:
        """The lines --dry-run prints first: where the data comes from."""
        raise NotImplementedError


def dataset_name(cell: str) -> str:
    """A dataset cell as the dataset's identity: trimmed and case-folded ('SAMM ' and 'samm' are one
    dataset, whose subjects stay one LOSO fold each). ValueError, saying why, for a name holding a
    control character or a '/', which joins a dataset to its subjects ('samm/006')."""
    name = cell.strip().casefold()
    if not name.isprintable():
        raise ValueError(f"{cell!r} holds a control character")
    if "/" in name:
        raise ValueError(f"{cell!r} holds a '/', which separates a dataset from its subjects")
    return name
