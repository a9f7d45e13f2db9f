"""Minimum spanning trees for H0 persistence.

Notation: n points, d dimensions, ``X`` an (n, d) float64 array, ``D`` an (n, n) distance
matrix, m the number of points not yet in the tree. Every kernel writes the n - 1 tree edges
into caller-provided buffers ``out_src``, ``out_dst``, ``out_w`` in the order Prim (or the
sort) found them; callers sort by weight to get merge (Kruskal) order.

Precision: weights are computed directly from coordinate differences in float64 — never by the
``|x|^2 + |y|^2 - 2 x.y`` shortcut — as ``s = 0; s += (x[j,t] - x[c,t])**2`` for t = 0..d-1
in that order, so every death is within a few ulps of a direct float64 evaluation (and the
Gram path in :mod:`.gram` reproduces these keys bit for bit). Point kernels return *squared*
Euclidean weights; the caller takes the square root (Euclidean) or halves them (cosine on unit
vectors: ``1 - cos = |u - v|^2 / 2``).

Speed: Prim keeps the points still outside the tree *compacted* at the front of its working
arrays (swap-remove), and holds their coordinates transposed (d, m), so the distance update for
one step is d passes over contiguous memory that the compiler vectorises without reordering any
sum (no fastmath needed).
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit


@jit
def sq_dists_rows(X, xc, idx, count, out, f=1.0):
    """``out[k] = sum_t ((X[idx[k], t] - xc[t]) * f)**2`` for k < count, four rows at a time.

    Each sum runs over t in order, exactly as in :func:`prim_points_sq`; interleaving four
    independent sums only hides the floating-point add latency. ``f`` is a power of two, so
    ``(a - b) * f`` is bit-identical to ``a * f - b * f`` (the points scaled first).
    """
    d = X.shape[1]
    k = 0
    while k + 4 <= count:
        x0 = X[idx[k]]
        x1 = X[idx[k + 1]]
        x2 = X[idx[k + 2]]
        x3 = X[idx[k + 3]]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        s3 = 0.0
        for t in range(d):
            c = xc[t]
            e0 = (x0[t] - c) * f
            e1 = (x1[t] - c) * f
            e2 = (x2[t] - c) * f
            e3 = (x3[t] - c) * f
            s0 += e0 * e0
            s1 += e1 * e1
            s2 += e2 * e2
            s3 += e3 * e3
        out[k] = s0
        out[k + 1] = s1
        out[k + 2] = s2
        out[k + 3] = s3
        k += 4
    while k < count:
        xj = X[idx[k]]
        s = 0.0
        for t in range(d):
            e = (xj[t] - xc[t]) * f
            s += e * e
        out[k] = s
        k += 1


@jit
def _sq_dists_transposed(A, xc, mm, s):
    """``s[k] = sum_t (A[t, k] - xc[t])**2`` for k < mm, summed over t in order.

    Four coordinates per pass over k (each s[k] still adds them in order t, t+1, t+2, t+3), so
    there are d / 4 short vector loops per step instead of d.
    """
    d = A.shape[0]
    for k in range(mm):
        s[k] = 0.0
    t = 0
    while t + 4 <= d:
        c0 = xc[t]
        c1 = xc[t + 1]
        c2 = xc[t + 2]
        c3 = xc[t + 3]
        a0 = A[t]
        a1 = A[t + 1]
        a2 = A[t + 2]
        a3 = A[t + 3]
        for k in range(mm):
            v = s[k]
            e = a0[k] - c0
            v += e * e
            e = a1[k] - c1
            v += e * e
            e = a2[k] - c2
            v += e * e
            e = a3[k] - c3
            v += e * e
            s[k] = v
        t += 4
    while t < d:
        c = xc[t]
        a = A[t]
        for k in range(mm):
            e = a[k] - c
            s[k] += e * e
        t += 1


# Below this many points outside the tree, a step's distances are summed row by row (four rows
# at a time) instead of over the transposed copy, whose d short vector loops cost more.
_ROWWISE_BELOW = 16


@jit
def prim_points_sq(X, out_src, out_dst, out_w):
    """Prim's MST on points with squared Euclidean distances computed on the fly (O(n d) memory)."""
    n, d = X.shape
    if n < 2:
        return
    m = n - 1
    wide = m > _ROWWISE_BELOW
    A = np.empty((d, m if wide else 0))  # coordinates of the points outside the tree, transposed
    ids = np.empty(m, dtype=np.int64)
    best = np.full(m, np.inf)
    near = np.zeros(m, dtype=np.int64)
    s = np.empty(m)
    xc = np.empty(d)
    for k in range(m):
        ids[k] = k + 1
        if wide:
            for t in range(d):
                A[t, k] = X[k + 1, t]
    for t in range(d):
        xc[t] = X[0, t]
    cur = 0
    for step in range(n - 1):
        mm = m - step
        if mm > _ROWWISE_BELOW:
            _sq_dists_transposed(A, xc, mm, s)
        else:
            sq_dists_rows(X, X[cur], ids, mm, s)
        bk = 0
        bv = np.inf
        for k in range(mm):
            b = best[k]
            if s[k] < b:
                b = s[k]
                best[k] = b
                near[k] = cur
            if b < bv or k == 0:
                bv = b
                bk = k
        cur = ids[bk]
        out_src[step] = near[bk]
        out_dst[step] = cur
        out_w[step] = bv
        last = mm - 1
        if mm > _ROWWISE_BELOW:
            for t in range(d):
                xc[t] = A[t, bk]
                A[t, bk] = A[t, last]
        ids[bk] = ids[last]
        best[bk] = best[last]
        near[bk] = near[last]


