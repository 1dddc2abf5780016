"""The command-line kit of every script: one-line errors, notes that pass progress bars, the device,
and the argparse types of path and comma-list flags."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from data.phases import parse_phases
from utils.distributed import DistInfo
from utils.face_regions import AU_REGIONS


class UsageError(Exception):
    """A flag value that cannot work; the message names the flag."""


class CommandLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag as a UsageError: one `error:` line, exit status 2, no usage dump."""

    def error(self, message: str):
        raise UsageError(message)


def emit(line: str) -> None:
    """A note on stderr that does not break a progress bar."""
    tqdm.write(line, file=sys.stderr)


def print_error(message: object) -> None:
    """The one line a script ends with on bad input."""
    print(f"error: {message}", file=sys.stderr)


def path_value(text: str) -> Path:
    """A path flag's value; an empty one is refused (Path('') would silently mean '.')."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return Path(text)


def resolve_device(name: str, info: DistInfo) -> torch.device:
    """--device auto, cpu, cuda or cuda:N as a device; plain cuda picks this process's local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: CUDA is not available on this machine")
        if name == "cuda":
            name = f"cuda:{info.local_rank % torch.cuda.device_count()}"
    elif name != "cpu":
        raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    return torch.device(name)


def _integers(text: str, example: str, what: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; ArgumentTypeError naming `what` otherwise."""
    try:
        return [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated {what} such as {example}, got {text!r}") from None


def au_list(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (argparse type of --aus): distinct AUs with a facial region."""
    aus = _integers(text, "1,2,4", "AU numbers")
    unknown = [au for au in aus if au not in AU_REGIONS]
    if unknown or len(set(aus)) != len(aus) or len(aus) < 2:
        raise argparse.ArgumentTypeError(
            f"expected at least two distinct AUs from {','.join(map(str, sorted(AU_REGIONS)))}, got {text!r}")
    return aus


def map_list(text: str) -> list[int]:
    """'1,2,4' -> [1, 2, 4] (argparse type of --maps): distinct map columns, 1 = motion, 2 = motion_2, ..."""
    maps = _integers(text, "1,2,4", "map numbers")
    if len(set(maps)) != len(maps) or not all(1 <= k <= 99 for k in maps):
        raise argparse.ArgumentTypeError(f"expected distinct map numbers from 1 to 99, got {text!r}")
    return maps


def seed_list(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2] (argparse type of --seeds)."""
    seeds = _integers(text, "0,1,2", "integers")
    if len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise argparse.ArgumentTypeError(f"seeds must be distinct and not negative, got {text!r}")
    return seeds


def phase_list(text: str) -> list[str]:
    """'onset-apex,apex-offset' -> its phases (argparse type of --phases)."""
    try:
        return list(parse_phases(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def number_list(text: str) -> list[float]:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]: numbers of at least 0."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not v >= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected numbers >= 0, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)
