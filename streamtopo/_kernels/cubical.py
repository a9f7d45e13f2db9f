"""Sublevel-set persistence of cubical grids: H0 by union-find, Euler characteristic curves.

Notation: B maps per call; a map has shape (D, H, W) (D = 1 for a 2-D image) and P = D*H*W
pixels stored flat, pixel p = (z*H + y)*W + x; ``f`` is a map's float64 values; K neighbour
offsets (4 or 8 in 2-D, 6 or 26 in 3-D); T thresholds, sorted strictly ascending.

Constructions (the same words as Cubical Ripser and gudhi):

* **V-construction** -- pixels are vertices; an edge or square enters when all its pixels have
  (value = max of its pixels). Components are 4-connected (6 in 3-D). cripser's default
  ``filtration="V"``; ``gudhi.CubicalComplex(vertices=...)``.
* **T-construction** -- pixels are closed top-dimensional squares (cubes); a lower cell enters
  with the first square that contains it (value = min of its pixels). Squares touching at a
  corner are joined, so components are 8-connected (26 in 3-D). ``filtration="T"`` in cripser,
  ``gudhi.CubicalComplex(top_dimensional_cells=...)``.

H0 is the same computation for both: pixels are added in ascending value and unioned with
already-present neighbours; when two components meet, the younger one (later birth in the
processing order) dies at the current value -- the elder rule. Zero-length pairs (birth ==
death) are not written, as in gudhi's and cripser's output.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def neighbour_offsets(ndim, full):
    """(K, 3) offsets (dz, dy, dx): faces only (4 / 6) or faces, edges and corners (8 / 26)."""
    out = np.zeros((26, 3), dtype=np.int64)
    k = 0
    zr = 1 if ndim == 3 else 0
    for dz in range(-zr, zr + 1):
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                m = abs(dz) + abs(dy) + abs(dx)
                if m == 0 or (not full and m > 1):
                    continue
                out[k, 0] = dz
                out[k, 1] = dy
                out[k, 2] = dx
                k += 1
    return out[:k].copy()


@jit
def _root(parent, x):
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@jit
def h0_pairs(f, D, H, W, offs, parent, rank, out_birth, out_death):
    """Sublevel H0 pairs of one flat map; returns the number written (essential bar last).

    ``parent`` and ``rank`` are int64 scratch of length P. Roots are always the pixel that
    started the component (its minimum), so a root's birth is ``f[root]`` and its age is
    ``rank[root]`` (position in the processing order). Finite deaths come out ascending.
    """
    P = f.shape[0]
    HW = H * W
    K = offs.shape[0]
    order = np.argsort(f, kind="mergesort")
    for i in range(P):
        parent[i] = -1
    n = 0
    for k in range(P):
        p = order[k]
        parent[p] = p
        rank[p] = k
        rp = p
        v = f[p]
        z = p // HW
        r = p - z * HW
        y = r // W
        x = r - y * W
        for o in range(K):
            zz = z + offs[o, 0]
            yy = y + offs[o, 1]
            xx = x + offs[o, 2]
            if zz < 0 or zz >= D or yy < 0 or yy >= H or xx < 0 or xx >= W:
                continue
            q = (zz * H + yy) * W + xx
            if parent[q] < 0:
                continue
            rq = _root(parent, q)
            if rq == rp:
                continue
            if rank[rq] < rank[rp]:
                elder = rq
                younger = rp
            else:
                elder = rp
                younger = rq
            b = f[younger]
            if v > b:
                out_birth[n] = b
                out_death[n] = v
                n += 1
            parent[younger] = elder
            rp = elder
    if P > 0:
        out_birth[n] = f[order[0]]
        out_death[n] = np.inf
        n += 1
    return n


@jit
def h0_pairs_batch(F, D, H, W, offs, out_birth, out_death, out_count):
    """:func:`h0_pairs` for each row of F (B, P); row b's pairs fill ``out_*[b, :out_count[b]]``."""
    B, P = F.shape
    parent = np.empty(P, dtype=np.int64)
    rank = np.empty(P, dtype=np.int64)
    for b in range(B):
        out_count[b] = h0_pairs(F[b], D, H, W, offs, parent, rank, out_birth[b], out_death[b])


@jit
def _bump(thresholds, v, sign, diff):
    """Add ``sign`` to the Betti/Euler curve from the first threshold >= v onwards."""
    j = np.searchsorted(thresholds, v)
    if j < diff.shape[0]:
        diff[j] += sign


@jit
def betti0_from_pairs(births, deaths, n, thresholds, out):
    """beta0(t_j) = #{pairs with birth <= t_j < death}, written into ``out`` (T,) int64."""
    T = thresholds.shape[0]
    diff = np.zeros(T + 1, dtype=np.int64)
    for i in range(n):
        _bump(thresholds, births[i], 1, diff)
        if deaths[i] < np.inf:
            _bump(thresholds, deaths[i], -1, diff)
    acc = 0
    for j in range(T):
        acc += diff[j]
        out[j] = acc


