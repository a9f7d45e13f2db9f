"""Functional API for 0-dimensional persistent homology (H0) of point clouds.

For points P with a metric, the Vietoris–Rips H0 diagram has every birth at 0 and the deaths
equal to the edge weights of a minimum spanning tree, plus one essential bar ``(0, inf)``.
Diagrams are ``(n, 2)`` float64 arrays with the infinite row last, as returned by ripser.

Metrics: ``"euclidean"``; ``"cosine"`` (``1 - cos``, computed as ``|u - v|^2 / 2`` on unit
vectors, which is exact where ``1 - u.v`` cancels); ``"precomputed"`` (a symmetric, finite,
non-negative (n, n) matrix).

Kernels (chosen by n and d, see :func:`_choose_path`): a sort for d = 1; Prim with distances
computed on the fly (small and medium inputs; a clean float64 array goes through one numba call
from input check to sorted deaths); Prim screened by a float32 BLAS Gram matrix for large n d
(:mod:`._kernels.gram`); Prim on the matrix for ``"precomputed"``. Every path keys Prim on
direct float64 distances from coordinate differences, so all return the same deaths, within a
few ulps of a direct float64 evaluation, ties included.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from .._kernels.gram import gram_bound_constants, gram_prepare, prim_gram_sq
from .._kernels.mst import h0_diagram_points, h0_total_points, mst_1d, prim_dense, prim_points_sq
from .._kernels.unionfind import single_linkage_from_sorted
from .._validation import as_float_matrix, check_choice, describe
from ..errors import InputError
from .blas import gram_matrix

__all__ = [
    "METRICS",
    "MergeEdges",
    "betti0_at",
    "h0_diagram",
    "h0_total",
    "h1_diagram",
    "linkage",
    "merge_order",
    "mst_edges",
    "mst_unsorted",
    "persistence_entropy",
    "pow2_scale",
    "prepare_points",
]

METRICS = ("euclidean", "cosine", "precomputed")


class MergeEdges(NamedTuple):
    """MST edges in merge (Kruskal) order: ``i[k]`` and ``j[k]`` merge at ``death[k]``."""

    i: np.ndarray
    j: np.ndarray
    death: np.ndarray


def pow2_scale(X: np.ndarray) -> float:
    """A power of two near max |X|: dividing by it is exact and keeps squares in range."""
    m = float(np.max(np.abs(X))) if X.size else 0.0
    if m == 0.0 or not math.isfinite(m):
        return 1.0
    # 2**1024 is not a float: for max |X| >= 2**1023 divide by 2**1023 (quotients stay < 2)
    return math.ldexp(1.0, min(math.frexp(m)[1], 1023))


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
                f"got {name}[{i},{j}]={float(arr[i, j])!r} != {name}[{j},{i}]={float(arr[j, i])!r}"
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


# Path choice. The Gram path costs a float32 BLAS product (n^2 d / 2 multiply-adds, one
# single-threaded BLAS per core) plus an O(n^2) screening pass at ~1.2 ns per pair; the direct
# path costs ~0.2 ns per multiply-add (n^2 d / 2 of them) while its n d coordinates fit in the
# 2 MB L2 cache, ~0.4 ns beyond. Measured on the shared 2-core machine (CPU ms, direct vs
# Gram): 32x4096 1.16 vs 1.04, 256x256 1.9 vs 1.8, 2000x32 13.8 vs 11.1, 1000x64 6.9 vs 3.3,
# 500x128 4.5 vs 1.4, 1000x512 75 vs 22, 5000x256 1270 vs 150. Hence the Gram path from
# n^2 d >= 1.6e7 with n, d >= 32.
# At d = 32 the direct path still won at n = 5000 (its data fit in L2), hence GRAM_MIN_D = 64.
GRAM_MIN_N = 32
GRAM_MIN_D = 64
GRAM_MIN_WORK = 16_000_000
# From this width the Gram matrix is computed in float64: float32's certified error grows as
# d u (u = 2^-24), and on concentrated wide data (class centroids, 1000 x 4096) its near-tie
# band sent a large share of all pairs to direct evaluation; float64 GEMM costs 2x per flop.
GRAM_F64_MIN_D = 2048
# The Gram path holds the (n, n) float32 Gram matrix: 1.6 GB at n = 20000. Above this budget the
# O(n d)-memory direct path runs instead (slower, equally exact).
GRAM_MAX_BYTES = 2 * 1024**3
PATHS = ("auto", "direct", "gram", "sort", "dense")


def _choose_path(n: int, d: int, metric: str) -> str:
    if metric == "precomputed":
        return "dense"
    if metric == "euclidean" and d == 1:
        return "sort"
    if 4 * n * n > GRAM_MAX_BYTES or n < GRAM_MIN_N or d < GRAM_MIN_D:
        return "direct"
    if n * n * d >= GRAM_MIN_WORK:
        return "gram"
    return "direct"


def mst_unsorted(
    P: np.ndarray, metric: str, *, path: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unsorted MST edges ``(src, dst, weight)`` of prepared points (see :func:`prepare_points`).

    ``path`` forces a kernel ("direct", "gram", "sort", "dense"; tests use it); "auto" picks one
    by n and d. Every path returns weights within a few ulps of a direct float64 evaluation.
    """
    n, d = P.shape
    src = np.empty(max(n - 1, 0), dtype=np.int64)
    dst = np.empty_like(src)
    w = np.empty(max(n - 1, 0), dtype=np.float64)
    if n < 2:
        return src, dst, w
    if path == "auto":
        path = _choose_path(n, d, metric)
    if path == "dense":
        prim_dense(P, src, dst, w)
        return src, dst, w
    if path == "sort":
        mst_1d(np.ascontiguousarray(P[:, 0]), src, dst, w)
        if metric == "cosine":  # gaps of 1-D unit vectors are 0 or 2; report 1 - cos
            w *= w
            w *= 0.5
        return src, dst, w
    if path == "gram":
        dtype = np.float64 if d >= GRAM_F64_MIN_D else np.float32
        f, scale, Y, nrm = gram_prepare(P, dtype)
        G = gram_matrix(Y)
        del Y
        prim_gram_sq(P, f, G, nrm, *gram_bound_constants(d, dtype), src, dst, w)
    else:
        scale = pow2_scale(P) if metric == "euclidean" else 1.0
        prim_points_sq(P / scale if scale != 1.0 else P, src, dst, w)
    if metric == "euclidean":
        np.sqrt(w, out=w)
        w *= scale
    else:
        w *= 0.5 * scale * scale
    return src, dst, w


