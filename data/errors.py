"""The one exception type for bad input found while reading a dataset."""
from __future__ import annotations


class DataError(Exception):
    """Bad or missing input data.

    The message is a single line naming the file, spreadsheet row/column or command-line
    flag at fault, so the command line can print it as `error: <message>` without a traceback.
    """
