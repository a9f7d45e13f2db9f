"""The one place for numba settings.

Every kernel in ``streamtopo._kernels`` is decorated with :data:`jit` (or :data:`jit_parallel`).
``cache=True`` so the compile cost is paid once per machine; ``fastmath`` stays off because
several kernels produce death times that must match a float64 reference to 1e-9 relative.
``NUMBA_DISABLE_JIT=1`` turns every kernel into plain Python (used for coverage runs).
"""

from __future__ import annotations

import numba

__all__ = ["jit", "jit_parallel", "prange"]

jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
jit_parallel = numba.njit(
    cache=True, nogil=True, fastmath=False, parallel=True, error_model="numpy"
)
prange = numba.prange
