"""Pure functions behind :class:`~streamtopo.monitors.centroid.CentroidMonitor`.

Notation: K classes, d feature dimensions, R random groups of rows, s in {0: train, 1: test}.

Accumulators (one set per split) are per-class, per-group sums of L2-normalised rows:
``sums[g, c]`` (R, K, d) float64, the summed row weights ``wsum[g, c]`` and summed squared row
weights ``w2sum[g, c]`` (R, K). Every row goes to one group drawn uniformly at random, so the R
groups are exchangeable random sub-samples. In epoch mode every weight is 1 (``wsum = w2sum =``
counts); in EMA mode older rows carry geometrically smaller weights. The effective sample size
of a weighted mean is ``n_eff = wsum**2 / w2sum`` and its sampling variance is
``sigma**2 / n_eff``, which is what size matching equalises.

Everything H0 goes through :mod:`streamtopo.topology`: centroid cosine distances come from one
BLAS Gram product, the tree from ``topology.mst_edges(D, "precomputed")``, and every chosen
edge is re-evaluated in float64 as ``|u - v|**2 / 2`` on unit centroids (DESIGN.md §2,
precision), so a death is within ~1e-15 absolute of a direct float64 evaluation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import topology

__all__ = [
    "CentroidTree",
    "GapEstimate",
    "centroid_tree",
    "effective_size",
    "gap_estimate",
    "h0_gradient",
    "h0_variance",
    "match_coefficients",
    "normalise_rows",
    "unit_rows",
]

_EDGE_CHUNK = 512  # edges per vectorised distance evaluation (bounds temporaries)


class CentroidTree(NamedTuple):
    """H0 of one set of unit centroids: MST edges in merge order and the distance matrix."""

    edges: topology.MergeEdges
    h0: float
    unit: np.ndarray  # (K, d) unit centroids the tree was built on


def normalise_rows(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows of the finite, non-zero rows of ``X`` and the boolean mask of kept rows."""
    X = np.asarray(X, dtype=np.float64)
    finite = np.isfinite(X).all(axis=1)
    norms = np.zeros(X.shape[0])
    if finite.any():
        Xf = X[finite]
        # scale by the row's max |x| first so huge or tiny rows neither overflow nor underflow
        m = np.max(np.abs(Xf), axis=1)
        ok = m > 0
        Xs = Xf[ok] / m[ok, None]
        n = np.sqrt(np.einsum("ij,ij->i", Xs, Xs))
        keep_idx = np.flatnonzero(finite)[ok]
        norms[keep_idx] = 1.0
        U = Xs / n[:, None]
    else:
        keep_idx = np.zeros(0, dtype=np.int64)
        U = np.zeros((0, X.shape[1]))
    keep = np.zeros(X.shape[0], dtype=bool)
    keep[keep_idx] = True
    return U, keep


