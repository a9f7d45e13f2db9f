"""Per-step kernels of the layer monitor.

Notation: S signals, L layers (the points), W window (steps per point), K baseline length.
``raw`` is one step's (S, L) float32 record; ``y`` its (S, L) float64 transform. ``T`` is the
(W, S, L) ring of transformed rows (slot ``pos`` is overwritten next) and ``D`` the (L, L)
matrix of squared distances summed over the window,
``D[i, j] = sum_{r, s} (T[r,s,i] - T[r,s,j])^2``.
Per step ``D`` gains the newest row's contribution and loses the one leaving the window
(:func:`window_push`); :func:`window_refresh` rebuilds it from ``T`` to bound rounding drift.
Both are deterministic, so replaying the same rows reproduces every bit.

Non-finite values are data: ``bad[i]`` marks layer i non-finite at this step; its transformed
value is replaced by the signal's median so ``D`` stays finite, and the layer is left out of
H0 while ``nbad[i]`` (non-finite rows in its window) is positive.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import jit


@jit
def first_negative(raw):
    """Flat index ``s * L + i`` of the first finite negative value, or -1."""
    S, L = raw.shape
    for s in range(S):
        for i in range(L):
            v = raw[s, i]
            if v < 0.0 and math.isfinite(v):
                return s * L + i
    return -1


@jit
def transform_row(raw, log_mode, floor_rel, y, bad, med, scratch):
    """Transform one step and return the number of non-finite values.

    Log mode: ``y = log(max(v, floor_rel * max_i v))`` per signal (a step whose finite values are
    all 0 maps to 0); otherwise ``y = v``. ``med[s]`` receives the median of the signal's finite
    transformed values (0 if none); non-finite entries of ``y`` are set to it.
    """
    S, L = raw.shape
    nbad_total = 0
    for i in range(L):
        bad[i] = False
    for s in range(S):
        top = 0.0
        for i in range(L):
            v = raw[s, i]
            if math.isfinite(v) and v > top:
                top = v
        floor = floor_rel * np.float64(top)
        m = 0
        for i in range(L):
            v = np.float64(raw[s, i])
            if not math.isfinite(v):
                bad[i] = True
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
        if m == 0:
            c = 0.0
        else:
            part = scratch[:m]
            part.sort()
            h = m // 2
            c = part[h] if m % 2 == 1 else 0.5 * (part[h - 1] + part[h])
        med[s] = c
        for i in range(L):
            if not math.isfinite(raw[s, i]):
                y[s, i] = c
    return nbad_total


@jit
def window_push(y, bad, T, Tbad, nbad, D, pos, full):
    """Add row ``y`` to the window (and drop slot ``pos`` first if the window is ``full``).

    Returns True when a layer's window became free of non-finite values (the caller then
    refreshes ``D``, so substituted values leave no trace).
    """
    S, L = y.shape
    for i in range(L):
        for s in range(S):
            a = y[s, i]
            if full:
                b = T[pos, s, i]
                for j in range(i + 1, L):
                    d = a - y[s, j]
                    e = b - T[pos, s, j]
                    D[i, j] += d * d - e * e
            else:
                for j in range(i + 1, L):
                    d = a - y[s, j]
                    D[i, j] += d * d
    for i in range(L):
        for j in range(i + 1, L):
            D[j, i] = D[i, j]
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
    return cleared


@jit
def window_refresh(T, rows, newest, D):
    """Rebuild ``D`` from the ``rows`` most recent slots of ``T``, oldest first."""
    W, S, L = T.shape
    D[:, :] = 0.0
    for k in range(rows):
        r = (newest - rows + 1 + k) % W
        for i in range(L):
            for s in range(S):
                a = T[r, s, i]
                for j in range(i + 1, L):
                    d = a - T[r, s, j]
                    D[i, j] += d * d
    for i in range(L):
        for j in range(i + 1, L):
            D[j, i] = D[i, j]


@jit
def h0_dense(D, nbad, T, rows, newest, scale, best, near, done):
    """Total H0 persistence of the layers with ``nbad == 0``.

    Prim on the running squared distances ``D`` picks the tree; every chosen edge is then
    re-evaluated directly from the window (``rows`` slots of ``T`` ending at ``newest``) in
    float64, so deaths carry no drift from the incremental updates (DESIGN.md "Precision").
    Each edge contributes ``sqrt(d2) * scale``.
    """
    L = D.shape[0]
    W, S = T.shape[0], T.shape[1]
    start = -1
    valid = 0
    for j in range(L):
        done[j] = nbad[j] > 0
        best[j] = np.inf
        if not done[j]:
            valid += 1
            if start < 0:
                start = j
    if valid < 2:
        return 0.0
    done[start] = True
    cur = start
    total = 0.0
    for _ in range(valid - 1):
        bi = -1
        bv = np.inf
        for j in range(L):
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
        a = near[bi]
        d2 = 0.0
        for k in range(rows):
            r = (newest - k) % W
            for s in range(S):
                d = T[r, s, a] - T[r, s, bi]
                d2 += d * d
        total += math.sqrt(d2)
        cur = bi
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
def layer_scores(y, med, bad, ref, s1, s2, n, min_std, u, z):
    """Per layer, the signed z-score (largest in size over signals) of its median-relative
    value ``u = y - med`` against its baseline (``n`` values summarised by ``ref``, ``s1 =
    sum(x - ref)``, ``s2 = sum((x - ref)^2)``). NaN while ``n == 0`` or the layer is bad.
    Returns the index of the layer with the largest |z| (-1 if none)."""
    S, L = y.shape
    top = -1
    topv = -1.0
    for i in range(L):
        zi = np.nan
        for s in range(S):
            u[s, i] = y[s, i] - med[s]
            if n > 0 and not bad[i]:
                m1 = s1[s, i] / n
                var = s2[s, i] / n - m1 * m1
                sd = math.sqrt(var) if var > 0.0 else 0.0
                if sd < min_std:
                    sd = min_std
                zs = (u[s, i] - (ref[s, i] + m1)) / sd
                if math.isnan(zi) or abs(zs) > abs(zi):
                    zi = zs
        z[i] = zi
        if not math.isnan(zi) and abs(zi) > topv:
            topv = abs(zi)
            top = i
    return top


@jit
def baseline_push(u, B, ref, s1, s2, pos, n):
    """Insert ``u`` at slot ``pos`` of the (K, S, L) baseline ring holding ``n`` values,
    dropping the value there when the ring is full."""
    K, S, L = B.shape
    for s in range(S):
        for i in range(L):
            if n == K:
                d = B[pos, s, i] - ref[s, i]
                s1[s, i] -= d
                s2[s, i] -= d * d
            x = u[s, i]
            B[pos, s, i] = x
            d = x - ref[s, i]
            s1[s, i] += d
            s2[s, i] += d * d


@jit
def baseline_refresh(B, n, ref, s1, s2):
    """Recompute the sums of the ``n`` held values exactly, re-centred on their mean."""
    S, L = B.shape[1], B.shape[2]
    for s in range(S):
        for i in range(L):
            m = 0.0
            for k in range(n):
                m += B[k, s, i]
            m /= max(n, 1)
            a = 0.0
            b = 0.0
            for k in range(n):
                d = B[k, s, i] - m
                a += d
                b += d * d
            ref[s, i] = m
            s1[s, i] = a
            s2[s, i] = b
