"""Compile (first run) or load from the numba cache (later runs) every kernel ahead of time,
so a training loop never waits on a compile mid-run.

``WARMERS`` maps each kernel module of :mod:`streamtopo._kernels` (mst, gram, unionfind,
incremental, cubical, centroid, layer, changepoint, replay) to a function that drives its
public kernels once, on tiny inputs, through the library's own code paths: the kernels are
compiled for exactly the argument types (float64 points, float32 and float64 Gram matrices,
int64 indices, ...) the library passes at run time. A new kernel module adds a warmer here (a
test checks that every kernel module has one and that every public kernel has a compiled
signature afterwards). ``streamtopo warmup`` runs them all and prints the time each took;
``streamtopo demo`` runs the ones its monitors need.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["WARMERS", "warm", "warm_all"]


def _points(n: int = 6, d: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d))


def warm_mst() -> None:
    """Prim on points (one-call and validating paths), on a matrix, and the 1-D sort."""
    from ..topology import h0

    X = _points()
    for metric in ("euclidean", "cosine"):
        h0.h0_diagram(X, metric)  # one-call kernels
        h0.h0_total(X, metric)
        h0.linkage(X.tolist(), metric)  # validating path, Prim, linkage
        h0.betti0_at(X, 1.0, metric)
    h0.h0_diagram(X[:, :1])  # 1-D sort, one-call
    h0.merge_order(X[:, :1].tolist())  # 1-D sort, validating path
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    h0.h0_diagram(D, "precomputed")


def warm_gram() -> None:
    """Prim screened by a float32 Gram matrix, and by a float64 one for very wide data."""
    from ..topology import h0

    X = _points()
    for metric in ("euclidean", "cosine"):
        h0.mst_unsorted(h0.prepare_points(X, metric), metric, path="gram")
        wide = _points(4, h0.GRAM_F64_MIN_D)
        h0.mst_unsorted(h0.prepare_points(wide, metric), metric, path="gram")


def warm_unionfind() -> None:
    """Kruskal on an edge list and single linkage from sorted edges."""
    from .._kernels.unionfind import kruskal, single_linkage_from_sorted, uf_init
    from ..topology import h0

    X = _points()
    src, dst, w = h0.mst_unsorted(X, "euclidean")
    out = (np.empty(5, np.int64), np.empty(5, np.int64), np.empty(5))
    kruskal(6, src, dst, w, np.argsort(w), *out)
    order = np.argsort(w, kind="stable")
    single_linkage_from_sorted(6, src[order], dst[order], w[order])
    uf_init(6)


def warm_incremental() -> None:
    """MorseMonitor: build, a local repair, the pairing, a rebuild, both metrics."""
    from ..monitors.morse import MorseMonitor

    for metric in ("euclidean", "cosine"):
        X = _points(12, 3)
        mon = MorseMonitor(scale=1.0, metric=metric, rebuild_fraction=0.9).initialize(X)
        X[0] += 0.5  # one moved point: the local repair
        mon.update(X)
        _ = mon.pairs_, mon.critical_edges_
        mon.add_points(_points(2, 3, seed=2))
        mon.remove_points([0])
        mon.update(_points(13, 3, seed=1))  # everything moved: the rebuild path


def warm_cubical() -> None:
    """Cubical diagrams and Betti curves of 2-D maps and 3-D volumes, both constructions."""
    from ..topology.cubical import betti_curves, cubical_diagram, cubical_diagrams

    rng = np.random.default_rng(0)
    maps = rng.random((2, 5, 5))
    vols = rng.random((2, 3, 4, 4))
    t = np.linspace(0.0, 1.0, 4)
    for conn2, conn3 in ((4, 6), (8, 26)):
        cubical_diagram(maps[0], conn2, dim=0)
        cubical_diagram(maps[0], conn2, dim=1)
        cubical_diagrams(maps, conn2)
        cubical_diagrams(vols, conn3, grid_ndim=3)
        betti_curves(maps, t, conn2)
        betti_curves(vols, t, conn3, grid_ndim=3)


def warm_centroid() -> None:
    """CentroidMonitor: accumulate both splits, check (gap estimate, tree, gradient)."""
    from ..monitors.centroid import CentroidMonitor

    rng = np.random.default_rng(0)
    mon = CentroidMonitor(3, warmup=0, baseline_checks=1)
    for _ in range(2):
        for split in ("train", "test"):
            y = np.tile(np.arange(3), 4)
            mon.update(rng.normal(size=(12, 4)).astype(np.float32), y, split)
        mon.check()
    mon.confusion_pairs()
    mon.linkage()


def warm_layer() -> None:
    """LayerMonitor: the default log/window path and ph-training's compatibility mode."""
    from ..monitors.layer import LayerMonitor

    rng = np.random.default_rng(0)
    for kwargs in (
        {"window": 4, "baseline": 8},
        {"transform": "none", "window": 1, "rule": "peak"},
    ):
        mon = LayerMonitor(n_layers=4, signals=("a", "b"), **kwargs)
        for _ in range(12):
            mon.check({"a": rng.random(4) + 0.1, "b": rng.random(4) + 0.1})
        mon.state_dict()  # flushes the pending baseline push (its own kernel)


def warm_changepoint() -> None:
    """The change detector: LayerMonitor(rule="cusum") (a jump, an alarm, the absorption
    buffer) and a plain ChangeDetector with a non-finite value."""
    from ..alarms import ChangeDetector
    from ..monitors.layer import LayerMonitor

    rng = np.random.default_rng(0)
    mon = LayerMonitor(n_layers=4, signals=("a",), window=2, rule="cusum")
    for t in range(40):
        mon.check(rng.random(4) + 0.1 + 1000.0 * (t >= 30) * np.eye(4)[0])
    det = ChangeDetector(2, absorb_after=4)
    for x in ([0.0, 1.0], [0.0, 50.0], [np.nan, 0.0]):
        det.update(x)


def warm_replay() -> None:
    """LayerMonitor.run's fused loop: the z-score rules (with a check_every skip) and cusum."""
    from ..monitors.layer import LayerMonitor

    x = np.exp(np.random.default_rng(0).normal(size=(12, 2, 4)))
    for kwargs in ({"window": 4, "baseline": 4, "check_every": 2}, {"rule": "cusum"}):
        LayerMonitor(n_layers=4, signals=("a", "b"), **kwargs).run(x)


WARMERS: dict[str, Callable[[], None]] = {
    "mst": warm_mst,
    "gram": warm_gram,
    "unionfind": warm_unionfind,
    "incremental": warm_incremental,
    "cubical": warm_cubical,
    "centroid": warm_centroid,
    "layer": warm_layer,
    "changepoint": warm_changepoint,
    "replay": warm_replay,
}


def warm(names: Iterable[str]) -> list[tuple[str, float]]:
    """Run the warmers ``names`` (keys of :data:`WARMERS`); return ``(name, seconds)`` pairs."""
    out = []
    for name in names:
        fn = WARMERS[name]
        t = time.perf_counter()
        fn()
        out.append((name, time.perf_counter() - t))
    return out


def warm_all() -> list[tuple[str, float]]:
    """Run every warmer; return ``(name, seconds)`` pairs."""
    return warm(WARMERS)
