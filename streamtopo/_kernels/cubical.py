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
processing order) dies at the current value -- the elder rule. Linking is younger-under-elder
(not by size) so that a root is always its component's birth pixel; ``uf_find`` halves paths.
Zero-length pairs (birth == death) are not written, as in gudhi's and cripser's output.
"""

from __future__ import annotations

import numpy as np

from ._jit import jit
from .unionfind import uf_find


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
def padded_layout(D, H, W, offs):
    """Neighbour offsets as flat steps in the grid padded by one never-present pixel on every
    side (no bounds checks in the hot loop), and the padded size.

    The z axis is padded only when some offset moves in z (a 2-D map has no z neighbours);
    :func:`_padded` maps a pixel to its padded index. Returns ``(steps, size, pz)``.
    """
    pz = 0
    for k in range(offs.shape[0]):
        if offs[k, 0] != 0:
            pz = 1
    Hp = H + 2
    Wp = W + 2
    K = offs.shape[0]
    steps = np.empty(K, dtype=np.int64)
    for k in range(K):
        steps[k] = (offs[k, 0] * Hp + offs[k, 1]) * Wp + offs[k, 2]
    return steps, (D + 2 * pz) * Hp * Wp, pz


@jit
def _padded(p, pz, H, W):
    """Padded index of pixel p: ((z + pz) * Hp + y + 1) * Wp + x + 1, by arithmetic (a lookup
    table is a cache miss per pixel on large maps)."""
    Wp = W + 2
    if pz == 0:  # one z-slice, not padded in z
        return p + 2 * (p // W) + Wp + 1
    HpWp = (H + 2) * Wp
    r = p // W
    z = r // H
    return p + z * (HpWp - H * W) + 2 * (r - z * H) + HpWp + Wp + 1


@jit
def h0_pairs(f, order, pz, H, W, steps, parent, rank, bval, fs, out):
    """Sublevel H0 pairs of one flat map; returns the number written (essential bar last).

    ``order`` sorts ``f`` ascending (any tie order: the off-diagonal diagram does not depend on
    it). ``pz`` comes from :func:`padded_layout`. ``parent``, ``rank`` (int64) and ``bval``
    (float64) are scratch over the padded grid of :func:`padded_layout`; ``parent`` must be -1
    on the padding and is reset here on the interior; ``fs`` (P,) float64 scratch receives the
    sorted values. Roots are always the
    pixel that started the component, so a root's birth is ``bval[root]`` and its age
    ``rank[root]``. ``out`` (P, 2) receives ``(birth, death)`` rows; finite rows come out by
    ascending (death, birth).
    """
    P = f.shape[0]
    K = steps.shape[0]
    for k in range(P):
        fs[k] = f[order[k]]
        parent[_padded(k, pz, H, W)] = -1
    n = 0
    for k in range(P):
        p = _padded(order[k], pz, H, W)
        v = fs[k]
        rp = -1  # p's root; p itself stays absent (parent -1) while its neighbours are read
        for o in range(K):
            q = p + steps[o]
            if parent[q] < 0:
                continue
            rq = uf_find(parent, q)
            if rp < 0:
                # p's own component would be the youngest and die at once (zero length):
                # join the first neighbour's component directly
                rp = rq
                continue
            if rq == rp:
                continue
            if rank[rq] < rank[rp]:
                elder = rq
                younger = rp
            else:
                elder = rp
                younger = rq
            b = bval[younger]
            if v > b:
                # deaths arrive ascending; keep equal deaths ordered by birth (canonical
                # output whatever the tie order of the sort)
                j = n
                while j > 0 and out[j - 1, 1] == v and out[j - 1, 0] > b:
                    out[j, 0] = out[j - 1, 0]
                    out[j, 1] = v
                    j -= 1
                out[j, 0] = b
                out[j, 1] = v
                n += 1
            parent[younger] = elder
            rp = elder
        if rp < 0:  # a local minimum starts a component
            rp = p
            rank[p] = k
            bval[p] = v
        parent[p] = rp
    if P > 0:
        out[n, 0] = fs[0]
        out[n, 1] = np.inf
        n += 1
    return n


@jit
def h0_pairs_batch(F, order, D, H, W, offs, out, out_start):
    """:func:`h0_pairs` for each row of F (B, P) with its sort order (B, P), packed: row b's
    pairs are ``out[out_start[b]:out_start[b + 1]]`` (out is (B*P, 2), out_start (B + 1,))."""
    B = F.shape[0]
    steps, size, pz = padded_layout(D, H, W, offs)
    parent = np.full(size, -1, dtype=np.int64)
    rank = np.empty(size, dtype=np.int64)
    bval = np.empty(size, dtype=np.float64)
    fs = np.empty(F.shape[1], dtype=np.float64)
    start = 0
    for b in range(B):
        out_start[b] = start
        start += h0_pairs(F[b], order[b], pz, H, W, steps, parent, rank, bval, fs, out[start:])
    out_start[B] = start


@jit
def _bump(thresholds, v, sign, diff):
    """Add ``sign`` to the Betti/Euler curve from the first threshold >= v onwards."""
    j = np.searchsorted(thresholds, v)
    if j < diff.shape[0]:
        diff[j] += sign


@jit
def betti0_from_pairs(pairs, n, thresholds, out):
    """beta0(t_j) = #{pairs with birth <= t_j < death}, written into ``out`` (T,) int64."""
    T = thresholds.shape[0]
    diff = np.zeros(T + 1, dtype=np.int64)
    for i in range(n):
        _bump(thresholds, pairs[i, 0], 1, diff)
        if pairs[i, 1] < np.inf:
            _bump(thresholds, pairs[i, 1], -1, diff)
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
def area_from_pairs(pairs, n, lo, hi):
    """Integral of beta0 over [lo, hi]: total length of the bars clipped to the window."""
    s = 0.0
    for i in range(n):
        s += _clip_len(pairs[i, 0], pairs[i, 1], lo, hi)
    return s


