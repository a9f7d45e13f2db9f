"""argparse types that refuse a bad value with a message naming the bound, so a bad option is
one ``error: argument --x: ...`` line from argparse instead of a failure deep in a command."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = ["at_least", "number"]


def at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum``.

    Examples
    --------
    >>> at_least(1)("3")
    3
    >>> at_least(1)("0")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected an integer >= 1, got 0
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def number(
    minimum: float = -math.inf, maximum: float = math.inf, *, strict: bool = False
) -> Callable[[str], float]:
    """argparse type: a finite number in ``[minimum, maximum]`` (``(minimum, maximum)`` if
    ``strict``).

    Examples
    --------
    >>> number(0.0)("0.5")
    0.5
    >>> number(0.0)("nan")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: expected a finite number >= 0.0, got 'nan'
    """
    op = ">" if strict else ">="
    want = f"a finite number {op} {minimum}" if minimum > -math.inf else "a finite number"
    if maximum < math.inf:
        want += f" and {'<' if strict else '<='} {maximum}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        inside = minimum < value < maximum if strict else minimum <= value <= maximum
        if not (math.isfinite(value) and inside):
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}")
        return value

    return parse
