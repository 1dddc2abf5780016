"""Action-unit (AU) cells as the annotation sheets write them, parsed into `ActionUnit`s.

The one AU parser of the project: the CASME II sheet, SAMM's FACS codes and the `aus`
column of a motion-map folder all go through `parse_action_units`.

What a cell may hold
- `12`, `AU12`, or the number 12 / 12.0 (Excel stores a lone AU as a number): AU 12.
  Every AU number above 0 is valid, including the head and eye codes above 40
  (43 eyes closed, 50-58 head and eye movements, 61 eyes left, ...).
- a side or position prefix, kept as `side`: L left, R right, T top, B bottom,
  A asymmetric, U unilateral (`L10`, `A12`, `T18`); '' means both sides.
- an intensity suffix A-E (FACS trace to maximum), kept as `intensity` (`12A`, `L14C`).
- `+` joins AUs that occur together (`4+7+L10`, `A1B+A2C`); spaces around it are ignored.
- `none` or a blank cell: no AU. Letters are read in either case (`r14` is R14).

Rules for SAMM's notation
- Alternatives keep the first one written: `X or Y`, a parenthesised `(X or Y)` and `/`
  (SAMM's key: "/" = or). `L12 or L14` -> L12; `(R6 or R12)+R15` -> R6 + R15;
  `10A/B` -> 10A; `12/14` -> 12; `A/L12` -> A12 (an alternative holding only a side takes
  its AU from the next one). The coder's first reading gives one label per cell; taking
  the union would label AUs the coder doubted. The other alternatives are still checked,
  so a malformed one is an error.
- `ref(x)`: an AU the coder notes for reference, not scored as part of the movement. Its
  content is checked, then left out: `ref(7B)+43` -> 43.
- `?` (SAMM's key: an AU with an unclear offset) is ignored: `12?` -> 12.
- Stray words: a term made of words only (`soft focus` in `R14+17+soft focus`) is not an
  AU. It is skipped and reported through the `warn` callback, so that readers can name the
  row. Any other unreadable term (`X5`, `4-7`, `LR4`, a lone `L`, the empty term of `4+`)
  is a DataError naming it.

Bounds: a cell of more than MAX_CELL_CHARS characters or an AU number of more than
MAX_AU_DIGITS digits is a DataError; nesting is read with a queue, not recursion, so no
depth of parentheses or `ref(` can exhaust the stack.
"""
from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from data.errors import DataError

SIDES = "LRTBAU"
INTENSITIES = "ABCDE"
MAX_CELL_CHARS = 500   # SAMM's longest cells are under 60 characters
MAX_AU_DIGITS = 3      # FACS numbers stop below 100
# 12, L10, AU12, A14C
_CODE = re.compile(rf"([{SIDES}]?)(?:AU)?\s*(\d{{1,{MAX_AU_DIGITS}}})([{INTENSITIES}]?)", re.IGNORECASE)
_SIDE = re.compile(rf"[{SIDES}]", re.IGNORECASE)                                      # the 'A' of 'A/L12'
_LETTER = re.compile(rf"[{SIDES}{INTENSITIES}]", re.IGNORECASE)                        # the 'B' of '10A/B'
_WORDS = re.compile(r"[A-Za-z]{2,}(?:[\s'-]+[A-Za-z]+)*")                                # 'soft focus'
_REF = re.compile(r"ref\s*\((.*)\)", re.IGNORECASE | re.DOTALL)
_OR = re.compile(r"\s+or\s+", re.IGNORECASE)
_PLUS = re.compile(r"\+")


class ActionUnit(NamedTuple):
    au: int                 # FACS number
    side: str = ""          # one of SIDES, '' for both sides
    intensity: str = ""     # one of INTENSITIES, '' when not coded

    def __str__(self) -> str:
        return f"{self.side}{self.au}{self.intensity}"


def format_action_units(aus: Iterable[ActionUnit]) -> str:
    """The cell text that parses back to `aus`: '4+L10+12A', or 'none' for no AU."""
    return "+".join(str(unit) for unit in sorted(aus)) or "none"