@jit
def _clip_len(a, b, lo, hi):
    a = max(a, lo)
    b = min(b, hi)
    return b - a if b > a else 0.0


@jit
def area_from_pairs(births, deaths, n, lo, hi):
    """Integral of beta0 over [lo, hi]: total length of the bars clipped to the window."""
    s = 0.0
    for i in range(n):
        s += _clip_len(births[i], deaths[i], lo, hi)
    return s


@jit
def euler_2d(f, H, W, tcon, thresholds, lo, hi, out):
    """Euler characteristic curve chi(t_j) of a 2-D map (flat, H*W) into ``out`` (T,) int64;
    returns the integral of chi over [lo, hi].

    Cells and their values: V-construction (``tcon`` False) -- vertices = pixels, edges = max of
    the two 4-neighbours, squares = max of each 2x2 block. T-construction (``tcon`` True) --
    squares = pixels, lattice edges and vertices = min of the one to four pixels that contain
    them. chi counts vertices - edges + squares with value <= t.
    """
    T = thresholds.shape[0]
    diff = np.zeros(T + 1, dtype=np.int64)
    area = 0.0
    if not tcon:
        for y in range(H):
            for x in range(W):
                v = f[y * W + x]
                _bump(thresholds, v, 1, diff)
                area += _clip_len(v, hi, lo, hi)
                if x + 1 < W:
                    e = max(v, f[y * W + x + 1])
                    _bump(thresholds, e, -1, diff)
                    area -= _clip_len(e, hi, lo, hi)
                if y + 1 < H:
                    e = max(v, f[(y + 1) * W + x])
                    _bump(thresholds, e, -1, diff)
                    area -= _clip_len(e, hi, lo, hi)
                if x + 1 < W and y + 1 < H:
                    s = max(
                        max(v, f[y * W + x + 1]), max(f[(y + 1) * W + x], f[(y + 1) * W + x + 1])
                    )
                    _bump(thresholds, s, 1, diff)
                    area += _clip_len(s, hi, lo, hi)
    else:
        # lattice vertex (i, j), 0 <= i <= H, 0 <= j <= W, touches pixels (i-1..i, j-1..j)
        for i in range(H + 1):
            for j in range(W + 1):
                m = np.inf
                for yy in range(i - 1, i + 1):
                    for xx in range(j - 1, j + 1):
                        if 0 <= yy < H and 0 <= xx < W:
                            m = min(m, f[yy * W + xx])
                _bump(thresholds, m, 1, diff)
                area += _clip_len(m, hi, lo, hi)
                if j < W:  # horizontal lattice edge (i, j)-(i, j+1): pixels (i-1, j), (i, j)
                    m = np.inf
                    if i >= 1:
                        m = f[(i - 1) * W + j]
                    if i < H:
                        m = min(m, f[i * W + j])
                    _bump(thresholds, m, -1, diff)
                    area -= _clip_len(m, hi, lo, hi)
                if i < H:  # vertical lattice edge (i, j)-(i+1, j): pixels (i, j-1), (i, j)
                    m = np.inf
                    if j >= 1:
                        m = f[i * W + j - 1]
                    if j < W:
                        m = min(m, f[i * W + j])
                    _bump(thresholds, m, -1, diff)
                    area -= _clip_len(m, hi, lo, hi)
                if i < H and j < W:
                    v = f[i * W + j]
                    _bump(thresholds, v, 1, diff)
                    area += _clip_len(v, hi, lo, hi)
    acc = 0
    for j in range(T):
        acc += diff[j]
        out[j] = acc
    return area


@jit
def summaries_batch(
    F, D, H, W, offs, tcon, with_euler, thresholds, lo, hi, out_b0, out_chi, out_area0, out_areachi,
    out_tp,
):  # fmt: skip
    """Betti-curve summaries of B maps without keeping their diagrams.

    Per row b of F (B, P): ``out_b0[b]`` = beta0 curve at the thresholds, ``out_area0[b]`` =
    integral of beta0 over [lo, hi], ``out_tp[b]`` = total persistence of the finite H0 bars and,
    when ``with_euler`` (2-D only), ``out_chi[b]`` = Euler curve and ``out_areachi[b]`` = its
    integral, so beta1 = beta0 - chi.
    """
    B, P = F.shape
    parent = np.empty(P, dtype=np.int64)
    rank = np.empty(P, dtype=np.int64)
    births = np.empty(P, dtype=np.float64)
    deaths = np.empty(P, dtype=np.float64)
    for b in range(B):
        f = F[b]
        n = h0_pairs(f, D, H, W, offs, parent, rank, births, deaths)
        betti0_from_pairs(births, deaths, n, thresholds, out_b0[b])
        out_area0[b] = area_from_pairs(births, deaths, n, lo, hi)
        tp = 0.0
        for i in range(n - 1):
            tp += deaths[i] - births[i]
        out_tp[b] = tp
        if with_euler:
            out_areachi[b] = euler_2d(f, H, W, tcon, thresholds, lo, hi, out_chi[b])
