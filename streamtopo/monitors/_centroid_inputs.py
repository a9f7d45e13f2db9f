"""Argument checks for CentroidMonitor (messages name the argument, expected and received)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._validation import describe
from ..errors import InputError, InputTypeError

__all__ = ["as_features", "as_labels", "finite_float", "positive_float"]


def as_labels(labels: Any, n_rows: int, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype == object or not (np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_):
        raise InputTypeError(f"labels must be integers, got {describe(y)}")
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise InputError(f"labels must have shape ({n_rows},) to match features, got {describe(y)}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)]
        raise InputError(
            f"labels must be in [0, n_classes={n_classes}), got {bad.size} label(s) out of "
            f"range (e.g. {int(bad[0])})"
        )
    return y.astype(np.int64, copy=False)


def as_features(features: Any, d: int | None, name: str = "features") -> np.ndarray:
    if isinstance(features, (str, bytes)):
        raise InputTypeError(f"{name} must be a 2-D array of numbers, got {describe(features)}")
    try:
        X = np.asarray(features)
    except Exception as exc:
        raise InputError(
            f"{name} must be a 2-D array of numbers, got {describe(features)}"
        ) from exc
    if X.dtype == object or not (
        np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)
    ):
        raise InputTypeError(f"{name} must be a 2-D array of real numbers, got {describe(X)}")
    if X.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_rows, n_features), got {describe(X)}")
    if X.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (0 rows), expected at least 1 row")
    if d is not None and X.shape[1] != d:
        raise InputError(
            f"{name} has {X.shape[1]} feature columns, expected {d} (the width seen so far)"
        )
    if X.shape[1] < 1:
        raise InputError(f"{name} must have at least 1 column, got {describe(X)}")
    return X


def positive_float(x: Any, name: str) -> float:
    v = finite_float(x, name)
    if v <= 0:
        raise InputError(f"{name} must be > 0, got {x!r}")
    return v


def finite_float(x: Any, name: str) -> float:
    if isinstance(x, bool):
        raise InputTypeError(f"{name} must be a number, got {describe(x)}")
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a number, got {describe(x)}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be finite, got {x!r}")
    return v
