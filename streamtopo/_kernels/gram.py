"""Exact Prim's MST with edges screened by a float32 BLAS Gram matrix (the path for large n d).

Notation: n points, d dimensions; ``X`` the (n, d) float64 points times a power of two f
(applied to each coordinate difference: exact, no scaled copy); ``Y = fl(X - c)`` the points
centred on the data point c nearest the mean;
``G`` the (n, n) float32 Gram matrix ``fl32(Y) fl32(Y)^T`` from BLAS; ``nrm[j] = |y_j|^2`` and
``r[j] = |y_j|`` in float64.

Why it is exact. Prim keeps, for every point j outside the tree, ``best[j]`` = the smallest
squared distance to the tree seen so far, always the *direct* float64 value
``s = sum_t (X[j,t] - X[i,t])**2`` on the *uncentred* points (same arithmetic, same order as
:func:`.mst.prim_points_sq`, so the deaths are bit-identical to the direct path's).
When point i joins the tree, the Gram estimate ``a = nrm[i] + nrm[j] - 2 G[i, j]`` comes with
a certified bound ``|a - s| <= E[i, j]``: converting to float32 and any float32 dot product of
length d (any summation order, with or without FMA) err by at most
``(2u + gamma_d) r[i] r[j]`` with ``u = 2**-24`` and ``gamma_d = d u / (1 - d u)``, plus an
underflow term; float64 rounding of the centring, the norms, the combination and the direct
evaluation itself is covered by a relative term in ``nrm[i] + nrm[j]``. If
``a - E >= best[j]`` the direct value cannot be smaller, so Prim would not update j and we skip
it; otherwise we evaluate ``s`` directly. Every key, every comparison and therefore the tree are
those of the direct float64 Prim (up to the order in which equal keys are found); the Gram
matrix only saves the O(d) evaluations that cannot matter. Near-ties (within E) always get the
direct evaluation, so ties and duplicates cost time, never accuracy. For very wide data the
caller may pass a float64 Gram matrix instead (the same bound with ``u = 2**-53``).

The Gram matrix itself is a BLAS product with a thread policy, so it is built outside the
kernels, by :func:`streamtopo.topology.blas.gram_matrix`.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .mst import sq_dists_rows

__all__ = ["gram_bound_constants", "gram_prepare", "prim_gram_sq"]

_U32 = 2.0**-24
_U64 = 2.0**-53


def gram_bound_constants(d: int, dtype: type | np.dtype = np.float32) -> tuple[float, float, float]:
    """``(k_rel, c_prod, slack)`` of the screening test for dimension d and a Gram matrix of
    ``dtype`` (float32, or float64 for very wide data where float32's d u band is too broad).

    The test skips j when ``nrm[c](1-k_rel) + nrm[j](1-k_rel) - 2 G[c,j]
    - c_prod r[c] r[j] - slack >= best[j]``; see the module docstring for the derivation. The
    factors 1.25 and 16 are safety margins on a worst-case bound (the typical error is
    ~sqrt(d) u, not d u).
    """
    u = _U32 if np.dtype(dtype) == np.float32 else _U64
    du = d * u
    if du >= 0.5:
        raise ValueError(f"d={d} is too large for a Gram bound")
    gamma = du / (1.0 - du)
    c_gram = (2.0 * u + u * u) + gamma * (1.0 + u) ** 2  # |G~ - x.y| / (|x||y|)
    c_prod = 2.0 * c_gram * 1.25
    # float64 rounding of the centring (8 u), the norms, the combination and the direct sum
    k_rel = 16.0 * (d + 10) * _U64 + 8.0 * _U64
    slack = 2.0 * (d + 2) * 2.0**-146  # float32 underflow (|x| <= 1 after scaling)
    return k_rel, c_prod, slack


def gram_prepare(
    P: np.ndarray, dtype: type | np.dtype = np.float32
) -> tuple[float, float, np.ndarray, np.ndarray]:
    """Scale ``P`` for the Gram path.

    Returns ``(f, scale, Y, nrm)``: ``f = 1 / scale`` with ``scale`` a power of two near
    max |P - c| (so ``P * f`` is exact, and the direct evaluations use it without a scaled
    copy), ``Y = (P - c) * f`` in ``dtype`` for BLAS and ``nrm = |(P - c) f|^2``, where c is the
    data point nearest the mean. Only the screening sees the centred data, so centring never
    changes a death; the power of two keeps float32 squares in range and |P_i f - P_j f| <= 2.
    """
    mean = P.mean(axis=0)
    c = P[_nearest_row(P, mean)].copy()
    m = _max_abs_diff(P, c)
    scale = 1.0 if m == 0.0 else math.ldexp(1.0, math.frexp(m)[1])
    Y = np.empty(P.shape, dtype=dtype)
    nrm = np.empty(P.shape[0])
    _centre_scale_norms(P, c, 1.0 / scale, Y, nrm)
    return 1.0 / scale, scale, Y, nrm


@jit
def _nearest_row(P, mean):
    n, d = P.shape
    bi = 0
    bv = np.inf
    for i in range(n):
        s = 0.0
        for t in range(d):
            e = P[i, t] - mean[t]
            s += e * e
        if s < bv:
            bv = s
            bi = i
    return bi


@jit
def _max_abs_diff(P, c):
    n, d = P.shape
    m = 0.0
    for i in range(n):
        for t in range(d):
            m = max(m, abs(P[i, t] - c[t]))
    return m


@jit
def _centre_scale_norms(P, c, f, Y, nrm):
    n, d = P.shape
    for i in range(n):
        s = 0.0
        for t in range(d):
            v = (P[i, t] - c[t]) * f
            Y[i, t] = v
            s += v * v
        nrm[i] = s


@jit
def _tree_set(val, arg, size, j, v):
    """Set leaf j of the min-tournament tree to v and repair the path to the root."""
    p = size + j
    val[p] = v
    arg[p] = j
    p >>= 1
    while p >= 1:
        a = 2 * p
        b = a + 1
        if val[b] < val[a]:
            val[p] = val[b]
            arg[p] = arg[b]
        else:
            val[p] = val[a]
            arg[p] = arg[a]
        p >>= 1


@jit
def _exact_update(X, f, xc, cur, cand, count, sq, best, near, tval, targ, size):
    """Direct float64 squared distances from xc to the candidates; improve their keys."""
    sq_dists_rows(X, xc, cand, count, sq, f)
    for k in range(count):
        j = cand[k]
        if sq[k] < best[j]:
            best[j] = sq[k]
            near[j] = cur
            _tree_set(tval, targ, size, j, sq[k])


@jit
def prim_gram_sq(X, f, G, nrm, k_rel, c_prod, slack, out_src, out_dst, out_w):
    """Prim's MST of the points ``X * f`` (f a power of two) with squared distances screened by
    the Gram matrix G of the centred, scaled points.

    Writes the tree as :func:`.mst.prim_points_sq` does and returns the number of direct
    float64 distance evaluations (at least n - 1; n (n - 1) / 2 when everything is a near-tie).

    Layout: arrays are indexed by point id; a point in the tree has ``na = inf`` and
    ``best = 0``, so its screening value is +inf (never a candidate), and an inf leaf in the
    tournament tree, which therefore never picks it. Each step screens all n points in one
    branch-free loop the compiler vectorises (it also counts the candidates), evaluates the few
    candidates directly, and reads
    the next point off a min-tournament tree over ``best``.
    """
    n = X.shape[0]
    if n < 2:
        return 0
    size = 1
    while size < n:
        size *= 2
    tval = np.full(2 * size, np.inf)
    targ = np.zeros(2 * size, dtype=np.int64)
    for j in range(size):
        targ[size + j] = j
    best = np.full(n, np.inf)
    near = np.zeros(n, dtype=np.int64)
    na = np.empty(n)  # (1 - k_rel) |x_j|^2, inf once j is in the tree
    q = np.empty(n)  # sqrt(c_prod) |x_j|
    low = np.empty(n)
    cand = np.empty(n, dtype=np.int64)
    sq = np.empty(n)
    sc = math.sqrt(c_prod)
    for j in range(n):
        na[j] = nrm[j] * (1.0 - k_rel)
        q[j] = sc * math.sqrt(nrm[j])
    cur = 0
    evaluations = 0
    for step in range(n - 1):
        g = G[cur]
        xc = X[cur]
        base = na[cur] - slack
        qc = q[cur]
        na[cur] = np.inf
        best[cur] = 0.0  # with na = inf its screening value is +inf: never a candidate
        count = 0
        for j in range(n):
            v = base + na[j] - 2.0 * np.float64(g[j]) - qc * q[j] - best[j]
            low[j] = v
            count += v < 0.0
        found = 0
        j = 0
        while found < count:
            if low[j] < 0.0:
                cand[found] = j
                found += 1
            j += 1
        evaluations += count
        _exact_update(X, f, xc, cur, cand, count, sq, best, near, tval, targ, size)
        nxt = targ[1]
        out_src[step] = near[nxt]
        out_dst[step] = nxt
        out_w[step] = best[nxt]
        _tree_set(tval, targ, size, nxt, np.inf)
        cur = nxt
    return evaluations
