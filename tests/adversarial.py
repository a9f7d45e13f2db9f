"""Adversarial point clouds shared by the H0 tests (independent of streamtopo)."""

from __future__ import annotations

import numpy as np


def integer_grid(side: int, d: int) -> np.ndarray:
    """All points of {0..side-1}^d: every nearest-neighbour distance ties at 1."""
    axes = np.meshgrid(*[np.arange(side, dtype=np.float64)] * d, indexing="ij")
    return np.stack([a.ravel() for a in axes], axis=1)


def cases(small: bool) -> dict[str, np.ndarray]:
    """Named adversarial inputs; ``small`` shrinks them for runs without the JIT."""
    rng = np.random.default_rng(7)
    n = 40 if small else 120
    base = rng.normal(size=(n, 5))
    line = np.linspace(0.0, 1.0, n)[:, None] * rng.normal(size=(1, 4))
    return {
        "grid_3d": integer_grid(4 if small else 5, 3),
        "grid_random_ints": rng.integers(0, 3, size=(n, 12)).astype(np.float64),
        "duplicates": np.repeat(base[: n // 4], 4, axis=0),
        "all_equal": np.ones((n // 4, 3)),
        "collinear": line,
        "collinear_unsorted": line[rng.permutation(n)],
        "d1_ties": rng.integers(0, 10, size=(n, 1)).astype(np.float64),
        "offset_1e6_gap_1e-3": 1e6 + 1e-3 * rng.integers(0, 50, size=(n, 3)),
        "tiny_1e-30": 1e-30 * base,
        "huge_1e30": 1e30 * base,
        "mixed_scales": np.vstack([base[: n // 2], 1e8 + 1e-3 * base[n // 2 :]]),
        "n1": base[:1],
        "n2": base[:2],
        "n3": base[:3],
    }


def near_ties(n: int, d: int, seed: int = 0, eps: float = 1e-9) -> np.ndarray:
    """An integer lattice sample perturbed by ``eps``: distances differ far below float32's
    resolution, so a float32 Gram matrix cannot order them."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, d)).astype(np.float64)
    return X + eps * rng.normal(size=(n, d))