@jit
def threshold_index(f, order, thresholds, out):
    """``out[p]`` = index of the first threshold >= f[p] (T if none), by one merge walk along
    the sort order instead of a binary search per pixel."""
    T = thresholds.shape[0]
    j = 0
    for k in range(order.shape[0]):
        p = order[k]
        v = f[p]
        while j < T and thresholds[j] < v:
            j += 1
        out[p] = j


@jit
def _cell(f, tidx, q, sign, diff, lo, hi):
    """Count a cell whose value is pixel q's: into the Euler curve, and its area over [lo, hi]."""
    j = tidx[q]
    if j < diff.shape[0] - 1:
        diff[j] += sign
        return sign * (hi - max(f[q], lo))
    return 0.0


@jit
def _lo(f, a, b):
    return a if f[a] <= f[b] else b


@jit
def _hi(f, a, b):
    return a if f[a] >= f[b] else b


@jit
def euler_2d(f, tidx, H, W, tcon, lo, hi, out, gv, gt):
    """Euler characteristic curve chi(t_j) of a 2-D map (flat, H*W) into ``out`` (T,) int64;
    returns the integral of chi over [lo, hi] (``tidx`` from :func:`threshold_index`;
    ``gv`` float64 and ``gt`` int64 are scratch of length (H + 2) * (W + 2)).

    Cells and their values: V-construction (``tcon`` False) -- vertices = pixels, edges = max of
    the two 4-neighbours, squares = max of each 2x2 block. T-construction (``tcon`` True) --
    squares = pixels, lattice edges and vertices = min of the one to four pixels that contain
    them. chi counts vertices - edges + squares with value <= t. Every cell's value is one of
    its pixels' values, so it is counted through that pixel's threshold index.
    """
    T = out.shape[0]
    diff = np.zeros(T + 1, dtype=np.int64)
    area = 0.0
    if not tcon:
        for y in range(H):
            for x in range(W):
                p = y * W + x
                area += _cell(f, tidx, p, 1, diff, lo, hi)
                if x + 1 < W:
                    area += _cell(f, tidx, _hi(f, p, p + 1), -1, diff, lo, hi)
                if y + 1 < H:
                    area += _cell(f, tidx, _hi(f, p, p + W), -1, diff, lo, hi)
                if x + 1 < W and y + 1 < H:
                    q = _hi(f, _hi(f, p, p + 1), _hi(f, p + W, p + W + 1))
                    area += _cell(f, tidx, q, 1, diff, lo, hi)
    else:
        # pad the map with never-present pixels (value inf, threshold index T) so each lattice
        # cell reads its pixels without bounds checks; padded pixel (i, j) is pixel (i-1, j-1)
        Wp = W + 2
        for q in range(gv.shape[0]):
            gv[q] = np.inf
            gt[q] = T
        for y in range(H):
            for x in range(W):
                gv[(y + 1) * Wp + x + 1] = f[y * W + x]
                gt[(y + 1) * Wp + x + 1] = tidx[y * W + x]
        # lattice vertex (i, j) touches pixels (i-1..i, j-1..j); horizontal edge
        # (i, j)-(i, j+1) touches (i-1, j), (i, j); vertical edge (i, j)-(i+1, j) touches
        # (i, j-1), (i, j)
        for i in range(H + 1):
            for j in range(W + 1):
                ul = i * Wp + j
                ur = ul + 1
                dl = ul + Wp
                dr = dl + 1
                area += _cell(gv, gt, _lo(gv, _lo(gv, ul, ur), _lo(gv, dl, dr)), 1, diff, lo, hi)
                if j < W:
                    area += _cell(gv, gt, _lo(gv, ur, dr), -1, diff, lo, hi)
                if i < H:
                    area += _cell(gv, gt, _lo(gv, dl, dr), -1, diff, lo, hi)
                if i < H and j < W:
                    area += _cell(gv, gt, dr, 1, diff, lo, hi)
    acc = 0
    for j in range(T):
        acc += diff[j]
        out[j] = acc
    return area


