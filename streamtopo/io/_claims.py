"""Which live monitor writes which table of a RunWriter: one per table.

Two monitors writing one table (a train and an eval LayerMonitor, both unnamed) would interleave
the same steps, and replay would keep one row per step. A monitor claims its table when it is
built; the claim ends when the monitor is garbage-collected (the writer keeps a weak reference).
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["TableClaims"]


class TableClaims:
    """The owners of a writer's tables (weak references; the caller holds the writer's lock)."""

    def __init__(self) -> None:
        self._owners: dict[str, weakref.ref[Any]] = {}

    def claim(self, table: str, owner: object, run_dir: Path) -> None:
        """Give ``table`` to ``owner``; raise if another live monitor holds it."""
        ref = self._owners.get(table)
        other = None if ref is None else ref()
        if other is not None and other is not owner:
            other = None  # no strong reference while collecting: it would keep it alive
            gc.collect()  # a monitor dropped in a reference cycle is not a live owner
            other = ref()
        if other is not None and other is not owner:
            raise InputError(
                f"RunWriter {run_dir} already has a {type(other).__name__} writing "
                f"table {table!r}; two monitors on one table mix their steps: give this "
                f"one a name (name='eval' writes table '{table.split('.')[0]}.eval'), or "
                "log it to another RunWriter"
            )
        self._owners[table] = weakref.ref(owner)
