"""Slow, obviously-correct reference implementations ("naive twins") for the tests.

Nothing here imports streamtopo: these are independent of the code under test.
"""

from __future__ import annotations

import numpy as np


def pairwise(X: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """Full (n, n) distance matrix computed pair by pair in float64."""
    X = np.asarray(X, dtype=np.float64)
    if metric == "precomputed":
        return X
    n = X.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            if metric == "euclidean":
                d = float(np.sqrt(np.sum((X[i] - X[j]) ** 2)))
            else:  # cosine, as 1 - cos via unit vectors
                u = X[i] / np.linalg.norm(X[i])
                v = X[j] / np.linalg.norm(X[j])
                d = float(np.sum((u - v) ** 2) / 2.0)
            D[i, j] = D[j, i] = d
    return D


def kruskal_deaths(X: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """H0 deaths by Kruskal over all pairs with an O(n) relabelling union (O(n^3) worst case)."""
    D = pairwise(X, metric)
    n = D.shape[0]
    edges = sorted((D[i, j], i, j) for i in range(n) for j in range(i + 1, n))
    comp = list(range(n))
    deaths = []
    for w, i, j in edges:
        ci, cj = comp[i], comp[j]
        if ci != cj:
            comp = [ci if c == cj else c for c in comp]
            deaths.append(w)
    return np.array(deaths, dtype=np.float64)


def betti0(X: np.ndarray, scale: float, metric: str = "euclidean") -> int:
    """Components of the graph with edges of length <= scale, by depth-first search."""
    D = pairwise(X, metric)
    n = D.shape[0]
    seen = np.zeros(n, dtype=bool)
    count = 0
    for s in range(n):
        if seen[s]:
            continue
        count += 1
        stack = [s]
        seen[s] = True
        while stack:
            u = stack.pop()
            for v in range(n):
                if not seen[v] and D[u, v] <= scale:
                    seen[v] = True
                    stack.append(v)
    return count
