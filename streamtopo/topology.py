"""Functional API for 0-dimensional persistent homology (H0) of point clouds.

For points P with a metric, the Vietoris–Rips H0 diagram has every birth at 0 and the deaths
equal to the edge weights of a minimum spanning tree, plus one essential bar ``(0, inf)``.
Diagrams are ``(n, 2)`` float64 arrays with the infinite row last, as returned by ripser.

Metrics: ``"euclidean"``; ``"cosine"`` (``1 - cos``, computed as ``|u - v|^2 / 2`` on unit
vectors, which is exact where ``1 - u.v`` cancels); ``"precomputed"`` (a symmetric, finite,
non-negative (n, n) matrix).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ._kernels.mst import mst_1d, prim_dense, prim_points_sq
from ._kernels.unionfind import single_linkage_from_sorted
from ._validation import as_float_matrix, check_choice, describe
from .errors import InputError

__all__ = [
    "METRICS",
    "MergeEdges",
    "betti0_at",
    "h0_diagram",
    "h0_total",
    "h1_diagram",
    "linkage",
    "merge_order",
    "persistence_entropy",
]

METRICS = ("euclidean", "cosine", "precomputed")


class MergeEdges(NamedTuple):
    """MST edges in merge (Kruskal) order: ``i[k]`` and ``j[k]`` merge at ``death[k]``."""

    i: np.ndarray
    j: np.ndarray
    death: np.ndarray


def _pow2_scale(X: np.ndarray) -> float:
    """A power of two near max |X|: dividing by it is exact and keeps squares in range."""
    m = float(np.max(np.abs(X))) if X.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return 1.0
    return math.ldexp(1.0, math.frexp(m)[1])


def prepare_points(X: Any, metric: str = "euclidean", *, name: str = "X") -> np.ndarray:
    """Validate ``X`` for ``metric`` and return the float64 array the kernels expect.

    Euclidean points are divided by a power of two (exact) so squared distances of values near
    1e±150 neither overflow nor underflow; cosine rows are normalised to unit length.
    """
    check_choice(metric, "metric", METRICS)
    arr = as_float_matrix(X, name)
    if metric == "precomputed":
        n, m = arr.shape
        if n != m:
            raise InputError(
                f"{name} must be a square distance matrix for metric='precomputed', "
                f"got {describe(arr)}"
            )
        if (arr < 0).any():
            raise InputError(f"{name} must be non-negative for metric='precomputed'")
        asym = np.abs(arr - arr.T)
        tol = 1e-12 * max(float(np.max(np.abs(arr))), 1e-300)
        if (asym > tol).any():
            i, j = np.unravel_index(int(np.argmax(asym)), asym.shape)
            raise InputError(
                f"{name} must be symmetric for metric='precomputed', "
                f"got {name}[{i},{j}]={arr[i, j]!r} != {name}[{j},{i}]={arr[j, i]!r}"
            )
        return arr
    if metric == "cosine":
        norms = np.sqrt(np.einsum("ij,ij->i", arr, arr))
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise InputError(
                f"{name} has all-zero row(s) {zero[:5].tolist()}; metric='cosine' needs "
                "non-zero vectors"
            )
        return arr / norms[:, None]
    return arr


def _mst_unsorted(P: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = P.shape[0]
    src = np.empty(max(n - 1, 0), dtype=np.int64)
    dst = np.empty_like(src)
    w = np.empty(max(n - 1, 0), dtype=np.float64)
    if n < 2:
        return src, dst, w
    if metric == "precomputed":
        prim_dense(P, src, dst, w)
    elif metric == "euclidean" and P.shape[1] == 1:
        mst_1d(np.ascontiguousarray(P[:, 0]), src, dst, w)
    else:
        scale = _pow2_scale(P) if metric == "euclidean" else 1.0
        prim_points_sq(P / scale if scale != 1.0 else P, src, dst, w)
        if metric == "euclidean":
            np.sqrt(w, out=w)
            w *= scale
        else:
            w *= 0.5
    return src, dst, w


def mst_edges(X: Any, metric: str = "euclidean") -> MergeEdges:
    """Validated MST of ``X`` in merge order (shared by :func:`merge_order` and the monitors)."""
    P = prepare_points(X, metric)
    src, dst, w = _mst_unsorted(P, metric)
    order = np.argsort(w, kind="stable")
    return MergeEdges(src[order], dst[order], w[order])


def h0_diagram(X: Any, metric: str = "euclidean") -> np.ndarray:
    """H0 persistence diagram of a point cloud.

    Parameters
    ----------
    X : array_like, shape (n, d) or (n, n)
        Points, or a distance matrix when ``metric="precomputed"``.
    metric : {"euclidean", "cosine", "precomputed"}

    Returns
    -------
    numpy.ndarray, shape (n, 2)
        Births (all 0) and deaths sorted ascending; the last row is ``(0, inf)``.

    Examples
    --------
    >>> import numpy as np
    >>> h0_diagram(np.array([[0.0], [1.0], [3.0]]))
    array([[ 0.,  1.],
           [ 0.,  2.],
           [ 0., inf]])
    """
    deaths = mst_edges(X, metric).death
    out = np.zeros((deaths.shape[0] + 1, 2), dtype=np.float64)
    out[:-1, 1] = deaths
    out[-1, 1] = np.inf
    return out


def h0_total(X: Any, metric: str = "euclidean") -> float:
    """Total persistence of the finite H0 bars (sum of MST edge weights).

    Examples
    --------
    >>> h0_total([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
    6.0
    """
    P = prepare_points(X, metric)
    return float(np.sum(_mst_unsorted(P, metric)[2]))


def merge_order(X: Any, metric: str = "euclidean") -> MergeEdges:
    """MST edges ``(i, j, death)`` in the order single linkage merges them.

    Examples
    --------
    >>> e = merge_order([[0.0], [10.0], [1.0]])
    >>> e.i.tolist(), e.j.tolist(), e.death.tolist()
    ([0, 2], [2, 1], [1.0, 9.0])
    """
    return mst_edges(X, metric)


def linkage(X: Any, metric: str = "euclidean") -> np.ndarray:
    """Single-linkage matrix ``Z`` in scipy's format (``scipy.cluster.hierarchy.dendrogram``
    accepts it); heights are the H0 deaths.

    Examples
    --------
    >>> linkage([[0.0], [10.0], [1.0]])
    array([[0., 2., 1., 2.],
           [1., 3., 9., 3.]])
    """
    P = prepare_points(X, metric)
    n = P.shape[0]
    e = mst_edges(P, "precomputed") if metric == "precomputed" else None
    if e is None:
        src, dst, w = _mst_unsorted(P, metric)
        order = np.argsort(w, kind="stable")
        e = MergeEdges(src[order], dst[order], w[order])
    return single_linkage_from_sorted(n, e.i, e.j, e.death)


def betti0_at(X: Any, scale: float, metric: str = "euclidean") -> int:
    """Number of connected components of the Rips complex at ``scale`` (edges with
    distance <= scale).

    Examples
    --------
    >>> betti0_at([[0.0], [1.0], [3.0]], 1.5)
    2
    """
    try:
        s = float(scale)
    except (TypeError, ValueError):
        raise InputError(f"scale must be a non-negative number, got {describe(scale)}") from None
    if not (s >= 0.0):
        raise InputError(f"scale must be a non-negative number, got {scale!r}")
    P = prepare_points(X, metric)
    w = _mst_unsorted(P, metric)[2]
    return int(P.shape[0] - np.count_nonzero(w <= s))


def persistence_entropy(diagram: Any, *, normalize: bool = False) -> float:
    """Shannon entropy (natural log) of the finite bars' lifetimes ``l / sum(l)``.

    Infinite and zero-length bars are ignored; a diagram with no positive finite bar has
    entropy 0. With ``normalize=True`` the entropy is divided by ``log(#bars)`` (in [0, 1]).

    Examples
    --------
    >>> round(persistence_entropy([[0.0, 1.0], [0.0, 1.0], [0.0, float("inf")]]), 6)
    0.693147
    """
    dgm = np.asarray(diagram, dtype=np.float64)
    if dgm.ndim != 2 or dgm.shape[1] != 2:
        raise InputError(f"diagram must have shape (n, 2), got {describe(dgm)}")
    if np.isnan(dgm).any():
        raise InputError("diagram must not contain NaN")
    life = dgm[:, 1] - dgm[:, 0]
    life = life[np.isfinite(life) & (life > 0)]
    if life.size == 0:
        return 0.0
    p = life / life.sum()
    h = float(-np.sum(p * np.log(p)))
    if normalize:
        return h / math.log(life.size) if life.size > 1 else 0.0
    return h


def h1_diagram(X: Any, *, max_points: int | None = 500, seed: int = 0) -> np.ndarray:
    """H1 diagram of the Rips filtration by ripser (imported here, never at module import).

    At most ``max_points`` rows are used, drawn without replacement with ``seed``.
    """
    P = as_float_matrix(X, "X")
    if max_points is not None and P.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(P.shape[0], size=max_points, replace=False)
        P = P[np.sort(idx)]
    import warnings

    from ripser import ripser

    with warnings.catch_warnings():
        # n points in n dims (batch 64, width 64) is a point cloud, not a distance matrix
        warnings.filterwarnings("ignore", message="The input matrix is square")
        return np.asarray(ripser(P, maxdim=1)["dgms"][1], dtype=np.float64)
