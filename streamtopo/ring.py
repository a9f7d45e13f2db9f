"""Fixed-capacity ring of per-step signal rows with zero-copy Arrow and polars views.

Every signal keeps a preallocated float32 buffer of ``2 * capacity`` rows of ``width`` values.
Each appended row is written twice, at ``p`` and ``p + capacity``, so the last ``n`` rows are
always one contiguous slice, whatever the write position. Appending allocates nothing;
:meth:`ArrowRing.to_arrow` and :meth:`ArrowRing.to_polars` wrap that slice without copying.
Views alias the live buffer and change as rows are appended: take :meth:`ArrowRing.snapshot`
for anything that must outlive the current step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._validation import check_positive_int, describe
from .errors import InputError, InputTypeError

__all__ = ["ArrowRing"]


class ArrowRing:
    """The last ``capacity`` rows of ``len(signals)`` signals, ``width`` float32 values each.

    Parameters
    ----------
    signals : sequence of str
        Signal names (one buffer each), e.g. ``("grad_norm", "act_norm")``.
    width : int
        Values per row (the number of layers).
    capacity : int, default 1024
        Rows kept; older rows are overwritten.

    Attributes
    ----------
    count_ : int
        Rows appended since the last reset (may exceed ``capacity``).

    Examples
    --------
    >>> import numpy as np
    >>> ring = ArrowRing(("grad_norm",), width=3, capacity=4)
    >>> for step in range(6):
    ...     ring.append(np.full((1, 3), step, dtype=np.float32), step)
    >>> ring.window(2)[0]
    array([[4., 4., 4.],
           [5., 5., 5.]], dtype=float32)
    >>> ring.to_polars(3)["step"].to_list()
    [3, 4, 5]
    """

    __slots__ = ("_buf", "_steps", "capacity", "count_", "signals", "width")

    def __init__(self, signals: Sequence[str], width: int, capacity: int = 1024) -> None:
        if isinstance(signals, str) or not all(isinstance(s, str) for s in signals):
            raise InputTypeError(f"signals must be a sequence of str, got {describe(signals)}")
        self.signals = tuple(signals)
        if not self.signals or len(set(self.signals)) != len(self.signals):
            raise InputError(f"signals must be non-empty and unique, got {self.signals!r}")
        self.width = check_positive_int(width, "width")
        self.capacity = check_positive_int(capacity, "capacity")
        self._buf = np.zeros((len(self.signals), 2 * self.capacity, self.width), dtype=np.float32)
        self._steps = np.zeros(2 * self.capacity, dtype=np.int64)
        self.count_ = 0

    # -- writing ---------------------------------------------------------------------------
    def append(self, row: np.ndarray, step: int) -> None:
        """Append one (n_signals, width) row (cast to float32) recorded at ``step``."""
        p = self.count_ % self.capacity
        q = p + self.capacity
        self._buf[:, p, :] = row
        self._buf[:, q, :] = row
        self._steps[p] = step
        self._steps[q] = step
        self.count_ += 1

    # -- kernel-facing accessor (the one way a kernel writes rows) ------------------------
    def kernel_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        """``(values, steps)``: the doubled buffers, for a numba kernel that writes the row at
        :attr:`slot` and ``slot + capacity`` itself; it then calls :meth:`advance`."""
        return self._buf, self._steps

    @property
    def slot(self) -> int:
        """Buffer position the next row goes to (and ``slot + capacity``)."""
        return self.count_ % self.capacity

    def advance(self, rows: int = 1) -> None:
        """Count the row a kernel has just written at :attr:`slot` (or the ``rows`` rows a
        compiled loop has written from there on)."""
        self.count_ += rows

    def reset(self) -> None:
        """Forget every row (buffers stay allocated)."""
        self._buf.fill(0.0)
        self._steps.fill(0)
        self.count_ = 0

    # -- reading ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return min(self.count_, self.capacity)

    def _bounds(self, n: int | None) -> tuple[int, int]:
        size = len(self)
        if n is None:
            n = size
        elif isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= size:
            raise InputError(f"n must be an integer in [0, {size}] (rows held), got {describe(n)}")
        end = (self.count_ - 1) % self.capacity + self.capacity + 1 if self.count_ else 0
        return end - int(n), end

    def window(self, n: int | None = None) -> np.ndarray:
        """View of the last ``n`` rows (default: all held) as a (n_signals, n, width) array."""
        a, b = self._bounds(n)
        return self._buf[:, a:b, :]

    def steps(self, n: int | None = None) -> np.ndarray:
        """View of the steps of the last ``n`` rows."""
        a, b = self._bounds(n)
        return self._steps[a:b]

    def to_arrow(self, n: int | None = None) -> Any:
        """Zero-copy ``pyarrow.RecordBatch``: ``step`` (int64) and one
        ``FixedSizeList<float32, width>`` column per signal, oldest row first."""
        import pyarrow as pa

        a, b = self._bounds(n)
        columns = [pa.array(self._steps[a:b])]
        for s in range(len(self.signals)):
            flat = self._buf[s, a:b, :].reshape(-1)  # contiguous slice: a view, not a copy
            columns.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), self.width))
        return pa.record_batch(columns, names=["step", *self.signals])

    def to_polars(self, n: int | None = None) -> Any:
        """Zero-copy polars DataFrame of :meth:`to_arrow` (signal columns have dtype
        ``Array(Float32, width)``). It aliases the ring: do not keep it past the next append."""
        import polars as pl

        return pl.from_arrow(self.to_arrow(n), rechunk=False)

    def snapshot(self, n: int | None = None, *, copy: bool = True) -> Any:
        """Polars DataFrame of the last ``n`` rows that owns its memory (``copy=True``), safe to
        keep while the ring moves on; ``copy=False`` is :meth:`to_polars`."""
        if not copy:
            return self.to_polars(n)
        import polars as pl

        a, b = self._bounds(n)
        data: dict[str, Any] = {"step": self._steps[a:b].copy()}
        for s, name in enumerate(self.signals):
            data[name] = self._buf[s, a:b, :].copy()
        return pl.DataFrame(data)

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return int(self._buf.nbytes + self._steps.nbytes)

    # -- persistence -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The rows held, oldest first (JSON scalars plus numpy arrays)."""
        return {
            "signals": list(self.signals),
            "width": self.width,
            "capacity": self.capacity,
            "count": self.count_,
            "values": self.window().copy(),
            "steps": self.steps().copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; raises (leaving the ring unchanged) on a mismatch."""
        for key in ("signals", "width", "capacity"):
            mine = list(self.signals) if key == "signals" else getattr(self, key)
            if key not in state or (list(state[key]) if key == "signals" else state[key]) != mine:
                raise InputError(
                    f"state[{key!r}] must be {mine!r} for this ring, got {state.get(key)!r}"
                )
        count = int(state["count"])
        held = min(count, self.capacity)
        values = np.asarray(state["values"], dtype=np.float32)
        steps = np.asarray(state["steps"], dtype=np.int64)
        if values.shape != (len(self.signals), held, self.width) or steps.shape != (held,):
            raise InputError(
                f"state['values'] must have shape {(len(self.signals), held, self.width)}, "
                f"got {describe(values)}"
            )
        self.reset()
        start = count - held
        for k in range(held):
            self.count_ = start + k
            self.append(values[:, k, :], int(steps[k]))
        self.count_ = count
