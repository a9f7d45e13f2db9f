"""Centroid statistics: the pure functions behind
:class:`~streamtopo.monitors.centroid.CentroidMonitor`.

Notation: K classes, d feature dimensions, R random groups of rows, s in {0: train, 1: test}.

Accumulators (one set per split) are per-class, per-group sums of L2-normalised rows:
``sums[g, c]`` (R, K, d) float64, the summed row weights ``wsum[g, c]`` and summed squared row
weights ``w2sum[g, c]`` (R, K). Every row goes to one group drawn at random, group g with
probability ``2**g / (2**R - 1)``, so each group is a random sub-sample and prefixes of the
groups (smallest first) reach any fraction of the rows down to ``1 / (2**R - 1)``. In epoch
mode every weight is 1 (``wsum = w2sum =`` counts); in EMA mode older rows carry geometrically
smaller weights. The effective sample size
of a weighted mean is ``n_eff = wsum**2 / w2sum`` and its sampling variance is
``sigma**2 / n_eff``, which is what size matching equalises.

Everything H0 goes through :mod:`streamtopo.topology.h0`: centroid cosine distances come from one
BLAS Gram product, the tree from ``h0.mst_edges(D, "precomputed")``, and every chosen
edge is re-evaluated in float64 as ``|u - v|**2 / 2`` on unit centroids (DESIGN.md §2,
precision), so a death is within ~1e-15 absolute of a direct float64 evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._kernels.centroid import (
    combine_groups,
    edge_half_sq_dists,
    tree_gradient,
    unit_rows_into,
)
from .h0 import MergeEdges, mst_edges

__all__ = [
    "CentroidTree",
    "GapEstimate",
    "centroid_tree",
    "class_dispersion",
    "effective_size",
    "gap_estimate",
    "h0_gradient",
    "match_coefficients",
    "unit_rows",
]


class CentroidTree(NamedTuple):
    """H0 of one set of unit centroids: MST edges in merge order and the distance matrix."""

    edges: MergeEdges
    h0: float
    unit: np.ndarray  # (K, d) unit centroids the tree was built on


def unit_rows(C: np.ndarray) -> np.ndarray:
    """Centroid sums -> unit centroids (rows must be non-zero)."""
    C = np.ascontiguousarray(C, dtype=np.float64)
    out = np.empty_like(C)
    unit_rows_into(C, out)
    return out


def _cosine_distances(U: np.ndarray, precision: str) -> np.ndarray:
    """``1 - u.v`` for all pairs from one Gram product, exactly symmetric, diagonal 0, >= 0."""
    A = U.astype(np.float32) if precision == "float32" else U
    G = (A @ A.T).astype(np.float64, copy=False)
    D = 1.0 - G
    D += D.T  # fl(a + b) is commutative, so D is exactly symmetric
    D *= 0.5
    np.maximum(D, 0.0, out=D)
    np.fill_diagonal(D, 0.0)
    return D


def _exact_weights(U: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """``|u_i - u_j|**2 / 2`` per edge, directly in float64."""
    w = np.empty(i.shape[0])
    edge_half_sq_dists(U, i, j, w)
    return w


def _metric_weights(w: np.ndarray, metric: str) -> np.ndarray:
    """Cosine weights ``1 - cos`` -> the reported metric (euclidean on unit centroids)."""
    return np.sqrt(2.0 * w) if metric == "euclidean" else w


def centroid_tree(
    C: np.ndarray, *, metric: str = "cosine", precision: str = "float64"
) -> CentroidTree:
    """H0 of the centroid directions ``C`` (K, d): MST in merge order, total, distances.

    Examples
    --------
    >>> t = centroid_tree(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]]))
    >>> t.edges.i.tolist(), t.edges.j.tolist(), round(t.h0, 6)
    ([0, 2], [2, 1], 0.905459)
    """
    U = unit_rows(C)
    D = _cosine_distances(U, precision)
    e = mst_edges(D, "precomputed")
    w = _exact_weights(U, e.i, e.j)
    order = np.argsort(w, kind="stable")
    w = _metric_weights(w[order], metric)
    edges = MergeEdges(e.i[order], e.j[order], w)
    return CentroidTree(edges, float(np.sum(w)), U)


def effective_size(wsum: np.ndarray, w2sum: np.ndarray) -> np.ndarray:
    """``wsum**2 / w2sum`` with 0 where there is no weight."""
    out = np.zeros(np.broadcast(wsum, w2sum).shape)
    ok = w2sum > 0
    out[ok] = wsum[ok] ** 2 / w2sum[ok]
    return out


def match_coefficients(wsum: np.ndarray, w2sum: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-group coefficients ``phi`` (R, K) in [0, 1] whose weighted sum of group means has
    effective size ``target`` per class (or as close as the groups allow).

    Per class, groups are taken whole from the smallest (by summed weight; ties by index) and
    one group is taken with a fractional coefficient, the root of
    ``n_eff(phi) = (A + phi B)^2 / (Q + phi^2 Q_B) = target`` (a quadratic in phi). A class
    whose target is at least its total size keeps every group (coefficients 1); a target below
    the size of its smallest non-empty group cannot be reached (that group is kept whole; the
    caller reports the class as not matched).

    Examples
    --------
    >>> w = np.array([[4.0], [4.0], [4.0]])  # 3 groups of 4 rows, one class
    >>> phi = match_coefficients(w, w, np.array([6.0]))
    >>> phi.ravel().round(6).tolist()
    [1.0, 0.267949, 0.0]
    >>> round(float(effective_size((phi * w).sum(0), (phi**2 * w).sum(0))[0]), 9)
    6.0
    """
    order = np.argsort(wsum, axis=0, kind="stable")
    phi_sorted = _match_in_order(
        np.take_along_axis(wsum, order, 0), np.take_along_axis(w2sum, order, 0), target
    )
    phi = np.empty_like(phi_sorted)
    np.put_along_axis(phi, order, phi_sorted, 0)
    return phi


