"""Compile (first run) or load from the numba cache (later runs) every kernel ahead of time,
so a training loop never waits on a compile mid-run.

``WARMERS`` maps a name to a function that calls its kernels once on tiny inputs; modules with
kernels add an entry. ``streamtopo warmup`` runs them all and prints the time each took.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["WARMERS", "warm_all"]


def _warm_h0() -> None:
    import numpy as np

    from ._kernels.unionfind import kruskal
    from .topology import h0 as topology

    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, 3))
    for metric in ("euclidean", "cosine"):
        topology.h0_diagram(X, metric)  # one-call kernels
        topology.h0_total(X, metric)
        topology.linkage(X.tolist(), metric)  # validating path, Prim, linkage
        P = topology.prepare_points(X, metric)
        topology._mst_unsorted(P, metric, path="gram")  # float32 Gram
        wide = rng.normal(size=(4, topology.GRAM_F64_MIN_D))
        topology._mst_unsorted(topology.prepare_points(wide, metric), metric, path="gram")
    topology.h0_diagram(X[:, :1])  # 1-D sort, one-call
    topology.merge_order(X[:, :1].tolist())  # 1-D sort, validating path
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    topology.h0_diagram(D, "precomputed")
    topology.betti0_at(X, 1.0)
    src, dst, w = topology._mst_unsorted(X, "euclidean")
    out = (np.empty(5, np.int64), np.empty(5, np.int64), np.empty(5))
    kruskal(6, src, dst, w, np.argsort(w), *out)


WARMERS: dict[str, Callable[[], None]] = {"h0": _warm_h0}


def warm_all() -> list[tuple[str, float]]:
    """Run every warmer; return ``(name, seconds)`` pairs."""
    out = []
    for name, fn in WARMERS.items():
        t = time.perf_counter()
        fn()
        out.append((name, time.perf_counter() - t))
    return out