def unit_rows(C: np.ndarray) -> np.ndarray:
    """Centroid sums -> unit centroids (rows must be non-zero)."""
    m = np.max(np.abs(C), axis=1)
    Cs = C / m[:, None]
    return Cs / np.sqrt(np.einsum("ij,ij->i", Cs, Cs))[:, None]


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
    """``|u_i - u_j|**2 / 2`` per edge in float64, in chunks to bound the temporaries."""
    w = np.empty(i.shape[0])
    for s in range(0, i.shape[0], _EDGE_CHUNK):
        diff = U[i[s : s + _EDGE_CHUNK]] - U[j[s : s + _EDGE_CHUNK]]
        w[s : s + _EDGE_CHUNK] = 0.5 * np.einsum("ij,ij->i", diff, diff)
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
    e = topology.mst_edges(D, "precomputed")
    w = _exact_weights(U, e.i, e.j)
    order = np.argsort(w, kind="stable")
    w = _metric_weights(w[order], metric)
    edges = topology.MergeEdges(e.i[order], e.j[order], w)
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

    Groups are taken whole in order 0, 1, ... and one group is taken with a fractional
    coefficient, solved by bisection on ``n_eff(phi) = (A + phi B)^2 / (Q + phi^2 Q_B)``.
    A class whose target is at least its total size keeps every group (coefficients 1); a
    target below the size of the first non-empty group cannot be reached (that group is kept
    whole; the caller reports the class as not matched).

    Examples
    --------
    >>> w = np.array([[4.0], [4.0], [4.0]])  # 3 groups of 4 rows, one class
    >>> phi = match_coefficients(w, w, np.array([6.0]))
    >>> phi.ravel().round(6).tolist()
    [1.0, 0.267949, 0.0]
    >>> round(float(effective_size((phi * w).sum(0), (phi**2 * w).sum(0))[0]), 9)
    6.0
    """
    R, K = wsum.shape
    phi = np.zeros((R, K))
    cumA = np.cumsum(wsum, axis=0)
    cumQ = np.cumsum(w2sum, axis=0)
    neff = effective_size(cumA, cumQ)  # n_eff of groups 0..g taken whole
    for c in range(K):
        t = target[c]
        if t >= neff[-1, c] * (1 - 1e-12):  # the target is at least the total: keep everything
            phi[:, c] = 1.0
            continue
        reach = np.flatnonzero(neff[:, c] >= t * (1 - 1e-12))
        g = int(reach[0])
        phi[:g, c] = 1.0
        A0 = cumA[g - 1, c] if g > 0 else 0.0
        Q0 = cumQ[g - 1, c] if g > 0 else 0.0
        B, QB = wsum[g, c], w2sum[g, c]
        if A0 == 0.0:  # nothing before group g: scaling one group does not change n_eff
            phi[g, c] = 1.0
            continue
        # n_eff(phi) rises on [0, phi_max] (derivative sign: B*Q0 - A0*QB*phi)
        hi = min(1.0, B * Q0 / (A0 * QB)) if QB > 0 else 1.0
        lo = 0.0
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            if (A0 + mid * B) ** 2 < t * (Q0 + mid * mid * QB):
                lo = mid
            else:
                hi = mid
        phi[g, c] = 0.5 * (lo + hi)
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
    cos = np.einsum("ij,ij->i", U[i], U[j])
    G = np.zeros_like(U)
    np.add.at(G, i, -(f / mean_norms[i])[:, None] * (U[j] - cos[:, None] * U[i]))
    np.add.at(G, j, -(f / mean_norms[j])[:, None] * (U[i] - cos[:, None] * U[j]))
    return G


def h0_variance(
    G: np.ndarray, S: np.ndarray, A: np.ndarray, Q: np.ndarray, n_eff: np.ndarray
) -> float:
    """Delta-method sampling variance of H0 from the per-class group sums.

    ``var(H0) = sum_c var_c(G_c . x) / n_eff_c``: centroids of different classes are
    independent, and each class's row dispersion along its gradient is estimated from the R
    group means ``t_g = G_c . S_gc / A_gc`` by the one-way-ANOVA between-group estimator
    ``sum_g n_g (t_g - t_bar)^2 / (R_c - 1)`` (``n_g = A_g^2 / Q_g``, unbiased with equal
    class means across the random groups). NaN if a class has fewer than two non-empty groups.
    """
    ok = A > 0
    if (ok.sum(axis=0) < 2).any():
        return float("nan")
    t = np.einsum("gkd,kd->gk", S, G)
    t = np.divide(t, A, out=np.zeros_like(t), where=ok)
    ng = effective_size(A, Q)
    tbar = (ng * t).sum(axis=0) / ng.sum(axis=0)
    disp = (ng * (t - tbar) ** 2).sum(axis=0) / (ok.sum(axis=0) - 1)
    return float(np.sum(disp / n_eff))


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


def _matched(S, A, Q, target):
    """Matched sums, effective sizes, 'target not reached' flags, 'all rows kept' flag."""
    phi = match_coefficients(A, Q, target)
    full = bool((phi == 1.0).all())
    sums = S.sum(axis=0) if full else np.einsum("gk,gkd->kd", phi, S)
    wsum = (phi * A).sum(0)
    neff = effective_size(wsum, (phi * phi * Q).sum(0))
    return sums, wsum, neff, neff > target * (1 + 1e-9) + 1e-9, full


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
    sides as independent: ``noise = sqrt(var(h0_train) + var(h0_test))`` from
    :func:`h0_variance`.
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
    C_tr, w_tr, m_tr, u_tr, full = _matched(S_tr, A_tr, Q_tr, t_tr)
    C_te, w_te, m_te, u_te, _ = _matched(S_te, A_te, Q_te, t_te)
    tree_tr = centroid_tree(C_tr, metric=metric, precision=precision)
    tree_te = centroid_tree(C_te, metric=metric, precision=precision)
    norms_tr = np.linalg.norm(C_tr, axis=1) / w_tr
    norms_te = np.linalg.norm(C_te, axis=1) / w_te
    v_tr = h0_variance(h0_gradient(tree_tr, norms_tr, metric), S_tr, A_tr, Q_tr, m_tr)
    v_te = h0_variance(h0_gradient(tree_te, norms_te, metric), S_te, A_te, Q_te, m_te)
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
    )