def parse_action_units(cell: object, warn: Callable[[str], None] | None = None) -> frozenset[ActionUnit]:
    """Parse one AU cell (see the module docstring for the notation).

    Stray words are skipped; each is passed to `warn` as one line (dropped without `warn`).
    Raises DataError naming the term that cannot be read.
    """
    if cell is None:
        return frozenset()
    if isinstance(cell, bool):
        raise DataError(f"unreadable Action Units value {cell!r}")
    if isinstance(cell, (int, float)):
        if isinstance(cell, float) and math.isnan(cell):
            return frozenset()   # pandas' blank cell
        if 0 < cell < 10 ** MAX_AU_DIGITS and float(cell).is_integer():   # bounded first: float(10**400) overflows
            return frozenset({ActionUnit(int(cell))})
        raise DataError(f"unreadable Action Units token {cell!r}")
    text = str(cell).strip()
    if not text or text.lower() == "none":
        return frozenset()
    if len(text) > MAX_CELL_CHARS:
        raise DataError(f"an Action Units cell of {len(text)} characters (at most {MAX_CELL_CHARS}): "
                        f"{text[:20]!r}...")
    return _AUCell(text, warn).expression(text.replace("?", ""))


class _AUCell:
    """The reading of one cell's text; holds the text and `warn` for the messages."""

    def __init__(self, text: str, warn: Callable[[str], None] | None) -> None:
        self.text = text
        self.warn = warn

    def fail(self, what: str) -> DataError:
        return DataError(f"{what} in {self.text!r}")

    def split(self, part: str, separator: re.Pattern[str]) -> list[str]:
        """`part` cut at each `separator` outside parentheses."""
        pieces, depth, start, position = [], 0, 0, 0
        while position < len(part):
            depth += {"(": 1, ")": -1}.get(part[position], 0)
            if depth < 0:
                raise self.fail("unbalanced parentheses")
            match = separator.match(part, position) if depth == 0 else None
            if match:
                pieces.append(part[start:position])
                start = position = match.end()
            else:
                position += 1
        if depth:
            raise self.fail("unbalanced parentheses")
        return [*pieces, part[start:]]

    def expression(self, text: str) -> frozenset[ActionUnit]:
        """Terms joined by '+', each of alternatives joined by ' or ' (all checked, the first kept).

        A parenthesised choice or a `ref(...)` is queued as an expression of its own, scored
        only where its choice is (a first alternative outside any ref), so nesting is a loop.
        """
        aus: set[ActionUnit] = set()
        queue = deque([(text, True)])   # (expression text, whether its AUs count)
        while queue:
            part, scored = queue.popleft()
            for term in self.split(part, _PLUS):
                for k, choice in enumerate(self.split(term, _OR)):
                    unit = self.choice(choice.strip(), scored and k == 0, queue)
                    if unit is not None and scored and k == 0:
                        aus.add(unit)
        return frozenset(aus)

    def choice(self, choice: str, scored: bool, queue: deque) -> ActionUnit | None:
        """One alternative: its AU, or None after queueing its inner expression or skipping a stray word."""
        if (ref := _REF.fullmatch(choice)) is not None:
            queue.append((ref.group(1), False))   # checked, not scored
        elif choice.startswith("(") and choice.endswith(")"):
            queue.append((choice[1:-1], scored))
        elif _WORDS.fullmatch(choice):
            if self.warn is not None:
                self.warn(f"skipped {choice!r} in Action Units {self.text!r}: not an action unit")
        else:
            return self.slashed(choice)
        return None

    def slashed(self, choice: str) -> ActionUnit:
        """A code, or codes joined by '/' ('10A/B', 'A/L12', '12/14'): the first alternative."""
        parts = [part.strip() for part in choice.split("/")]
        codes = [_CODE.fullmatch(part) for part in parts]
        for part, code in zip(parts, codes):
            # a lone letter is an alternative side or intensity ('A/L12', '10A/B')
            if code is None and not (len(parts) > 1 and _LETTER.fullmatch(part)):
                raise self.fail(f"unreadable Action Units token {part!r}")
        if codes[0] is not None:
            return self.unit(*codes[0].groups())
        donor = next((code for code in codes if code is not None), None)
        if donor is None or not _SIDE.fullmatch(parts[0]):
            raise self.fail(f"unreadable Action Units token {choice!r}")
        return self.unit(parts[0], donor.group(2), donor.group(3))   # 'A/L12' -> A12

    def unit(self, side: str, number: str, intensity: str) -> ActionUnit:
        if int(number) == 0:
            raise self.fail(f"unreadable Action Units token {side + number + intensity!r}")
        return ActionUnit(int(number), side.upper(), intensity.upper())