@jit
def euler_3d(f, tidx, D, H, W, tcon, lo, hi, out, gv, gt):
    """Euler characteristic curve of a 3-D map (flat, D*H*W), as :func:`euler_2d` with cubes.

    A cell is a lattice point plus a set of axes it extends along (bit mask e, 8 types), of
    dimension popcount(e). V-construction: the cell at voxel (z, y, x) spans the voxels
    (z..z+ez, y..y+ey, x..x+ex); its value is their max. T-construction: the cell at lattice
    point (i, j, k) lies in the voxels (i-1..i or i, ...) -- one along an extended axis, two
    otherwise -- and its value is their min (``gv``, ``gt`` are scratch of the padded size).
    """
    T = out.shape[0]
    diff = np.zeros(T + 1, dtype=np.int64)
    area = 0.0
    if not tcon:
        for z in range(D):
            for y in range(H):
                for x in range(W):
                    for e in range(8):
                        ez = (e >> 2) & 1
                        ey = (e >> 1) & 1
                        ex = e & 1
                        if z + ez >= D or y + ey >= H or x + ex >= W:
                            continue
                        best = (z * H + y) * W + x
                        for a in range(ez + 1):
                            for b in range(ey + 1):
                                for c in range(ex + 1):
                                    q = ((z + a) * H + y + b) * W + x + c
                                    if f[q] > f[best]:
                                        best = q
                        sign = 1 - 2 * ((ez + ey + ex) & 1)
                        area += _cell(f, tidx, best, sign, diff, lo, hi)
    else:
        Hp = H + 2
        Wp = W + 2
        for q in range(gv.shape[0]):
            gv[q] = np.inf
            gt[q] = T
        for z in range(D):
            for y in range(H):
                for x in range(W):
                    pq = ((z + 1) * Hp + y + 1) * Wp + x + 1
                    gv[pq] = f[(z * H + y) * W + x]
                    gt[pq] = tidx[(z * H + y) * W + x]
        for i in range(D + 1):
            for j in range(H + 1):
                for k in range(W + 1):
                    for e in range(8):
                        ez = (e >> 2) & 1
                        ey = (e >> 1) & 1
                        ex = e & 1
                        if (ez and i == D) or (ey and j == H) or (ex and k == W):
                            continue
                        # padded voxel index of voxel (i + a - 1 + 1, ...) = (i + a, ...)
                        best = -1
                        for a in range(ez, 2):
                            for b in range(ey, 2):
                                for c in range(ex, 2):
                                    q = ((i + a) * Hp + j + b) * Wp + k + c
                                    if best < 0 or gv[q] < gv[best]:
                                        best = q
                        sign = 1 - 2 * ((ez + ey + ex) & 1)
                        area += _cell(gv, gt, best, sign, diff, lo, hi)
    acc = 0
    for j in range(T):
        acc += diff[j]
        out[j] = acc
    return area


@jit
def summaries_batch(
    F, order, D, H, W, offs, tcon, with_euler, thresholds, lo, hi, out_b0, out_chi, out_area0,
    out_areachi, out_tp,
):  # fmt: skip
    """Betti-curve summaries of B maps without keeping their diagrams.

    Per row b of F (B, P) with sort order ``order[b]``: ``out_b0[b]`` = beta0 curve at the
    thresholds, ``out_area0[b]`` = integral of beta0 over [lo, hi], ``out_tp[b]`` = total
    persistence of the finite H0 bars and, when ``with_euler``, ``out_chi[b]`` = Euler curve
    and ``out_areachi[b]`` = its integral (2-D: beta1 = beta0 - chi; 3-D: beta1 = beta0 + beta2
    - chi).
    """
    B, P = F.shape
    steps, size, pz = padded_layout(D, H, W, offs)
    fs = np.empty(P, dtype=np.float64)
    parent = np.full(size, -1, dtype=np.int64)
    rank = np.empty(size, dtype=np.int64)
    bval = np.empty(size, dtype=np.float64)
    pairs = np.empty((P, 2), dtype=np.float64)
    tidx = np.empty(P, dtype=np.int64)
    gv = np.empty(size, dtype=np.float64)  # the padded grid, reused by the Euler kernels
    gt = np.empty(size, dtype=np.int64)
    for b in range(B):
        f = F[b]
        n = h0_pairs(f, order[b], pz, H, W, steps, parent, rank, bval, fs, pairs)
        betti0_from_pairs(pairs, n, thresholds, out_b0[b])
        out_area0[b] = area_from_pairs(pairs, n, lo, hi)
        tp = 0.0
        for i in range(n - 1):
            tp += pairs[i, 1] - pairs[i, 0]
        out_tp[b] = tp
        if with_euler:
            threshold_index(f, order[b], thresholds, tidx)
            if pz == 0:
                out_areachi[b] = euler_2d(f, tidx, H, W, tcon, lo, hi, out_chi[b], gv, gt)
            else:
                out_areachi[b] = euler_3d(f, tidx, D, H, W, tcon, lo, hi, out_chi[b], gv, gt)
