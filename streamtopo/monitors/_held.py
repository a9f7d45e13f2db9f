"""The streak rule's absorption of a held shift: the last evaluations of an alarm, and whether
they hold one level.

A WATCH raised by a level shift that then stops moving would otherwise never end: values seen
during an alarm never enter the z-score baselines, so the baseline never follows. The monitor
feeds every evaluation of an alarm (``log h0`` and each layer's median-relative value) to a
:class:`HeldShift`; once it holds ``size`` of them and every stream has the same level in the
first and second half (means within ``hold_z`` standard errors, the change detector's test),
the shift is *held* and the monitor absorbs it (``LayerMonitor(absorb_after=)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = ["HeldShift"]


class HeldShift:
    """A ring of the last ``size`` alarm evaluations of ``n`` streams.

    Examples
    --------
    >>> h = HeldShift(4, 2)
    >>> for t, x in enumerate(([1.0, 0.0], [1.1, 0.1], [1.0, 0.0], [1.1, 0.1])):
    ...     h.push(x, step=7 + t)
    >>> h.held(), h.start
    (True, 7)
    >>> for t in (11, 12):
    ...     h.push([9.0, 0.1], step=t)  # the level moves: not held
    >>> h.held()
    False
    """

    def __init__(self, size: int, n: int, *, hold_z: float = 4.0, min_std: float = 1e-3) -> None:
        self.size = size
        self.hold_z = hold_z
        self.min_std = min_std
        self._buf = np.zeros((max(size, 1), n))
        self.reset()

    def reset(self) -> None:
        """Forget the alarm (it ended, or was absorbed)."""
        self.count = 0  # evaluations pushed since the alarm started (not capped)
        self.pos = 0
        self.start = -1  # step of the first pushed evaluation

    def push(self, x: Any, step: int) -> None:
        """Add one evaluation's stream values (all finite)."""
        self._buf[self.pos] = x
        self.pos = (self.pos + 1) % self.size
        if self.count == 0:
            self.start = step
        self.count += 1

    def held(self) -> bool:
        """Do the last ``size`` evaluations hold one level in every stream?"""
        A = self.size
        if self.count < A or A < 4:
            return False
        rows = self._ordered()
        h = A // 2
        a, c = rows[:h], rows[h:]
        se = np.sqrt(a.var(axis=0, ddof=1) / h + c.var(axis=0, ddof=1) / (A - h))
        move = np.abs(c.mean(axis=0) - a.mean(axis=0))
        return bool(np.all(move <= self.hold_z * np.maximum(se, self.min_std)))

    def level(self) -> np.ndarray:
        """The held level: each stream's mean over the second half of the buffer."""
        return self._ordered()[self.size // 2 :].mean(axis=0)

    def _ordered(self) -> np.ndarray:
        """The buffered evaluations, oldest first (the buffer is full)."""
        return self._buf[(self.pos + np.arange(self.size)) % self.size]

    def state_dict(self) -> dict[str, Any]:
        return {
            "buf": self._buf.ravel().tolist(),
            "count": self.count,
            "pos": self.pos,
            "start": self.start,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        buf = np.asarray(state["buf"], dtype=np.float64)
        if buf.size != self._buf.size:
            raise InputError(
                f"state['held']['buf'] must have {self._buf.size} values, got {buf.size}"
            )
        count, pos, start = (int(state[k]) for k in ("count", "pos", "start"))
        if count < 0 or not 0 <= pos < self._buf.shape[0] or not math.isfinite(float(start)):
            raise InputError(f"state['held'] has count={count}, pos={pos}: out of range")
        self._buf[...] = buf.reshape(self._buf.shape)
        self.count, self.pos, self.start = count, pos, start