def _match_in_order(wsum: np.ndarray, w2sum: np.ndarray, target: np.ndarray) -> np.ndarray:
    """:func:`match_coefficients` for groups already in the order they are taken."""
    R, K = wsum.shape
    cumA = np.cumsum(wsum, axis=0)
    cumQ = np.cumsum(w2sum, axis=0)
    neff = effective_size(cumA, cumQ)  # n_eff of groups 0..g taken whole
    t = np.asarray(target, dtype=np.float64)
    keep_all = t >= neff[-1] * (1 - 1e-12)  # the target is at least the total
    # g = first group whose whole prefix reaches the target; groups before it are kept whole
    g = np.argmax(neff >= t * (1 - 1e-12), axis=0)
    g[keep_all] = R - 1
    cols = np.arange(K)
    A0 = np.where(g > 0, cumA[g - 1, cols], 0.0)
    Q0 = np.where(g > 0, cumQ[g - 1, cols], 0.0)
    B, QB = wsum[g, cols], w2sum[g, cols]
    # n_eff(phi) = t  <=>  a phi^2 + b phi + c = 0 with c = A0^2 - t Q0 < 0 (the prefix before g
    # is below the target); the first crossing from phi = 0 is the smallest positive root,
    # 2c / (-b - sqrt(b^2 - 4ac)) in the cancellation-free form, whatever the sign of a
    a = B * B - t * QB
    b = 2.0 * A0 * B
    c = A0 * A0 - t * Q0
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = 2.0 * c / (-b - np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0)))
    frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
    # nothing before group g: scaling one group does not change n_eff, so keep it whole
    frac[(A0 == 0.0) | keep_all] = 1.0
    phi = (np.arange(R)[:, None] < g[None, :]).astype(np.float64)
    phi[g, cols] = frac
    phi[:, keep_all] = 1.0
    return phi


