"""The one place for numba settings.

Every kernel in ``streamtopo._kernels`` is decorated with :data:`jit` (or :data:`jit_parallel`).
``cache=True`` so the compile cost is paid once per machine; ``fastmath`` stays off because
several kernels produce death times that must match a float64 reference to 1e-9 relative.
``NUMBA_DISABLE_JIT=1`` turns every kernel into plain Python (used for coverage runs).
"""

from __future__ import annotations

import numba

__all__ = ["compiled", "jit", "jit_parallel", "prange"]

jit = numba.njit(cache=True, nogil=True, fastmath=False, error_model="numpy")
jit_parallel = numba.njit(
    cache=True, nogil=True, fastmath=False, parallel=True, error_model="numpy"
)
prange = numba.prange


def compiled(kernel: object, args: tuple) -> object:
    """The compiled function of ``kernel`` for exactly the types of ``args``, callable without
    the dispatcher's per-call type resolution (for a 30-argument kernel ~1.3 µs of each call).

    Resolve it once, after ``kernel(*args)`` has run (so it is compiled or loaded from the
    cache), and call it only with arguments of the same types: same dtypes, dimensions and
    layouts (buffers allocated once), the same Python scalar types. When no compiled version
    matches exactly, or the JIT is disabled, ``kernel`` itself is returned, which is always
    correct.
    """
    overloads = getattr(kernel, "overloads", None)
    if not overloads:
        return kernel
    try:
        key = tuple(numba.typeof(a) for a in args)
    except ValueError:  # a type numba does not know: keep the dispatcher
        return kernel
    found = overloads.get(key)
    return kernel if found is None else found.entry_point
