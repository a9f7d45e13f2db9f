"""Dynamic minimum spanning tree of a point cloud under point moves (sparse edits).

Notation: n points, d dims, ``Q`` the (n, d) float64 rows exactly as the weight formula reads them,
k moved rows (set M), U the unmoved rows, T the old minimum spanning tree, F the *surviving edges*
(T minus every edge touching a moved row), the *pieces* the components of F on U (connected
subtrees of T), E(M) every edge touching a moved row, X every edge between two different pieces.
A *key* is the number Prim compares: the squared distance of two ``Q`` rows, summed over the
coordinates in order (``topology.h0.mst_unsorted``), or ``|x_i - x_j|`` on the 1-D path. Keys of
unmoved pairs are bitwise unchanged by an update, so every comparison below is exact.

Why the repair is exact (the new tree is a minimum spanning tree of the complete graph on the
new points, for the float64 keys, hence its sorted weights equal any from-scratch MST's):

1. ``MST(G_new) = MST(MSF(G[U]) ∪ E(M))``: an edge among U that is not in the minimum spanning
   forest of G[U] is a maximum on a cycle inside G[U] (cycle property), and G[U]'s keys did not
   change.
2. ``F`` lies in some MSF of G[U]: each f in F is a lightest old edge across the cut T - f (cycle
   property of T), the keys inside U did not change, and no other F edge crosses that cut, so
   the generic MST argument adds the F edges one by one. Hence
   ``MSF(G[U]) = F ∪ MST(G[U] / F)``, and in the contracted graph only the lightest edge between
   two pieces (their closest pair) can be used. Edges *inside* a piece are never needed; edges
   *between* pieces are, because their old T-path runs through a moved row: reconnecting the
   pieces cannot use the surviving edges alone.
3. Let H = F ∪ E(M) and T' = MSF(H), by Kruskal over H less the edges (m, v) that are a
   maximum on a cycle m - v - (F) - v* - m, v* the closest row to m in v's piece (still an MSF
   of H, from a few edges per moved row and piece instead of n). An X edge (a, b), a in A, b in
   B, can be dropped when its key is >= the minimax weight of a path from a to b in H: it is
   then a maximum on a cycle of H ∪ {ab}, and H is kept whole. Its key is
   >= ``LB = max(p_a, seg, q_b)`` by the cycle property in the old T, where ``p_a`` is the
   largest F-edge from a to the vertex x where A's T-path towards B leaves A, ``seg`` the
   largest removed edge on the T-path between the pieces, and ``q_b`` is ``p_a``'s twin from
   the entry vertex y of B. The path a -> x (in F) -> y (minimax in T') -> b (in F) gives
   ``UB = max(p_a, g, q_b)`` with ``g`` the minimax weight from x to y in T'. So the pair of
   pieces is skipped when ``g <= seg``; otherwise only rows with ``p_a < g`` and ``q_b < g`` are
   paired, and the lightest of those edges is kept if it is below g (the closest pair of A and
   B is either among them or droppable; an extra edge does no harm). A final Kruskal over
   T' ∪ (kept edges) then holds an MST of the complete graph: the candidate set contains one,
   and an MST of a subgraph that contains an MST of G has G's sorted weights (both are the
   lexicographically smallest sorted weight vectors; only comparisons of keys are involved).

Removing rows (``drop=True``) is the same argument with E(M) empty. The kernels never validate;
the monitor does. ``max_work`` bounds the distance evaluations of one repair: past it the kernel
returns -1 and the caller rebuilds from scratch.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit
from .unionfind import kruskal, uf_find, uf_init, uf_union

# Memory cap (entries of the per-exit minimax tables, or candidate edges) before the repair gives
# up and the caller rebuilds: 2**24 float64 = 128 MiB, reached only when many pieces meet a huge
# piece (a hub of duplicates moves) or when the work budget is disabled.
_MAX_TABLE = 1 << 24


@jit
def edge_key(Q, i, j, absdiff):
    """Key of edge (i, j): ``|Q[i,0] - Q[j,0]|`` if ``absdiff`` else the squared distance."""
    if absdiff:
        return abs(Q[i, 0] - Q[j, 0])
    s = 0.0
    for t in range(Q.shape[1]):
        diff = Q[i, t] - Q[j, t]
        s += diff * diff
    return s


@jit
def key_to_weight(key, sqrt_mode, mul):
    """Death time of a key: ``sqrt(key) * mul`` (Euclidean, d > 1) or ``key * mul``."""
    if sqrt_mode:
        return math.sqrt(key) * mul
    return key * mul


@jit
def _csr(n, a, b, m):
    """Adjacency of the undirected edges ``(a[e], b[e])``, e < m: ``head``, ``nbr``, ``eid``."""
    head = np.zeros(n + 1, dtype=np.int64)
    for e in range(m):
        head[a[e] + 1] += 1
        head[b[e] + 1] += 1
    for i in range(n):
        head[i + 1] += head[i]
    pos = head[:-1].copy()
    nbr = np.empty(2 * m, dtype=np.int64)
    eid = np.empty(2 * m, dtype=np.int64)
    for e in range(m):
        u = a[e]
        v = b[e]
        nbr[pos[u]] = v
        eid[pos[u]] = e
        pos[u] += 1
        nbr[pos[v]] = u
        eid[pos[v]] = e
        pos[v] += 1
    return head, nbr, eid


@jit
def _minimax_from(x, head, nbr, eid, w, val, stamp, gen, stack):
    """Largest edge weight on the forest path from x to every vertex x reaches.

    Writes ``val[v]`` and sets ``stamp[v] = gen`` for each reached v (``val[x] = -inf``).
    """
    stack[0] = x
    _minimax_many(1, head, nbr, eid, w, val, stamp, gen, stack)


@jit
def _minimax_many(ns, head, nbr, eid, w, val, stamp, gen, stack):
    """As :func:`_minimax_from` from the ``ns`` sources in ``stack[:ns]``, each in its own tree
    of the forest (one call instead of one per tree: calls passing arrays cost refcounting)."""
    for i in range(ns):
        stamp[stack[i]] = gen
        val[stack[i]] = -np.inf
    top = ns
    while top > 0:
        top -= 1
        u = stack[top]
        for p in range(head[u], head[u + 1]):
            v = nbr[p]
            if stamp[v] == gen:
                continue
            stamp[v] = gen
            wv = w[eid[p]]
            val[v] = wv if wv > val[u] else val[u]
            stack[top] = v
            top += 1


@jit
def _grow(a, need):
    """``a`` if it holds ``need`` items, else a copy with at least double the room (any dtype:
    numba compiles one specialisation per array type)."""
    if need <= a.shape[0]:
        return a
    b = np.empty(max(2 * a.shape[0], need), dtype=a.dtype)
    b[: a.shape[0]] = a
    return b


@jit
def _kruskal_into(n, s, d, w, m, out_src, out_dst, out_key):
    order = np.argsort(w[:m], kind="mergesort")
    return kruskal(n, s[:m], d[:m], w[:m], order, out_src, out_dst, out_key)


@jit
def _moved_index(moved):
    """``midx[v]``: rank of row v among the moved rows (-1 if unmoved); ``mlist``: the inverse."""
    n = moved.shape[0]
    k = 0
    midx = np.full(n, -1, dtype=np.int64)
    for v in range(n):
        if moved[v]:
            midx[v] = k
            k += 1
    mlist = np.empty(k, dtype=np.int64)
    for v in range(n):
        if moved[v]:
            mlist[midx[v]] = v
    return midx, mlist


@jit
def _split_tree(tsrc, tdst, tkey, moved):
    """Split T into surviving edges F (``fs, fd, fk``, nf) and removed edges R (``rs, rd, rk``)."""
    m_old = tsrc.shape[0]
    fs = np.empty(m_old, dtype=np.int64)
    fd = np.empty(m_old, dtype=np.int64)
    fk = np.empty(m_old, dtype=np.float64)
    rs = np.empty(m_old, dtype=np.int64)
    rd = np.empty(m_old, dtype=np.int64)
    rk = np.empty(m_old, dtype=np.float64)
    nf = 0
    nr = 0
    for e in range(m_old):
        if moved[tsrc[e]] or moved[tdst[e]]:
            rs[nr] = tsrc[e]
            rd[nr] = tdst[e]
            rk[nr] = tkey[e]
            nr += 1
        else:
            fs[nf] = tsrc[e]
            fd[nf] = tdst[e]
            fk[nf] = tkey[e]
            nf += 1
    return fs, fd, fk, nf, rs, rd, rk, nr


@jit
def _pieces(moved, fs, fd, nf):
    """Pieces: ``comp[v]``, the component of F holding unmoved row v (-1 for moved rows)."""
    n = moved.shape[0]
    parent, size = uf_init(n)
    for e in range(nf):
        uf_union(parent, size, fs[e], fd[e])
    comp = np.full(n, -1, dtype=np.int64)
    label = np.full(n, -1, dtype=np.int64)
    c = 0
    for v in range(n):
        if moved[v]:
            continue
        r = uf_find(parent, v)
        if label[r] < 0:
            label[r] = c
            c += 1
        comp[v] = label[r]
    return comp, c


@jit
def _skeleton_ends(c, comp, midx, moved, rs, rd, nr):
    """Ends of the skeleton's edges: T with every piece contracted (nodes: pieces 0..c-1, moved
    rows c..c+k-1); its edges are the removed edges R."""
    sa = np.empty(nr, dtype=np.int64)
    sb = np.empty(nr, dtype=np.int64)
    for e in range(nr):
        u = rs[e]
        v = rd[e]
        sa[e] = c + midx[u] if moved[u] else comp[u]
        sb[e] = c + midx[v] if moved[v] else comp[v]
    return sa, sb


@jit
def _exits(moved, rs, rd, nr):
    """Exit vertices: unmoved endpoints of removed edges, one ``slot`` each (``ex[slot]``)."""
    n = moved.shape[0]
    slot = np.full(n, -1, dtype=np.int64)
    ex = np.empty(2 * nr, dtype=np.int64)
    nx = 0
    for e in range(nr):
        for u in (rs[e], rd[e]):
            if not moved[u] and slot[u] < 0:
                slot[u] = nx
                ex[nx] = u
                nx += 1
    return slot, ex, nx


@jit
def _piece_members(comp, c, k):
    """Members of each piece, contiguous: piece a holds ``pmem[phead[a]:phead[a + 1]]``."""
    n = comp.shape[0]
    phead = np.zeros(c + 1, dtype=np.int64)
    for v in range(n):
        if comp[v] >= 0:
            phead[comp[v] + 1] += 1
    for i in range(c):
        phead[i + 1] += phead[i]
    fill = phead[:-1].copy()
    pmem = np.empty(n - k, dtype=np.int64)
    for v in range(n):
        if comp[v] >= 0:
            pmem[fill[comp[v]]] = v
            fill[comp[v]] += 1
    return phead, pmem


@jit
def _exit_bases(ex, nx, comp, phead):
    """Offsets of each exit slot's table (one entry per member of the exit's piece)."""
    base = np.empty(nx + 1, dtype=np.int64)
    base[0] = 0
    for s in range(nx):
        a = comp[ex[s]]
        base[s + 1] = base[s] + phead[a + 1] - phead[a]
    return base


@jit
def _moved_edges(Q, absdiff, moved, midx, mlist, comp, c, fs, fd, fk, nf, f_csr, work):
    """H = F ∪ E(M), every edge touching a moved row evaluated once, less the edges (m, v) with
    v in piece A that are no lighter than both m's closest edge into A, (m, v*), and the largest
    F-edge between v and v* (a maximum on the cycle m - v - (F) - v* - m, whose other edges all
    stay). ``work = (val, stamp, stack, gen)`` are the minimax scratch arrays and counter.
    Returns ``hs, hd, hk, p, gen``."""
    n = Q.shape[0]
    k = mlist.shape[0]
    f_head, f_nbr, f_eid = f_csr
    val, stamp, stack, gen = work
    cap = nf + 4 * k * (c + k) + 16
    hs = np.empty(cap, dtype=np.int64)
    hd = np.empty(cap, dtype=np.int64)
    hk = np.empty(cap, dtype=np.float64)
    hs[:nf] = fs[:nf]
    hd[:nf] = fd[:nf]
    hk[:nf] = fk[:nf]
    p = nf
    kv = np.empty(n, dtype=np.float64)
    near = np.full(c, -1, dtype=np.int64)
    for a in range(k):
        mv = mlist[a]
        near[:] = -1
        for v in range(n):  # tight loop first: it is the hot one
            kv[v] = edge_key(Q, mv, v, absdiff)
        # (Arrays grow once per moved row, not per edge: a call returning an array costs
        # reference counting, which showed up as half the time of this stage.)
        hs = _grow(hs, p + n)
        hd = _grow(hd, p + n)
        hk = _grow(hk, p + n)
        for v in range(n):
            if moved[v]:
                if midx[v] > a:  # moved-moved edges: all kept
                    hs[p] = mv
                    hd[p] = v
                    hk[p] = kv[v]
                    p += 1
                continue
            kk = kv[v]
            A = comp[v]
            if near[A] < 0 or kk < kv[near[A]]:
                near[A] = v
        stack[:c] = near
        gen += 1
        _minimax_many(c, f_head, f_nbr, f_eid, fk, val, stamp, gen, stack)
        for v in range(n):
            if moved[v] or not (v == near[comp[v]] or kv[v] < val[v]):
                continue
            hs[p] = mv
            hd[p] = v
            hk[p] = kv[v]
            p += 1
    return hs, hd, hk, p, gen


@jit
def _segments(c, S, s_csr, sa, rs, rd, rk):
    """``seg[A, B]``: largest removed edge on the T-path between pieces A and B; ``exv[A, B]``:
    the vertex of A where that path leaves A (a walk over the skeleton from every piece)."""
    shead, snbr, seid = s_csr
    seg = np.empty((c, c), dtype=np.float64)
    exv = np.full((c, c), -1, dtype=np.int64)
    st_node = np.empty(S, dtype=np.int64)
    st_max = np.empty(S, dtype=np.float64)
    st_exit = np.empty(S, dtype=np.int64)
    seen = np.full(S, -1, dtype=np.int64)
    for A in range(c):
        top = 1
        st_node[0] = A
        st_max[0] = -np.inf
        st_exit[0] = -1
        seen[A] = A
        while top > 0:
            top -= 1
            u = st_node[top]
            mx = st_max[top]
            xv = st_exit[top]
            if u < c and u != A:
                seg[A, u] = mx
                exv[A, u] = xv
            for q in range(shead[u], shead[u + 1]):
                v = snbr[q]
                if seen[v] == A:
                    continue
                seen[v] = A
                e = seid[q]
                st_node[top] = v
                st_max[top] = rk[e] if rk[e] > mx else mx
                if xv >= 0:
                    st_exit[top] = xv
                else:
                    st_exit[top] = rs[e] if sa[e] == A else rd[e]
                top += 1
    return seg, exv


@jit
def _exit_minimax(ex, nx, comp, phead, pmem, base, fk, f_csr, work):
    """Per exit slot: the minimax in F from the exit to every member of its piece (``pf``)."""
    f_head, f_nbr, f_eid = f_csr
    val, stamp, stack, gen = work
    pf = np.empty(base[nx], dtype=np.float64)
    for s in range(nx):
        x = ex[s]
        a = comp[x]
        gen += 1
        _minimax_from(x, f_head, f_nbr, f_eid, fk, val, stamp, gen, stack)
        for i in range(phead[a], phead[a + 1]):
            pf[base[s] + i - phead[a]] = val[pmem[i]]
    return pf


@jit
def _tree_minimax(n, ex, nx, t_src, t_dst, t_key, nt):
    """Minimax in T' between exits: replay T' in merge order (Kruskal wrote it sorted); when
    two groups join at weight w, every exit of one meets every exit of the other at w."""
    mm = np.full((nx, nx), np.inf)
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    nxt = np.full(nx, -1, dtype=np.int64)
    for s in range(nx):
        mm[s, s] = -np.inf
        first[ex[s]] = s
        last[ex[s]] = s
    parent2, size2 = uf_init(n)
    for e in range(nt):
        ra = uf_find(parent2, t_src[e])
        rb = uf_find(parent2, t_dst[e])
        if ra == rb:
            continue
        s1 = first[ra]
        while s1 >= 0:
            s2 = first[rb]
            while s2 >= 0:
                mm[s1, s2] = t_key[e]
                mm[s2, s1] = t_key[e]
                s2 = nxt[s2]
            s1 = nxt[s1]
        r = uf_union(parent2, size2, ra, rb)
        o = rb if r == ra else ra
        if first[o] >= 0:
            if first[r] >= 0:
                nxt[last[r]] = first[o]
                last[r] = last[o]
            else:
                first[r] = first[o]
                last[r] = last[o]
    return mm


@jit
def _piece_pairs(c, slot, exv, seg, mm, phead, pf, base):
    """Which piece pairs need between-piece edges (``pair_a``, ``pair_b``, npairs), and how
    many evaluations they cost."""
    pair_a = np.empty(c * (c - 1) // 2, dtype=np.int64)
    pair_b = np.empty(c * (c - 1) // 2, dtype=np.int64)
    npairs = 0
    cost = 0
    for A in range(c):
        for B in range(A + 1, c):
            sx = slot[exv[A, B]]
            sy = slot[exv[B, A]]
            g = mm[sx, sy]
            if g <= seg[A, B]:
                continue
            na = 0
            for i in range(phead[A + 1] - phead[A]):
                if pf[base[sx] + i] < g:
                    na += 1
            nb = 0
            for i in range(phead[B + 1] - phead[B]):
                if pf[base[sy] + i] < g:
                    nb += 1
            cost += na * nb
            pair_a[npairs] = A
            pair_b[npairs] = B
            npairs += 1
    return pair_a, pair_b, npairs, cost


@jit
def _between_edges(Q, absdiff, pairs, slot, exv, mm, pieces, tree):
    """Evaluate the remaining between-piece edges and keep the lightest of each pair of pieces
    (if below g), appended to T'. ``pieces = (phead, pmem, pf, base)``, ``tree = (t_src, t_dst,
    t_key, nt)``. Returns ``xs, xd, xk, m, evals``."""
    pair_a, pair_b, npairs = pairs
    phead, pmem, pf, base = pieces
    t_src, t_dst, t_key, nt = tree
    n = Q.shape[0]
    evals = 0
    xs = np.empty(nt + npairs, dtype=np.int64)
    xd = np.empty(nt + npairs, dtype=np.int64)
    xk = np.empty(nt + npairs, dtype=np.float64)
    xs[:nt] = t_src[:nt]
    xd[:nt] = t_dst[:nt]
    xk[:nt] = t_key[:nt]
    m = nt
    la = np.empty(n, dtype=np.int64)
    lb = np.empty(n, dtype=np.int64)
    for t in range(npairs):
        A = pair_a[t]
        B = pair_b[t]
        sx = slot[exv[A, B]]
        sy = slot[exv[B, A]]
        g = mm[sx, sy]
        na = 0
        for i in range(phead[A + 1] - phead[A]):
            if pf[base[sx] + i] < g:
                la[na] = pmem[phead[A] + i]
                na += 1
        nb = 0
        for i in range(phead[B + 1] - phead[B]):
            if pf[base[sy] + i] < g:
                lb[nb] = pmem[phead[B] + i]
                nb += 1
        evals += na * nb
        best = np.inf
        bu = -1
        bv = -1
        for i in range(na):
            u = la[i]
            for j in range(nb):
                v = lb[j]
                kk = edge_key(Q, u, v, absdiff)
                if kk < best:
                    best = kk
                    bu = u
                    bv = v
        if best < g:
            xs[m] = bu
            xd[m] = bv
            xk[m] = best
            m += 1
    return xs, xd, xk, m, evals


@jit
def msf_update(
    Q, absdiff, drop, tsrc, tdst, tkey, moved, max_work, step_cost, out_src, out_dst, out_key, stats
):
    """Repair the minimum spanning tree ``(tsrc, tdst, tkey)`` after the rows flagged in ``moved``
    changed (``drop=False``; ``Q`` holds their new coordinates) or were deleted (``drop=True``).

    ``tsrc``, ``tdst``, ``tkey`` must be an exact MST of the unflagged rows' old keys plus, for
    rows not flagged, edges to flagged rows (rows added at the end may have no tree edge yet).
    Writes the new tree into ``out_*`` (length >= n - 1) and returns its edge count, or -1 when
    the repair would need more than ``max_work`` distance evaluations (the caller rebuilds);
    bookkeeping steps are charged at ``step_cost`` evaluations each.
    ``stats`` (int64, length 4) receives: distance evaluations, pieces, piece pairs paired,
    between-piece edges kept (at most one per pair).

    The stages are kernels of their own (``_split_tree``, ``_pieces``, ... ``_between_edges``);
    this function sequences them and checks the work budget between them.
    """
    n = Q.shape[0]
    stats[:] = 0
    midx, mlist = _moved_index(moved)
    k = mlist.shape[0]
    fs, fd, fk, nf, rs, rd, rk, nr = _split_tree(tsrc, tdst, tkey, moved)
    comp, c = _pieces(moved, fs, fd, nf)
    stats[1] = c
    S = c + k
    sa, sb = _skeleton_ends(c, comp, midx, moved, rs, rd, nr)
    s_csr = _csr(S, sa, sb, nr)
    slot, ex, nx = _exits(moved, rs, rd, nr)
    phead, pmem = _piece_members(comp, c, k)
    base = _exit_bases(ex, nx, comp, phead)
    if c > 1 and base[nx] + nx * nx + c * c > _MAX_TABLE:
        return -1
    # Work is charged in distance evaluations before it is done, in three stages, so that an
    # abandoned repair has spent at most 3/8 of the budget: (A) the moved rows' edges and their
    # tree walks, at most 1/4 of it; (B) the tables for the pieces, at most 1/8; (C) the
    # between-piece pairs, the rest. A tree-walk step counts 2 * step_cost, a table entry or
    # scan step step_cost, a pair of pieces 2 evaluations of overhead (measured at d = 64: a
    # tree-walk step takes 0.22 of a distance evaluation).
    # Stage (B) is costed before (A) is done: many pieces abandon the repair at no cost.
    steps = 2 * base[nx] + nx * nx + n + c * S + 2 * (c - 1) * (n - k)
    charged_b = steps * step_cost + 2.0 * (c * (c - 1) // 2)
    if c > 1 and 8.0 * charged_b > max_work:
        return -1
    # Stage (A): H = F ∪ E(M) (see _moved_edges).
    ne = 0 if drop else k * (n - k) + (k * (k - 1)) // 2
    charged = ne + 2.0 * step_cost * (0 if drop else k * (n - k))
    if 4.0 * charged > max_work or ne > _MAX_TABLE:
        return -1
    f_csr = _csr(n, fs, fd, nf)
    val = np.empty(n, dtype=np.float64)
    stamp = np.zeros(n, dtype=np.int64)
    stack = np.empty(n, dtype=np.int64)
    gen = 0
    if drop:
        hs, hd, hk, p = fs, fd, fk, nf
    else:
        hs, hd, hk, p, gen = _moved_edges(
            Q, absdiff, moved, midx, mlist, comp, c, fs, fd, fk, nf, f_csr, (val, stamp, stack, gen)
        )
    evals = ne
    stats[0] = evals
    charged += charged_b
    t_src = np.empty(max(n - 1, 0), dtype=np.int64)
    t_dst = np.empty(max(n - 1, 0), dtype=np.int64)
    t_key = np.empty(max(n - 1, 0), dtype=np.float64)
    nt = _kruskal_into(n, hs, hd, hk, p, t_src, t_dst, t_key)
    if c <= 1:
        out_src[:nt] = t_src[:nt]
        out_dst[:nt] = t_dst[:nt]
        out_key[:nt] = t_key[:nt]
        return nt

    # Stage (B): the tables for the pieces.
    seg, exv = _segments(c, S, s_csr, sa, rs, rd, rk)
    pf = _exit_minimax(ex, nx, comp, phead, pmem, base, fk, f_csr, (val, stamp, stack, gen))
    mm = _tree_minimax(n, ex, nx, t_src, t_dst, t_key, nt)
    pair_a, pair_b, npairs, cost = _piece_pairs(c, slot, exv, seg, mm, phead, pf, base)
    if charged + cost + 2.0 * npairs > max_work:
        return -1
    stats[2] = npairs

    # Stage (C): the between-piece edges.
    xs, xd, xk, m, more = _between_edges(
        Q, absdiff, (pair_a, pair_b, npairs), slot, exv, mm, (phead, pmem, pf, base),
        (t_src, t_dst, t_key, nt),
    )  # fmt: skip
    stats[0] = evals + more
    stats[3] = m - nt
    return _kruskal_into(n, xs, xd, xk, m, out_src, out_dst, out_key)


@jit
def tree_keys(Q, src, dst, absdiff, out):
    """Keys of the edges ``(src[e], dst[e])`` (to re-key a tree built by ``mst_unsorted``)."""
    for e in range(src.shape[0]):
        out[e] = edge_key(Q, src[e], dst[e], absdiff)


@jit
def gradient_pairs(n, src, dst, out_vertex):
    """Discrete gradient pairing of H0: for edges in merge order, the vertex each edge kills.

    All births are 0, so the elder of two merging components is the one whose representative
    (its smallest vertex) is smaller; the other representative is paired with the edge.
    """
    parent, size = uf_init(n)
    rep = np.arange(n, dtype=np.int64)
    for e in range(src.shape[0]):
        ra = uf_find(parent, src[e])
        rb = uf_find(parent, dst[e])
        a = rep[ra]
        b = rep[rb]
        r = uf_union(parent, size, ra, rb)
        if a < b:
            out_vertex[e] = b
            rep[r] = a
        else:
            out_vertex[e] = a
            rep[r] = b


@jit
def count_within(Q, absdiff, sqrt_mode, mul, eps, touching):
    """Pairs i < j with weight <= eps; only pairs with a row flagged in ``touching`` when any
    row is flagged there (pass an all-False array for every pair)."""
    n = Q.shape[0]
    any_flag = False
    for v in range(n):
        if touching[v]:
            any_flag = True
            break
    count = 0
    for i in range(n):
        if any_flag and not touching[i]:
            continue
        for j in range(n):
            if j == i or (j < i and (touching[j] or not any_flag)):
                continue  # each unordered pair once
            if key_to_weight(edge_key(Q, i, j, absdiff), sqrt_mode, mul) <= eps:
                count += 1
    return count