def h0_gradient(tree: CentroidTree, mean_norms: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Gradient (K, d) of H0 with respect to each class's mean feature row (not normalised).

    For a tree edge (i, j) of cosine weight ``1 - u_i.u_j`` with ``u = m / |m|``:
    ``d/dm_i = -(u_j - (u_i.u_j) u_i) / |m_i|``; a euclidean weight ``sqrt(2 (1 - u.v))``
    multiplies that by ``1 / weight``. The tree is held fixed (H0 is piecewise smooth: the
    gradient is exact wherever the minimum spanning tree is unique).
    """
    U = tree.unit
    i, j, w = tree.edges
    f = np.ones(i.shape[0])
    if metric == "euclidean":
        pos = w > 0
        f = np.zeros(i.shape[0])
        f[pos] = 1.0 / w[pos]
    G = np.empty_like(U)
    tree_gradient(U, i, j, f, 1.0 / mean_norms, G)
    return G


def class_dispersion(G: np.ndarray, S: np.ndarray, A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """Per-class variance of a single row along its H0 gradient, ``var_c(G_c . x)``.

    Estimated from the R group means ``t_g = G_c . S_gc / A_gc`` by the one-way-ANOVA
    between-group estimator ``sum_g n_g (t_g - t_bar)^2 / (R_c - 1)`` over the R_c non-empty
    groups (``n_g = A_g^2 / Q_g``); for normal group means it is ``sigma^2 chi2(R_c - 1) /
    (R_c - 1)`` whatever the group sizes. NaN for a class with fewer than two non-empty groups.
    """
    ok = A > 0
    n_ok = ok.sum(axis=0)
    t = np.einsum("gkd,kd->gk", S, G)
    t = np.divide(t, A, out=np.zeros_like(t), where=ok)
    ng = effective_size(A, Q)
    with np.errstate(invalid="ignore", divide="ignore"):
        tbar = (ng * t).sum(axis=0) / ng.sum(axis=0)
        disp = (ng * np.where(ok, t - tbar, 0.0) ** 2).sum(axis=0) / (n_ok - 1)
    disp[n_ok < 2] = np.nan
    return disp


class GapEstimate(NamedTuple):
    """Result of :func:`gap_estimate` (trees index the classes given)."""

    h0_train: float
    h0_test: float
    gap: float
    noise: float  # sqrt(var_train + var_test)
    var_train: float
    var_test: float
    train_tree: CentroidTree  # size-matched train centroids
    test_tree: CentroidTree
    n_train: np.ndarray  # per-class effective sizes of the matched sides
    n_test: np.ndarray
    unmatched: np.ndarray  # bool (K,): sizes could not be equalised for this class
    train_is_full: bool  # the matched train side kept every train row (no down-weighting)
    train_sums: np.ndarray  # (K, d) matched train centroid sums the train tree was built on
    train_all_sums: np.ndarray  # (K, d) sums of all train rows
    test_sums: np.ndarray  # (K, d) matched test centroid sums


def _matched(S, A, Q, target):
    """Matched sums, all-row sums, effective sizes, 'target not reached' flags, 'all kept'."""
    phi = match_coefficients(A, Q, target)
    full = bool((phi == 1.0).all())
    matched = np.empty(S.shape[1:])
    every = np.empty(S.shape[1:])
    combine_groups(S, phi, matched, every)
    wsum = (phi * A).sum(0)
    neff = effective_size(wsum, (phi * phi * Q).sum(0))
    return matched, every, wsum, neff, neff > target * (1 + 1e-9) + 1e-9, full


def gap_estimate(
    train: tuple[np.ndarray, np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    matched_size: int | str | None = "min",
    metric: str = "cosine",
    precision: str = "float64",
) -> GapEstimate:
    """Size-matched H0 gap ``h0_train - h0_test`` and its delta-method standard error.

    ``train`` and ``test`` are ``(sums (R, K, d), wsum (R, K), w2sum (R, K))`` restricted to
    classes present on both sides. With ``matched_size="min"`` each class's centroid on both
    sides is a weighted mean of the same effective size (the smaller side's); with an int ``m``
    at most ``m``; with ``None`` every row counts (the seed's form). The noise treats the two
    sides as independent: ``noise = sqrt(var(h0_train) + var(h0_test))``, each
    ``sum_c class_dispersion_c / n_eff_c`` (see :func:`class_dispersion`).
    """
    (S_tr, A_tr, Q_tr), (S_te, A_te, Q_te) = train, test
    n_tr = effective_size(A_tr.sum(0), Q_tr.sum(0))
    n_te = effective_size(A_te.sum(0), Q_te.sum(0))
    if matched_size is None:
        t_tr, t_te = n_tr, n_te
    else:
        t_tr = t_te = np.minimum(n_tr, n_te)
        if matched_size != "min":
            t_tr = t_te = np.minimum(t_tr, float(matched_size))
    C_tr, all_tr, w_tr, m_tr, u_tr, full = _matched(S_tr, A_tr, Q_tr, t_tr)
    C_te, _, w_te, m_te, u_te, _ = _matched(S_te, A_te, Q_te, t_te)
    tree_tr = centroid_tree(C_tr, metric=metric, precision=precision)
    tree_te = centroid_tree(C_te, metric=metric, precision=precision)
    norms_tr = np.linalg.norm(C_tr, axis=1) / w_tr
    norms_te = np.linalg.norm(C_te, axis=1) / w_te
    # var(H0) = sum_c var_c(G_c . x) / n_eff_c: classes are independent (delta method)
    d_tr = class_dispersion(h0_gradient(tree_tr, norms_tr, metric), S_tr, A_tr, Q_tr)
    d_te = class_dispersion(h0_gradient(tree_te, norms_te, metric), S_te, A_te, Q_te)
    # a class whose rows all fell in one group on one side borrows the other side's dispersion
    # (same class, same features; NaN only if both sides are degenerate)
    d_tr_f = np.where(np.isnan(d_tr), d_te, d_tr)
    d_te_f = np.where(np.isnan(d_te), d_tr, d_te)
    v_tr = float(np.sum(d_tr_f / m_tr))
    v_te = float(np.sum(d_te_f / m_te))
    return GapEstimate(
        h0_train=tree_tr.h0,
        h0_test=tree_te.h0,
        gap=tree_tr.h0 - tree_te.h0,
        noise=float(np.sqrt(v_tr + v_te)),
        var_train=v_tr,
        var_test=v_te,
        train_tree=tree_tr,
        test_tree=tree_te,
        n_train=m_tr,
        n_test=m_te,
        unmatched=u_tr | u_te,
        train_is_full=full,
        train_sums=C_tr,
        train_all_sums=all_tr,
        test_sums=C_te,
    )
