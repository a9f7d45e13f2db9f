"""Minimum spanning trees for H0 persistence.

Notation: n points, d dimensions, ``X`` an (n, d) float64 array, ``D`` an (n, n) distance
matrix. Every kernel writes the n - 1 tree edges into caller-provided buffers
``out_src``, ``out_dst``, ``out_w`` in the order Prim (or the sort) found them; callers sort by
weight to get merge (Kruskal) order.

Precision: weights are computed directly from coordinate differences in float64 — never by the
``|x|^2 + |y|^2 - 2 x.y`` shortcut — so every death is within a few ulps of a direct float64
evaluation. Point kernels return *squared* Euclidean weights; the caller takes the square root
(Euclidean) or halves them (cosine on unit vectors: ``1 - cos = |u - v|^2 / 2``).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def prim_points_sq(X, out_src, out_dst, out_w):
    """Prim's MST on points with squared Euclidean distances computed on the fly (O(n) memory)."""
    n, d = X.shape
    if n < 2:
        return
    best = np.full(n, np.inf)
    near = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.bool_)
    cur = 0
    done[0] = True
    for k in range(n - 1):
        bi = -1
        bv = np.inf
        for j in range(n):
            if done[j]:
                continue
            s = 0.0
            for t in range(d):
                diff = X[j, t] - X[cur, t]
                s += diff * diff
            if s < best[j]:
                best[j] = s
                near[j] = cur
            if bi < 0 or best[j] < bv:
                bv = best[j]
                bi = j
        done[bi] = True
        out_src[k] = near[bi]
        out_dst[k] = bi
        out_w[k] = bv
        cur = bi


@jit
def prim_dense(D, out_src, out_dst, out_w):
    """Prim's MST on a symmetric (n, n) distance matrix."""
    n = D.shape[0]
    if n < 2:
        return
    best = np.full(n, np.inf)
    near = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=np.bool_)
    cur = 0
    done[0] = True
    for k in range(n - 1):
        bi = -1
        bv = np.inf
        for j in range(n):
            if done[j]:
                continue
            s = D[cur, j]
            if s < best[j]:
                best[j] = s
                near[j] = cur
            if bi < 0 or best[j] < bv:
                bv = best[j]
                bi = j
        done[bi] = True
        out_src[k] = near[bi]
        out_dst[k] = bi
        out_w[k] = bv
        cur = bi


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
