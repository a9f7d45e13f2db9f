"""Per-step kernels of the layer monitor.

Notation: S signals, L layers (the points), W window (steps per point), K baseline length.
``raw`` is one step's (S, L) float64 input and ``row`` its float32 record; ``y`` the (S, L)
float64 transform of ``row``. ``T`` is the (W, S, L) ring of transformed rows (slot ``pos`` is
overwritten next), ``P`` the same window by layer, (L, W*S): row i is layer i's point. ``D`` is
the (L, L) matrix of squared distances summed over the window,
``D[i, j] = sum_{r, s} (T[r,s,i] - T[r,s,j])^2``.
Per step ``D`` gains the newest row's contribution and loses the one leaving the window
(:func:`window_push`); :func:`window_refresh` rebuilds it from ``T`` now and then to bound
rounding drift. Prim on ``D`` only *chooses* the tree: every chosen edge is re-evaluated exactly
from ``P`` (:func:`h0_dense`). Everything is deterministic, so replaying the same rows from the
same state reproduces every bit.

Non-finite values are data: ``bad[i]`` marks layer i non-finite at this step; its transformed
value is replaced by the signal's median so ``D`` stays finite, and the layer is left out of
H0 while ``nbad[i]`` (non-finite rows in its window) is positive.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import compiled, jit

__all__ = ["compiled", "layer_step"]  # compiled: to call layer_step without its dispatcher


@jit
def first_negative(row):
    """Flat index ``s * L + i`` of the first finite negative value, or -1."""
    S, L = row.shape
    for s in range(S):
        for i in range(L):
            v = row[s, i]
            if v < 0.0 and math.isfinite(v):
                return s * L + i
    return -1


@jit
def median_inplace(a, m):
    """Median of ``a[:m]`` (0 if ``m == 0``) by quickselect; reorders ``a[:m]``."""
    if m == 0:
        return 0.0
    h = m // 2
    lo, hi = 0, m - 1
    while lo < hi:  # Hoare selection of the h-th smallest into a[h]
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if h <= j:
            hi = j
        elif h >= i:
            lo = i
        else:
            break
    upper = a[h]
    if m % 2 == 1:
        return upper
    lower = a[0]
    for k in range(1, h):  # largest of the lower half
        if a[k] > lower:
            lower = a[k]
    return 0.5 * (lower + upper)


@jit
def transform_row(row, log_mode, floor_rel, y, bad, med, scratch):
    """Transform one recorded (float32) step and return the number of non-finite values.

    Log mode: ``y = log(max(v, floor_rel * max_i v))`` per signal (a step whose finite values are
    all 0 maps to 0); otherwise ``y = v``. ``med[s]`` receives the median of the signal's finite
    transformed values (0 if none); non-finite entries of ``y`` are set to it.
    """
    S, L = row.shape
    nbad_total = 0
    for i in range(L):
        bad[i] = 0
    for s in range(S):
        top = 0.0
        for i in range(L):
            v = np.float64(row[s, i])
            if math.isfinite(v) and v > top:
                top = v
        floor = floor_rel * top
        m = 0
        for i in range(L):
            v = np.float64(row[s, i])
            if not math.isfinite(v):
                bad[i] = 1
                nbad_total += 1
                continue
            if log_mode:
                if top > 0.0:
                    t = math.log(v if v > floor else floor)
                else:
                    t = 0.0
            else:
                t = v
            y[s, i] = t
            scratch[m] = t
            m += 1
        c = median_inplace(scratch, m)
        med[s] = c
        for i in range(L):
            if not math.isfinite(row[s, i]):
                y[s, i] = c
    return nbad_total


@jit
def window_push(y, bad, T, P, Tbad, nbad, D, pos, full, scratch):
    """Add row ``y`` to the window (and drop slot ``pos`` first if the window is ``full``).

    ``T`` (W, S, L) holds the window by step; ``P`` (L, W*S) the same values by layer (the
    points: slot r, signal s at column ``r * S + s``), for contiguous edge re-evaluation.

    With ``o`` the row leaving, each pair gains ``(y_i - y_j)^2 - (o_i - o_j)^2``, computed as
    ``(dl_i - dl_j) * (sm_i - sm_j)`` with ``dl = y - o`` and ``sm = y + o`` (in ``scratch``,
    (2, S, L)): one product instead of two squares. Both triangles are updated (the products
    for (i, j) and (j, i) are equal exactly, so ``D`` stays exactly symmetric) and the inner
    loop runs over contiguous memory, so it vectorises. Signals are added three per pass over
    a row of ``D`` (one load and store of ``D[i, j]`` instead of three), each addition rounded
    in the same order as one signal per pass, so the result is the same to the bit.
    Returns True when a layer's window became free of non-finite values (the caller then
    refreshes ``D``, so substituted values leave no trace).
    """
    S, L = y.shape
    if full:
        dl = scratch[0]
        sm = scratch[1]
        for s in range(S):
            for j in range(L):
                o = T[pos, s, j]
                dl[s, j] = y[s, j] - o
                sm[s, j] = y[s, j] + o
        for i in range(L):
            Di = D[i]
            s = 0
            while s < S:
                if s + 3 <= S:  # three signals per pass over Di: the same additions, in order
                    a0, a1, a2 = dl[s, i], dl[s + 1, i], dl[s + 2, i]
                    b0, b1, b2 = sm[s, i], sm[s + 1, i], sm[s + 2, i]
                    d0, d1, d2 = dl[s], dl[s + 1], dl[s + 2]
                    m0, m1, m2 = sm[s], sm[s + 1], sm[s + 2]
                    for j in range(L):
                        acc = Di[j] + (a0 - d0[j]) * (b0 - m0[j])
                        acc = acc + (a1 - d1[j]) * (b1 - m1[j])
                        Di[j] = acc + (a2 - d2[j]) * (b2 - m2[j])
                    s += 3
                else:
                    a = dl[s, i]
                    b = sm[s, i]
                    dls = dl[s]
                    sms = sm[s]
                    for j in range(L):
                        Di[j] += (a - dls[j]) * (b - sms[j])
                    s += 1
    else:
        for i in range(L):
            Di = D[i]
            for s in range(S):
                a = y[s, i]
                ys = y[s]
                for j in range(L):
                    d = a - ys[j]
                    Di[j] += d * d
    cleared = False
    for i in range(L):
        if full and Tbad[pos, i]:
            nbad[i] -= 1
            if nbad[i] == 0:
                cleared = True
        if bad[i]:
            nbad[i] += 1
        Tbad[pos, i] = bad[i]
        for s in range(S):
            T[pos, s, i] = y[s, i]
            P[i, pos * S + s] = y[s, i]
    return cleared


@jit
def window_refresh(T, rows, newest, D):
    """Rebuild ``D`` from the ``rows`` most recent slots of ``T``, oldest first."""
    W, S, L = T.shape
    D[:, :] = 0.0
    for k in range(rows):
        r = (newest - rows + 1 + k) % W
        for i in range(L):
            Di = D[i]
            for s in range(S):
                a = T[r, s, i]
                Ts = T[r, s]
                for j in range(L):
                    d = a - Ts[j]
                    Di[j] += d * d


@jit
def h0_dense(D, nbad, P, width, scale, best, near, rem):
    """Total H0 persistence of the layers with ``nbad == 0``.

    Prim on the running squared distances ``D`` picks the tree (``rem`` holds the layers not yet
    in it, ``best``/``near`` their nearest tree layer, aligned with ``rem``); every chosen edge is
    then re-evaluated directly from the first ``width`` coordinates of the points ``P`` in
    float64, so deaths carry no drift from the incremental updates (DESIGN.md "Precision").
    Each edge contributes ``sqrt(d2) * scale``.
    """
    L = D.shape[0]
    m = 0
    cur = -1
    for j in range(L):
        if nbad[j] == 0:
            if cur < 0:
                cur = j
            else:
                rem[m] = j
                best[m] = np.inf
                m += 1
    if m == 0:
        return 0.0
    total = 0.0
    while m > 0:
        Dc = D[cur]
        bk = 0
        bv = np.inf
        for k in range(m):
            s = Dc[rem[k]]
            if s < best[k]:
                best[k] = s
                near[k] = cur
            if best[k] < bv:
                bv = best[k]
                bk = k
        a = near[bk]
        b = rem[bk]
        d2 = 0.0
        Pa = P[a]
        Pb = P[b]
        for c in range(width):
            d = Pa[c] - Pb[c]
            d2 += d * d
        total += math.sqrt(d2)
        m -= 1
        rem[bk] = rem[m]
        best[bk] = best[m]
        near[bk] = near[m]
        cur = b
    return total * scale


@jit
def range_1d(y, bad):
    """max - min of the finite values of a (1, L) row: exact H0 of points on a line."""
    lo = np.inf
    hi = -np.inf
    for i in range(y.shape[1]):
        if not bad[i]:
            v = y[0, i]
            lo = min(lo, v)
            hi = max(hi, v)
    return hi - lo if hi >= lo else 0.0


@jit
def layer_scores(y, med, bad, ref, s1, s2, n, min_std, u, z, zs):
    """Per layer, the signed z-score (largest in size over signals) of its median-relative
    value ``u = y - med`` against its baseline (``n`` values summarised by ``ref``, ``s1 =
    sum(x - ref)``, ``s2 = sum((x - ref)^2)``). NaN while ``n == 0`` or the layer is bad.
    Returns the index of the layer with the largest |z| (-1 if none).

    The (S, L) z-scores are computed first into the scratch ``zs``, without branches (the loop
    vectorises: its divisions and square roots are correctly rounded either way), then
    selected per layer."""
    S, L = y.shape
    for s in range(S):
        ms = med[s]
        for i in range(L):
            u[s, i] = y[s, i] - ms
    if n > 0:
        for s in range(S):
            for i in range(L):
                m1 = s1[s, i] / n
                var = s2[s, i] / n - m1 * m1
                sd = math.sqrt(var) if var > 0.0 else 0.0
                if sd < min_std:
                    sd = min_std
                zs[s, i] = (u[s, i] - (ref[s, i] + m1)) / sd
    top = -1
    topv = -1.0
    for i in range(L):
        zi = np.nan
        if n > 0 and not bad[i]:
            for s in range(S):
                v = zs[s, i]
                if math.isnan(zi) or abs(v) > abs(zi):
                    zi = v
        z[i] = zi
        if not math.isnan(zi) and abs(zi) > topv:
            topv = abs(zi)
            top = i
    return top


@jit
def baseline_push(u, B, ref, s1, s2, pos, n, first, count):
    """Insert ``u`` at slot ``pos`` of the (K, S, L) baseline ring holding ``n`` values (dropping
    the value there when the ring is full), then recompute exactly, re-centred on their mean, the
    sums of ``count`` entries starting at flat index ``first`` (cyclically). Called with
    ``count = ceil(S * L / K)`` and ``first`` advancing by ``count`` per push, every entry is
    refreshed once per K pushes: drift stays bounded without a periodic O(K S L) spike."""
    K, S, L = B.shape
    for s in range(S):
        for i in range(L):
            if n == K:
                d = B[pos, s, i] - ref[s, i]
                s1[s, i] -= d
                s2[s, i] -= d * d
            elif n == 0:  # centre on the first value
                ref[s, i] = u[s, i]
                s1[s, i] = 0.0
                s2[s, i] = 0.0
            x = u[s, i]
            B[pos, s, i] = x
            d = x - ref[s, i]
            s1[s, i] += d
            s2[s, i] += d * d
    held = min(n + 1, K)
    for c in range(count):
        f = (first + c) % (S * L)
        s, i = f // L, f % L
        m = 0.0
        for k in range(held):
            m += B[k, s, i]
        m /= held
        a = 0.0
        b = 0.0
        for k in range(held):
            d = B[k, s, i] - m
            a += d
            b += d * d
        ref[s, i] = m
        s1[s, i] = a
        s2[s, i] = b


# -- the fused per-step call --------------------------------------------------------------------
# Work arrays are grouped so one call unboxes few arrays (numba charges ~0.1 us per array):
#   work  (7, S, L) float64: y (transformed step), u (median-relative), ref, s1, s2 (baseline),
#                            2 rows of window_push scratch
#   lvec  (3, L) float64:    sort scratch, Prim best, per-layer z
#   livec (4, L) int64:      nbad (non-finite rows in window), Prim near, Prim rem, bad (now)
#   out   (6,) float64:      code (0 ok, 1 negative value, 2 non-finite with raise), n_bad or
#                            the negative's flat index, h0, index of the largest |layer z|,
#                            1.0 if some layer is left out of H0 (non-finite in its window),
#                            that largest layer z (signed)
OK, NEGATIVE, NONFINITE = 0, 1, 2


@jit
def layer_step(raw, row, log_mode, floor_rel, raise_nonfinite, min_std, ring, ring_steps, work,
               med, lvec, livec, T, P, Tbad, D, B, chunk, out,
               ring_pos, step, pos, full, refresh_due, evaluate, scale, bn,
               push_pos, push_n, push_first):  # fmt: skip
    """Validate, record and evaluate one step. ``raw`` (S, L) float64 is rounded to the recorded
    float32 ``row``; on a negative (log mode) or non-finite (``raise_nonfinite``) value nothing
    but scratch is written and ``out[0]`` says why. Otherwise the row goes into the ring (slots
    ``ring_pos`` and ``ring_pos + capacity``) and the window, and, if ``evaluate``, h0 and the
    per-layer z-scores (baseline of ``bn`` values; NaN while ``bn == 0``) are computed.

    A baseline push decided after the previous call (``push_pos >= 0``: the previous ``u`` into
    slot ``push_pos`` of ``B``, which held ``push_n`` values) is done here, once the input is
    valid and before any z-score reads the baseline: it saves a second call per step."""
    S, L = row.shape
    for s in range(S):
        for i in range(L):
            row[s, i] = raw[s, i]
    y = work[0]
    bad = livec[3]
    if log_mode:
        k = first_negative(row)
        if k >= 0:
            out[0] = NEGATIVE
            out[1] = k
            return
    n_bad = transform_row(row, log_mode, floor_rel, y, bad, med, lvec[0])
    out[1] = n_bad
    if n_bad > 0 and raise_nonfinite:
        out[0] = NONFINITE
        return
    out[0] = OK
    if push_pos >= 0:
        baseline_push(work[1], B, work[2], work[3], work[4], push_pos, push_n, push_first, chunk)
    cap = ring.shape[1] // 2
    for s in range(S):
        for i in range(L):
            ring[s, ring_pos, i] = row[s, i]
            ring[s, ring_pos + cap, i] = row[s, i]
    ring_steps[ring_pos] = step
    ring_steps[ring_pos + cap] = step
    nbad = livec[0]
    cleared = window_push(y, bad, T, P, Tbad, nbad, D, pos, full, work[5:7])
    rows = T.shape[0] if full else pos + 1
    if cleared or refresh_due:
        window_refresh(T, rows, pos, D)
    out[4] = 0.0
    for i in range(L):
        if nbad[i] > 0:
            out[4] = 1.0
            break
    if not evaluate:
        return
    if rows * S == 1:
        out[2] = range_1d(y, bad)
    else:
        out[2] = h0_dense(D, nbad, P, rows * S, scale, lvec[1], livec[1], livec[2])
    top = layer_scores(
        y, med, bad, work[2], work[3], work[4], bn, min_std, work[1], lvec[2], work[5]
    )  # work[5]: window_push's scratch, free again
    out[3] = top
    out[5] = lvec[2, top] if top >= 0 else np.nan
