"""Seed 000's Collapse Index arithmetic, kept apart from the default so it stays verbatim."""

from __future__ import annotations

from typing import Any

import numpy as np

from .h0 import h1_diagram

__all__ = [
    "SEED000_WEIGHTS",
    "h1_of_points",
    "seed000_index",
]

#: Seed 000's weights, keyed by the seed's component names.
SEED000_WEIGHTS: dict[str, float] = {
    "anisotropy": 0.3,
    "dim_ratio": 0.3,
    "persistence_entropy": 0.2,
    "fisher_ratio": 0.2,
}


def h1_of_points(points: np.ndarray) -> np.ndarray:
    """H1 diagram of all ``points`` (no subsampling here: the callers choose the rows)."""
    return h1_diagram(points, max_points=None)


def seed000_index(X: np.ndarray, labels: np.ndarray | None) -> tuple[float, dict[str, Any]]:
    """Seed 000's ``compute_collapse_index``, operation for operation.

    Differences from the skill file: ripser's result key is ``"dgms"`` (the seed asks for
    ``"diagrams"`` and raises KeyError), ripser gets the points of the first ≤ 500 rows instead of
    their distance matrix (same diagram), and inputs the seed would crash on (d = 1, zero
    variance) are rejected or reported before this point.
    """
    cov = np.cov(X.T)
    ev = np.linalg.eigvalsh(cov)
    ev = ev[ev > 0]
    comp: dict[str, Any] = {}
    comp["anisotropy"] = float(np.log1p(ev[-1] / (ev[0] + 1e-10)))
    evn = ev / ev.sum()
    comp["dim_ratio"] = float(1.0 - (1.0 / (evn**2).sum()) / len(ev))
    dgm1 = h1_of_points(X[: min(500, len(X))])
    if len(dgm1) > 0:
        finite = np.isfinite(dgm1[:, 1])
        life = dgm1[finite, 1] - dgm1[finite, 0]
        if len(life) > 0:
            total = life.sum()
            if total > 0:
                p = life / total
                comp["persistence_entropy"] = float(-(p * np.log(p + 1e-10)).sum())
    if labels is not None:
        classes = np.unique(labels)
        if len(classes) > 1:
            mu = X.mean(axis=0)
            sw = 0.0
            sb = 0.0
            for c in classes:
                m = labels == c
                cm = X[m].mean(axis=0)
                sw += np.sum((X[m] - cm) ** 2)
                sb += m.sum() * np.sum((cm - mu) ** 2)
            if sw > 0:
                comp["fisher_ratio"] = float(1.0 / (1.0 + sb / sw))
    ci = 0.0
    for key, w in SEED000_WEIGHTS.items():
        if key in comp:
            v = comp[key]
            comp["score_" + key] = float(np.clip((v - 0.0) / (10.0 - 0.0 + 1e-10), 0, 1))
            ci += w * comp["score_" + key]
    return float(ci), comp
