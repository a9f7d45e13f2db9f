"""The BLAS Gram matrix that screens Prim's edges on the large-n d path of :mod:`.h0`.

It lives here, not in :mod:`streamtopo._kernels.gram` (which holds the numba kernels that use
it and the exactness argument), because it carries a thread policy: block rows of the product
are shared out to Python threads, each calling a single-threaded BLAS (threadpoolctl).
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

__all__ = ["gram_matrix"]


def gram_matrix(X32: np.ndarray, block: int = 512) -> np.ndarray:
    """Full symmetric (n, n) Gram matrix ``X32 @ X32.T`` (in X32's dtype) by GEMM on row blocks.

    Only the upper block triangle is multiplied (about half of GEMM's flops); each block row is
    mirrored into the lower triangle while it is still in cache (numpy's own ``X @ X.T`` runs
    SYRK, then fills the other triangle with an uncached transposed copy: 2-4x slower here at
    n = 2048). Block rows are shared out to one Python thread per core, each calling a
    *single-threaded* BLAS: on the shared 2-core machine OpenBLAS's own threads measured up to
    300x slower under load (100 x 4096 float32: 208 ms with 2 threads, 0.73 ms with one), while
    a thread per block row just takes the next block when the other is descheduled. The BLAS
    thread limit is process-wide while the product runs, and restored afterwards.
    """
    n = X32.shape[0]
    XT = np.ascontiguousarray(X32.T)
    G = np.empty((n, n), dtype=X32.dtype)

    def block_row(i0: int) -> None:
        i1 = min(i0 + block, n)
        np.matmul(X32[i0:i1], XT[:, i0:], out=G[i0:i1, i0:])
        if i1 < n:  # block rows write disjoint columns of the lower triangle
            G[i1:, i0:i1] = G[i0:i1, i1:].T

    starts = list(range(0, n, block))
    workers = min(len(starts), _cpu_count())
    with _single_threaded_blas():
        if workers < 2:
            for i0 in starts:
                block_row(i0)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(block_row, starts))
    return G


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_BLAS_CONTROLLER: list = []


def _single_threaded_blas():
    """Context limiting BLAS to one thread (threadpoolctl), or a no-op without it."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return contextlib.nullcontext()
    if not _BLAS_CONTROLLER:
        _BLAS_CONTROLLER.append(ThreadpoolController())
    return _BLAS_CONTROLLER[0].limit(limits=1, user_api="blas")
