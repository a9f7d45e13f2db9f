"""Union-find over one ``int64`` parent array (path halving, union by size).

Notation: n elements, ``parent[i]`` is i's parent (roots satisfy ``parent[i] == i``),
``size[r]`` is the number of elements under root r (only meaningful at roots).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def uf_init(n):
    """Return ``(parent, size)`` for n singletons."""
    parent = np.arange(n, dtype=np.int64)
    size = np.ones(n, dtype=np.int64)
    return parent, size


@jit
def uf_find(parent, x):
    """Root of x, halving the path on the way up."""
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@jit
def uf_union(parent, size, a, b):
    """Merge the sets of a and b; return the new root, or -1 if they were already joined."""
    ra = uf_find(parent, a)
    rb = uf_find(parent, b)
    if ra == rb:
        return -1
    if size[ra] < size[rb]:
        ra, rb = rb, ra
    parent[rb] = ra
    size[ra] += size[rb]
    return ra


@jit
def kruskal(n, src, dst, weight, order, out_src, out_dst, out_w):
    """Minimum spanning forest of an edge list by Kruskal's rule.

    ``order`` is a permutation of the edges sorted by ascending weight (the caller sorts, so the
    tie order is its choice). Writes the accepted edges in merge order and returns their count
    (n - number of components).
    """
    parent = np.arange(n, dtype=np.int64)
    size = np.ones(n, dtype=np.int64)
    k = 0
    for t in range(order.shape[0]):
        e = order[t]
        if uf_union(parent, size, src[e], dst[e]) >= 0:
            out_src[k] = src[e]
            out_dst[k] = dst[e]
            out_w[k] = weight[e]
            k += 1
            if k == n - 1:
                break
    return k


@jit
def single_linkage_from_sorted(n, src, dst, weight):
    """scipy-format single-linkage matrix Z from MST edges already in merge order.

    Cluster ids follow scipy: leaves are 0..n-1, the cluster made at row k gets id n + k.
    Within a row the smaller id comes first, as in ``scipy.cluster.hierarchy.linkage``.
    """
    m = src.shape[0]
    parent = np.arange(n, dtype=np.int64)
    size = np.ones(n, dtype=np.int64)
    label = np.arange(n, dtype=np.int64)  # scipy cluster id of each union-find root
    Z = np.empty((m, 4), dtype=np.float64)
    for k in range(m):
        ra = uf_find(parent, src[k])
        rb = uf_find(parent, dst[k])
        la = label[ra]
        lb = label[rb]
        if la > lb:
            la, lb = lb, la
        count = size[ra] + size[rb]
        root = uf_union(parent, size, ra, rb)
        label[root] = n + k
        Z[k, 0] = la
        Z[k, 1] = lb
        Z[k, 2] = weight[k]
        Z[k, 3] = count
    return Z
