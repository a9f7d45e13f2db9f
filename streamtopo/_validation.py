"""Argument checks shared by the public API. Every message names the argument, what was
expected and what was received."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .errors import InputError, InputTypeError

__all__ = [
    "as_float_matrix",
    "as_real_array",
    "check_choice",
    "check_monitor_name",
    "check_positive_int",
    "describe",
]

MONITOR_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")


def describe(x: Any) -> str:
    """Short description of a received value for error messages."""
    if isinstance(x, np.ndarray):
        return f"array of shape {x.shape} and dtype {x.dtype}"
    if isinstance(x, (list, tuple)):
        return f"{type(x).__name__} of length {len(x)}"
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def as_real_array(x: Any, name: str, expected: str = "an array of numbers") -> np.ndarray:
    """``np.asarray(x)`` if it holds real numbers (bool or numeric, not complex, not object);
    otherwise raise naming ``name``, what was ``expected`` and what was received."""
    if isinstance(x, (str, bytes)):
        raise InputTypeError(f"{name} must be {expected}, got {describe(x)}")
    if isinstance(x, np.ma.MaskedArray):
        raise InputTypeError(
            f"{name} must be {expected}, got a masked array (its mask would be ignored)"
        )
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} must be {expected}, got {describe(x)}") from exc
    if arr.dtype == object or not (
        np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)
    ):
        raise InputTypeError(f"{name} must be {expected}, got {describe(arr)}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InputTypeError(f"{name} must be real, got {describe(arr)}")
    return arr


def as_float_matrix(x: Any, name: str, *, min_rows: int = 1) -> np.ndarray:
    """Return ``x`` as a C-contiguous float64 (n, d) array, or raise naming ``name``."""
    arr = as_real_array(x, name, "a 2-D array of numbers")
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_points, n_features), got {describe(arr)}")
    if arr.shape[0] < min_rows:
        raise InputError(f"{name} must have at least {min_rows} row(s), got {describe(arr)}")
    if arr.shape[1] < 1:
        raise InputError(f"{name} must have at least 1 column, got {describe(arr)}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise InputError(f"{name} must be finite, got {bad} NaN/inf value(s) in {describe(arr)}")
    return out


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``; raise naming ``name`` otherwise."""
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"{name} must be one of {choices}, got {describe(value)}")
    return value


def check_positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer >= ``minimum``; raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputTypeError(f"{name} must be an integer >= {minimum}, got {describe(value)}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_monitor_name(name: Any) -> str | None:
    """A monitor's ``name`` (its rows go to table ``<kind>.<name>``), or None (unnamed).

    Lower case only: the name is a directory name, and a case-insensitive file system must not
    merge ``Eval`` and ``eval``.
    """
    if name is None:
        return None
    if not isinstance(name, str):
        raise InputTypeError(f"name must be a str or None, got {describe(name)}")
    if MONITOR_NAME.fullmatch(name) is None:
        raise InputError(
            "name must be 1-32 characters from [a-z0-9_] starting with a letter or digit "
            f"(the monitor's rows go to table <kind>.<name>), got {describe(name)}"
        )
    return name