def _fast_ok(X: Any, metric: str) -> bool:
    """True when X is a clean float64 array the one-call kernels take (direct or sort path)."""
    if type(X) is not np.ndarray or X.dtype != _F64 or X.ndim != 2:
        return False
    if metric != "euclidean" and metric != "cosine":
        return False
    n, d = X.shape
    if n == 0 or d == 0 or not X.flags.c_contiguous:
        return False
    return n < GRAM_MIN_N or d < GRAM_MIN_D or _choose_path(n, d, metric) != "gram"


_F64 = np.dtype(np.float64)


def mst_edges(X: Any, metric: str = "euclidean") -> MergeEdges:
    """Validated MST of ``X`` in merge order (shared by :func:`merge_order` and the monitors)."""
    P = prepare_points(X, metric)
    src, dst, w = mst_unsorted(P, metric)
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
    if _fast_ok(X, metric):
        dgm = h0_diagram_points(X, metric == "cosine")
        if dgm.shape[0]:
            return dgm
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
    if _fast_ok(X, metric):
        total = h0_total_points(X, metric == "cosine")
        if total >= 0.0:
            return total
    P = prepare_points(X, metric)
    return float(np.sum(mst_unsorted(P, metric)[2]))


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
    e = mst_edges(X, metric)
    return single_linkage_from_sorted(e.death.shape[0] + 1, e.i, e.j, e.death)


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
    w = mst_unsorted(P, metric)[2]
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

    At most ``max_points`` rows are used, drawn without replacement with ``seed``. Distances are
    computed here by direct differences (scipy ``pdist``) and handed to ripser as a distance
    matrix: ripser's own point path uses the ``|x|² + |y|² − 2x·y`` shortcut, which gives
    duplicate points distances of ~1e-7 and with them spurious, row-order-dependent H1 bars.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    >>> h1_diagram(np.c_[np.cos(t), np.sin(t)]).round(3)
    array([[0.518, 1.732]])
    """
    P = as_float_matrix(X, "X")
    if max_points is not None and P.shape[0] > max_points:
        idx = np.random.default_rng(seed).choice(P.shape[0], size=max_points, replace=False)
        P = P[np.sort(idx)]
    from ripser import ripser
    from scipy.spatial.distance import pdist, squareform

    D = squareform(pdist(P)) if P.shape[0] > 1 else np.zeros((P.shape[0], P.shape[0]))
    dgm = ripser(D, maxdim=1, distance_matrix=True)["dgms"][1]
    return np.asarray(dgm, dtype=np.float64).reshape(-1, 2)
