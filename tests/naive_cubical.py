"""Slow references for cubical sublevel sets (independent of streamtopo).

Components are counted by breadth-first flood fill; the Euler characteristic by listing every
cell of the cubical complex with its value, one at a time.
"""

from __future__ import annotations

from collections import deque
from itertools import product

import numpy as np


def _neighbours(ndim: int, full: bool) -> list[tuple[int, ...]]:
    out = []
    for d in product((-1, 0, 1), repeat=ndim):
        m = sum(abs(v) for v in d)
        if m == 0 or (not full and m > 1):
            continue
        out.append(d)
    return out


def betti0(img: np.ndarray, t: float, full: bool) -> int:
    """Connected components of {img <= t} (8/26-connected if ``full``, else 4/6)."""
    img = np.asarray(img, dtype=float)
    on = img <= t
    seen = np.zeros_like(on)
    count = 0
    nb = _neighbours(img.ndim, full)
    for start in zip(*np.nonzero(on), strict=True):
        if seen[start]:
            continue
        count += 1
        seen[start] = True
        queue = deque([start])
        while queue:
            p = queue.popleft()
            for d in nb:
                q = tuple(a + b for a, b in zip(p, d, strict=True))
                if all(0 <= q[i] < img.shape[i] for i in range(img.ndim)) and on[q] and not seen[q]:
                    seen[q] = True
                    queue.append(q)
    return count


def euler_2d(img: np.ndarray, t: float, full: bool) -> int:
    """chi of the 2-D sublevel complex at t: T-construction if ``full``, else V-construction."""
    img = np.asarray(img, dtype=float)
    H, W = img.shape
    chi = 0
    if full:

        def pix(i: int, j: int) -> float:
            return img[i, j] if 0 <= i < H and 0 <= j < W else np.inf

        for i in range(H + 1):
            for j in range(W + 1):
                chi += min(pix(i - 1, j - 1), pix(i - 1, j), pix(i, j - 1), pix(i, j)) <= t
                if j < W:
                    chi -= min(pix(i - 1, j), pix(i, j)) <= t
                if i < H:
                    chi -= min(pix(i, j - 1), pix(i, j)) <= t
                if i < H and j < W:
                    chi += img[i, j] <= t
        return int(chi)
    for i in range(H):
        for j in range(W):
            chi += img[i, j] <= t
            if j + 1 < W:
                chi -= max(img[i, j], img[i, j + 1]) <= t
            if i + 1 < H:
                chi -= max(img[i, j], img[i + 1, j]) <= t
            if i + 1 < H and j + 1 < W:
                chi += img[i : i + 2, j : j + 2].max() <= t
    return int(chi)
