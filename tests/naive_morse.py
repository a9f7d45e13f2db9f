"""Slow references for the MorseMonitor tests (independent of streamtopo)."""

from __future__ import annotations

import numpy as np


def sorted_matching_distance(deaths_a: np.ndarray, deaths_b: np.ndarray) -> float:
    """Largest gap when the i-th smallest death of one H0 diagram is matched to the i-th of the
    other. It is the cost of one particular matching, so it bounds the bottleneck distance from
    above; a bound proved for it holds for the bottleneck."""
    a = np.sort(np.asarray(deaths_a, dtype=np.float64))
    b = np.sort(np.asarray(deaths_b, dtype=np.float64))
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def edges_within(D: np.ndarray, scale: float) -> int:
    """Number of pairs i < j with D[i, j] <= scale."""
    iu = np.triu_indices(D.shape[0], 1)
    return int(np.count_nonzero(D[iu] <= scale))


def elder_pairs(n: int, src, dst) -> list[int]:
    """Killed vertex of each edge in merge order (elder rule, ties to the smaller vertex), by
    relabelling lists (O(n^2))."""
    comp = list(range(n))
    killed = []
    for a, b in zip(src, dst, strict=True):
        ca, cb = comp[a], comp[b]
        assert ca != cb, "tree edge closes a cycle"
        keep, kill = min(ca, cb), max(ca, cb)  # label = smallest vertex of the component
        killed.append(kill)
        comp = [keep if c == kill else c for c in comp]
    return killed