@jit
def prim_dense(D, out_src, out_dst, out_w):
    """Prim's MST on a symmetric (n, n) distance matrix."""
    n = D.shape[0]
    if n < 2:
        return
    m = n - 1
    ids = np.arange(1, n)
    best = np.full(m, np.inf)
    near = np.zeros(m, dtype=np.int64)
    cur = 0
    for step in range(n - 1):
        mm = m - step
        row = D[cur]
        bk = 0
        bv = np.inf
        for k in range(mm):
            v = row[ids[k]]
            if v < best[k]:
                best[k] = v
                near[k] = cur
            if best[k] < bv or k == 0:
                bv = best[k]
                bk = k
        cur = ids[bk]
        out_src[step] = near[bk]
        out_dst[step] = cur
        out_w[step] = bv
        last = mm - 1
        ids[bk] = ids[last]
        best[bk] = best[last]
        near[bk] = near[last]


@jit
def mst_1d(x, out_src, out_dst, out_w):
    """MST of points on a line: neighbours in sorted order, weights = gaps (not squared)."""
    n = x.shape[0]
    order = np.argsort(x, kind="mergesort")
    for k in range(n - 1):
        a = order[k]
        b = order[k + 1]
        out_src[k] = a
        out_dst[k] = b
        out_w[k] = x[b] - x[a]


@jit
def h0_deaths_points(X, cosine, out):
    """Deaths of the H0 diagram of the points X, sorted ascending, into ``out`` (n - 1 values).

    The whole small-input pipeline in one call (the per-call cost of a monitor step): checks
    finiteness, divides by a power of two near max |X| (exact; keeps squares in range) or
    normalises rows (``cosine``), runs Prim (or the sort for d = 1), converts squared weights
    and sorts. Returns 0, or -1 if X holds NaN/inf, or -2 if a cosine row is all zeros; the
    caller then takes the validating slow path, which raises the right error.
    """
    n, d = X.shape
    m = 0.0
    for i in range(n):
        for t in range(d):
            v = abs(X[i, t])
            if not v <= 1.7976931348623157e308:
                return -1
            m = max(m, v)
    if n < 2:
        return 0
    src = np.empty(n - 1, dtype=np.int64)
    dst = np.empty(n - 1, dtype=np.int64)
    if cosine:
        U = np.empty((n, d))
        for i in range(n):
            s = 0.0
            for t in range(d):
                s += X[i, t] * X[i, t]
            if s == 0.0:
                return -2
            r = np.sqrt(s)
            for t in range(d):
                U[i, t] = X[i, t] / r
        prim_points_sq(U, src, dst, out)
        for k in range(n - 1):
            out[k] *= 0.5
    else:
        scale = 1.0 if m == 0.0 else math.ldexp(1.0, math.frexp(m)[1])
        if d == 1:
            x = np.empty(n)
            for i in range(n):
                x[i] = X[i, 0]
            mst_1d(x, src, dst, out)
        else:
            prim_points_sq(X / scale, src, dst, out)
            for k in range(n - 1):
                out[k] = np.sqrt(out[k]) * scale
    out.sort()
    return 0


@jit
def h0_diagram_points(X, cosine):
    """(n, 2) H0 diagram of X via :func:`h0_deaths_points`; a (0, 2) array signals bad input."""
    n = X.shape[0]
    deaths = np.empty(max(n - 1, 0))
    dgm = np.zeros((n, 2))
    if h0_deaths_points(X, cosine, deaths) != 0:
        return np.zeros((0, 2))
    for k in range(n - 1):
        dgm[k, 1] = deaths[k]
    dgm[n - 1, 1] = np.inf
    return dgm


@jit
def h0_total_points(X, cosine):
    """Sum of the finite deaths of X via :func:`h0_deaths_points`; -1.0 signals bad input."""
    n = X.shape[0]
    deaths = np.empty(max(n - 1, 0))
    if h0_deaths_points(X, cosine, deaths) != 0:
        return -1.0
    total = 0.0
    for k in range(n - 1):
        total += deaths[k]
    return total
