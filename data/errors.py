"""The one exception type for bad input found while reading a dataset."""
from __future__ import annotations


MIN_MAP_SIZE = 8   # the smallest image side preprocessing makes (a model may need more: models.MIN_IMG_SIZE)
MAX_MAP_SIZE = 2048   # the largest: a (3, S, S) float map of a few thousand samples must fit in memory


class DataError(Exception):
    """Bad or missing input data.

    The message is a single line naming the file, spreadsheet row/column or command-line
    flag at fault, so the command line can print it as `error: <message>` without a traceback.
    """


def check_map_size(flag: str, size: int) -> None:
    """DataError naming `flag` when `size` is outside MIN_MAP_SIZE..MAX_MAP_SIZE."""
    if not MIN_MAP_SIZE <= size <= MAX_MAP_SIZE:
        raise DataError(f"{flag} {size}: must be from {MIN_MAP_SIZE} to {MAX_MAP_SIZE}")
