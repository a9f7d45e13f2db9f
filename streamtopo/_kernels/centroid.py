"""Streaming class-centroid accumulation for CentroidMonitor.

Notation: n rows, d features, ``X`` an (n, d) float32/float64 batch; ``key`` an int64 slot per
kept row (slot = group * n_classes + label); ``sums`` an (n_slots, d) float64 accumulator,
``wsum``/``w2sum`` (n_slots,) float64 summed row weights and squared weights.

Rows are normalised as ``(x / m) / |x / m|`` with ``m = max |x|`` in float64 (as products
with the reciprocals: within a few ulps), so rows near
1e±300 neither overflow nor underflow; a row with a NaN/inf or all zeros gets scale 0 (dropped).
"""

from __future__ import annotations

import numpy as np

from ._jit import jit


@jit
def row_scales(X, out_m, out_norm):
    """Per row: ``m = max |x|`` and ``|x / m|``; both 0 for a row to drop. Returns #kept."""
    n, d = X.shape
    kept = 0
    for r in range(n):
        m = 0.0
        bad = False
        for t in range(d):
            v = abs(np.float64(X[r, t]))
            if not (v <= 1.7976931348623157e308):  # NaN or inf
                bad = True
                break
            if v > m:
                m = v
        if bad or m == 0.0:
            out_m[r] = 0.0
            out_norm[r] = 0.0
            continue
        inv = 1.0 / m
        # four partial sums break the dependency chain (fastmath stays off)
        s0 = s1 = s2 = s3 = 0.0
        t = 0
        while t + 4 <= d:
            v0 = np.float64(X[r, t]) * inv
            v1 = np.float64(X[r, t + 1]) * inv
            v2 = np.float64(X[r, t + 2]) * inv
            v3 = np.float64(X[r, t + 3]) * inv
            s0 += v0 * v0
            s1 += v1 * v1
            s2 += v2 * v2
            s3 += v3 * v3
            t += 4
        while t < d:
            v0 = np.float64(X[r, t]) * inv
            s0 += v0 * v0
            t += 1
        s = (s0 + s1) + (s2 + s3)
        out_m[r] = m
        out_norm[r] = np.sqrt(s)
        kept += 1
    return kept


@jit
def scatter_unit_rows(X, rows, m, norm, key, weight, sums, wsum, w2sum):
    """Add ``weight * unit(X[rows[k]])`` to ``sums[key[k]]`` (and the weights) for every k."""
    d = X.shape[1]
    for k in range(rows.shape[0]):
        r = rows[k]
        s = key[k]
        inv = 1.0 / m[r]
        c = weight / norm[r]
        for t in range(d):
            sums[s, t] += (np.float64(X[r, t]) * inv) * c
        wsum[s] += weight
        w2sum[s] += weight * weight


@jit
def edge_half_sq_dists(U, src, dst, out):
    """``out[k] = |U[src[k]] - U[dst[k]]|^2 / 2`` in float64 (cosine distance on unit rows)."""
    d = U.shape[1]
    for k in range(src.shape[0]):
        a = src[k]
        b = dst[k]
        s = 0.0
        for t in range(d):
            diff = U[a, t] - U[b, t]
            s += diff * diff
        out[k] = 0.5 * s


@jit
def tree_gradient(U, src, dst, factor, inv_norm, out):
    """Gradient of ``sum_k factor[k] * (1 - u_a . u_b)`` over tree edges (a, b) with respect to
    each class's un-normalised mean ``m`` (``u = m / |m|``, ``inv_norm = 1 / |m|``):
    ``d/dm_a = -factor * (u_b - (u_a . u_b) u_a) / |m_a|``. ``out`` (K, d) is overwritten."""
    d = U.shape[1]
    out[:, :] = 0.0
    for k in range(src.shape[0]):
        a = src[k]
        b = dst[k]
        c = 0.0
        for t in range(d):
            c += U[a, t] * U[b, t]
        fa = factor[k] * inv_norm[a]
        fb = factor[k] * inv_norm[b]
        for t in range(d):
            out[a, t] -= fa * (U[b, t] - c * U[a, t])
            out[b, t] -= fb * (U[a, t] - c * U[b, t])


@jit
def combine_groups(S, phi, out_phi, out_all):
    """One pass over the group sums ``S`` (R, K, d): ``out_phi[k] = sum_g phi[g, k] S[g, k]``
    and ``out_all[k] = sum_g S[g, k]`` (both (K, d), overwritten; two distinct arrays)."""
    R, K, d = S.shape
    for k in range(K):
        for t in range(d):
            out_phi[k, t] = 0.0
            out_all[k, t] = 0.0
        for g in range(R):
            p = phi[g, k]
            for t in range(d):
                v = S[g, k, t]
                out_all[k, t] += v
                if p != 0.0:
                    out_phi[k, t] += p * v


@jit
def unit_rows_into(C, out):
    """``out[k] = C[k] / |C[k]|`` computed as ``(c / m) / |c / m|`` with ``m = max |c|``."""
    K, d = C.shape
    for k in range(K):
        m = 0.0
        for t in range(d):
            v = abs(C[k, t])
            if v > m:
                m = v
        inv = 1.0 / m
        s = 0.0
        for t in range(d):
            v = C[k, t] * inv
            s += v * v
        c = inv / np.sqrt(s)
        for t in range(d):
            out[k, t] = C[k, t] * c
