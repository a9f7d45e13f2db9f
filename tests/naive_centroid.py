"""Naive twin of CentroidMonitor's epoch-mode arithmetic, recomputed from all rows.

Independent of streamtopo: unit rows by plain division, centroids by summing the rows of each
(class, group), cosine distances by scipy's ``pdist``, H0 by scipy single linkage, the matched
coefficient by the quadratic's closed form, the noise by a central-difference gradient of H0
and the textbook one-way-ANOVA dispersion of group means.
The only shared convention is the row -> group rule (one uniform double per kept row, in order,
from ``numpy.random.default_rng(seed)``; group g holds the share 2^g / (2^R - 1) of [0, 1)),
which is part of the spec.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import linkage
from scipy.spatial.distance import pdist


def groups_for(n_rows: int, R: int, seed: int = 0) -> np.ndarray:
    """Group g takes the uniforms u with cum[g-1] <= u < cum[g], cum = shares 2^g / (2^R - 1)."""
    u = np.random.default_rng(seed).random(n_rows)
    shares = np.array([2.0**g for g in range(R)]) / (2.0**R - 1)
    cum = np.cumsum(shares)
    g = np.zeros(n_rows, dtype=int)
    for k in range(R - 1):
        g[u >= cum[k]] = k + 1
    return g


def kept(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return np.isfinite(X).all(axis=1) & (np.abs(X).sum(axis=1) > 0)


def h0_and_deaths(C: np.ndarray) -> tuple[float, np.ndarray]:
    """H0 of centroid directions under 1 - cos (scipy), deaths ascending."""
    if C.shape[0] < 2:
        return 0.0, np.zeros(0)
    Z = linkage(pdist(C, metric="cosine"), method="single")
    deaths = np.sort(Z[:, 2])
    return float(deaths.sum()), deaths


def _phi_for(counts: np.ndarray, target: float) -> np.ndarray:
    """Coefficients for one class: whole groups smallest first (ties by index), one fractional
    (closed form)."""
    R = counts.shape[0]
    phi = np.zeros(R)
    total = 0.0
    for g in np.argsort(counts, kind="stable"):
        if total + counts[g] < target * (1 - 1e-12):
            phi[g] = 1.0
            total += counts[g]
            continue
        A0, B = total, counts[g]
        if A0 == 0:
            phi[g] = 1.0
            return phi
        # (A0 + p B)^2 = t (A0 + p^2 B)  ->  (B^2 - t B) p^2 + 2 A0 B p + A0^2 - t A0 = 0
        roots = np.roots([B * B - target * B, 2 * A0 * B, A0 * A0 - target * A0])
        roots = roots[np.isreal(roots)].real
        ok = roots[(roots >= -1e-12) & (roots <= 1 + 1e-12)]
        phi[g] = float(ok.min()) if ok.size else 1.0
        return phi
    return np.ones(R)


def _unit(M):
    return M / np.linalg.norm(M, axis=1, keepdims=True)


def _side(U, y, g, classes, R, target):
    """Matched class means, their effective sizes, and the rows' group means per class."""
    means, sizes, gmeans, gcounts = [], [], [], []
    for i, c in enumerate(classes):
        counts = np.array([np.sum((y == c) & (g == r)) for r in range(R)], dtype=float)
        phi = _phi_for(counts, target[i]) if target is not None else np.ones(R)
        s = np.zeros(U.shape[1])
        gm = np.zeros((R, U.shape[1]))
        for r in range(R):
            rows = U[(y == c) & (g == r)]
            s += phi[r] * rows.sum(axis=0)
            if len(rows):
                gm[r] = rows.mean(axis=0)
        means.append(s / (phi @ counts))
        sizes.append((phi @ counts) ** 2 / (phi**2 @ counts))
        gmeans.append(gm)
        gcounts.append(counts)
    return np.array(means), np.array(sizes), gmeans, gcounts


def _h0_of_means(M):
    return h0_and_deaths(_unit(M))[0]


def _dispersion(means, gmeans, gcounts):
    """Per class: central-difference gradient of H0, ANOVA dispersion of group means along it."""
    out = []
    for c in range(means.shape[0]):
        grad = np.zeros(means.shape[1])
        for t in range(means.shape[1]):
            h = 1e-6 * np.linalg.norm(means[c])
            up, dn = means.copy(), means.copy()
            up[c, t] += h
            dn[c, t] -= h
            grad[t] = (_h0_of_means(up) - _h0_of_means(dn)) / (2 * h)
        n = gcounts[c]
        used = n > 0
        if used.sum() < 2:
            out.append(np.nan)
            continue
        tg = gmeans[c][used] @ grad
        tbar = np.sum(n[used] * tg) / n[used].sum()
        out.append(np.sum(n[used] * (tg - tbar) ** 2) / (used.sum() - 1))
    return np.array(out)


def gap(Utr, ytr, gtr, Ute, yte, gte, classes, R, matched="min"):
    """(h0_train_matched, h0_test, n_train, noise) for unit rows with group labels."""
    n_tr = np.array([np.sum(ytr == c) for c in classes], dtype=float)
    n_te = np.array([np.sum(yte == c) for c in classes], dtype=float)
    target = None if matched is None else np.minimum(n_tr, n_te)
    if isinstance(matched, int):
        target = np.minimum(target, matched)
    tr = _side(Utr, ytr, gtr, classes, R, target)
    te = _side(Ute, yte, gte, classes, R, target)
    d_tr = _dispersion(tr[0], tr[2], tr[3])
    d_te = _dispersion(te[0], te[2], te[3])
    d_tr, d_te = np.where(np.isnan(d_tr), d_te, d_tr), np.where(np.isnan(d_te), d_tr, d_te)
    noise = float(np.sqrt(np.sum(d_tr / tr[1]) + np.sum(d_te / te[1])))
    return _h0_of_means(tr[0]), _h0_of_means(te[0]), float(tr[1].sum()), noise


def monitor_check(Xtr, ytr, Xte, yte, R=8, seed=0, matched="min"):
    """Everything one epoch-mode check reports, from rows given in update order
    (all train rows first, then all test rows, as the monitor draws groups in call order)."""
    mtr, mte = kept(Xtr), kept(Xte)
    Xtr, ytr = np.asarray(Xtr, float)[mtr], np.asarray(ytr)[mtr]
    Xte, yte = np.asarray(Xte, float)[mte], np.asarray(yte)[mte]
    Utr, Ute = _unit(Xtr), _unit(Xte)
    g = groups_for(len(ytr) + len(yte), R, seed)
    gtr, gte = g[: len(ytr)], g[len(ytr) :]
    classes = sorted(set(ytr.tolist()) & set(yte.tolist()))
    h_tr, h_te, n_tr, noise = gap(Utr, ytr, gtr, Ute, yte, gte, classes, R, matched)
    full = np.array([Utr[ytr == c].sum(axis=0) for c in classes])
    h_full, deaths_full = h0_and_deaths(full)
    return {
        "h0_train": h_tr,
        "h0_test": h_te,
        "h0_gap": h_tr - h_te,
        "gap_noise": noise,
        "h0_train_full": h_full,
        "deaths_train_full": deaths_full,
        "n_train": n_tr,
        "classes": classes,
    }
