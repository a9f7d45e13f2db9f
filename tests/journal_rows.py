"""Synthetic rows following the monitor → writer contract (no monitor needed).

Every value is recoverable from its step: ``values[s, l] = step + 1000 * s + l`` (exact in
float32 while step < 2**23), so a test can check each recorded cell, not just the row count.
"""

from __future__ import annotations

import numpy as np

SIGNALS = ("grad_norm", "act_norm")
CONFIG = {"window": 16, "transform": "log"}


def layer_names(n_layers: int) -> tuple[str, ...]:
    return tuple(f"blocks.{i}.mlp" for i in range(n_layers))


_NAMES: dict[tuple[int, int], tuple[tuple[str, ...], tuple[str, ...]]] = {}


def expected_values(step: int, n_layers: int, n_signals: int = 2) -> np.ndarray:
    s = np.arange(n_signals, dtype=np.float32)[:, None]
    return (np.float32(step) + 1000 * s + np.arange(n_layers, dtype=np.float32)).astype(np.float32)


def layer_row(
    step: int,
    n_layers: int = 4,
    *,
    n_signals: int = 2,
    state: str = "HEALTHY",
    h0: float | None = None,
    reason: str = "ok",
) -> dict:
    key = (n_layers, n_signals)
    if key not in _NAMES:  # the monitor passes the same tuples every step
        _NAMES[key] = (SIGNALS[:n_signals], layer_names(n_layers))
    signals, names = _NAMES[key]
    return {
        "monitor": "layer",
        "step": step,
        "wall_time": 1.7e9 + step,
        "signals": signals,
        "layer_names": names,
        "values": expected_values(step, n_layers, n_signals),
        "h0": float(step) / 7 if h0 is None else h0,
        "state": state,
        "reason": reason,
        "config": CONFIG,
    }


def centroid_row(step: int) -> dict:
    return {
        "monitor": "centroid",
        "step": step,
        "wall_time": 1.7e9 + step,
        "h0_gap": step / 3,
        "n_classes": 10,
        "state": "HEALTHY",
        "alert": step % 2 == 0,
        "config": {"rule": "noise"},
    }
