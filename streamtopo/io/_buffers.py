"""Preallocated row buffers of the writer, one per table (monitor kind).

Each buffer checks a row completely before the writer commits it (advances its row count), so
a bad row leaves the writer exactly as it was.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._validation import describe
from ..errors import InputError, InputTypeError
from ._layout import (
    LAYER,
    WALL,
    check_kind,
    check_names,
    column_name_ok,
    kind_of,
    layer_journal_schema,
    layer_table_schema,
    scalar_journal_schema,
    table_schema_json,
    wide_columns,
)

RESERVED = frozenset({"monitor", "step", "wall_time", "config"})
NUMBERS = (int, float, np.integer, np.floating)
_F32 = np.dtype(np.float32)


class LayerBuffer:
    """Preallocated rows of the layer table (``flush_rows`` of them)."""

    def __init__(self, signals: tuple[str, ...], layer_names: tuple[str, ...], cap: int) -> None:
        self.signals, self.layer_names = signals, layer_names
        self.shape = (len(signals), len(layer_names))
        self.schema = layer_journal_schema(signals, layer_names)
        self.row_bytes = 4 * self.shape[0] * self.shape[1] + 64
        self.values = np.zeros((cap, *self.shape), np.float32)
        # values not measured (a row's "missing" flags): written as nulls (Arrow validity)
        self.missing = np.zeros((cap, *self.shape), np.bool_)
        self.has_missing = [False] * cap
        self.slots = list(self.values)  # one view per row: cheaper to fill than values[i]
        # the scalar fields of row i, (h0, state, reason, z, stat, culprits, direction,
        # calibrating), as one tuple: one store per row (one cache line touched, not eight
        # lists'); the flush turns them into columns
        self.fields: list[tuple | None] = [None] * cap

    def put(self, i: int, row: dict[str, Any]) -> str:
        """Copy ``row`` into slot ``i`` (not committed until the caller advances); return state."""
        signals, names = row["signals"], row["layer_names"]
        if signals is not self.signals or names is not self.layer_names:
            self.match_names(signals, names)
        values, state, reason, h0 = row["values"], row["state"], row["reason"], row["h0"]
        z, stat = row.get("z", math.nan), row.get("stat", math.nan)
        culprits, direction = row.get("culprits", ()), row.get("direction", "")
        calibrating = row.get("calibrating", False)
        return self.put_fields(
            i, values, h0, state, reason, z, stat, culprits, direction, calibrating,
            row.get("missing"),
        )  # fmt: skip

    def match_names(self, signals: Any, names: Any) -> None:
        """Raise unless ``signals`` and ``names`` equal the table's; an equal tuple is kept
        in their place, so the caller's next rows pass by identity (a monitor passes the same
        tuples every step)."""
        if signals is not self.signals:
            if tuple(signals) != self.signals:
                raise InputError(f"row['signals'] is {describe(signals)}, expected {self.signals}")
            if type(signals) is tuple:
                self.signals = signals
        if names is not self.layer_names:
            if tuple(names) != self.layer_names:
                raise InputError(
                    f"row['layer_names'] is {describe(names)}, expected {self.layer_names}"
                )
            if type(names) is tuple:
                self.layer_names = names

    def put_fields(
        self,
        i: int,
        values: Any,
        h0: Any,
        state: Any,
        reason: Any,
        z: Any,
        stat: Any,
        culprits: Any,
        direction: Any,
        calibrating: Any,
        missing: Any,
    ) -> str:
        """:meth:`put` of a row given field by field (no dict: the monitor's hot path).

        Every field is checked before slot ``i`` is touched, so a bad one changes nothing."""
        if getattr(values, "shape", None) != self.shape or (
            values.dtype is not _F32 and values.dtype.kind not in "fiu"
        ):
            raise InputError(
                f"row['values'] is {describe(values)}, expected a float array of shape "
                f"{self.shape} (signals, layers)"
            )
        if type(state) is not str or type(reason) is not str:
            raise InputTypeError(
                f"row['state'] and row['reason'] must be str, got {describe(state)}, "
                f"{describe(reason)}"
            )
        if type(h0) is not float:
            h0 = as_float(h0, "row['h0']")
        if missing is not None and (
            getattr(missing, "shape", None) != self.shape or missing.dtype != np.bool_
        ):
            raise InputError(
                f"row['missing'] is {describe(missing)}, expected a bool array of shape "
                f"{self.shape} (signals, layers)"
            )
        if type(z) is not float:
            z = as_float(z, "row['z']")
        if type(stat) is not float:
            stat = as_float(stat, "row['stat']")
        if type(culprits) is not tuple or (culprits and not _all_str(culprits)):
            culprits = _as_culprits(culprits)
        if type(direction) is not str:
            raise InputTypeError(f"row['direction'] must be a str, got {describe(direction)}")
        if type(calibrating) is not bool:
            if not isinstance(calibrating, np.bool_):
                raise InputTypeError(
                    f"row['calibrating'] must be a bool, got {describe(calibrating)}"
                )
            calibrating = bool(calibrating)
        # checked: from here on nothing raises
        if missing is not None:
            self.missing[i] = missing
            self.has_missing[i] = True
        elif self.has_missing[i]:
            self.missing[i] = False
            self.has_missing[i] = False
        if values.dtype is _F32:
            self.slots[i][...] = values
        else:  # float64 beyond the float32 range is recorded as inf, like any overflow
            with np.errstate(over="ignore"):
                self.slots[i][...] = values
        self.fields[i] = (h0, state, reason, z, stat, culprits, direction, calibrating)
        return state

    def batch(
        self, a: int, b: int, step: list, wall: list, *, copy: bool = False
    ) -> pa.RecordBatch:
        """Rows ``a:b`` as a journal batch; ``copy`` makes it own its values (a kept batch
        must survive the buffer's reuse; the flush path writes the zero-copy view at once)."""
        flat = self.values[a:b].reshape(-1)
        mask = self.missing[a:b].reshape(-1) if any(self.has_missing[a:b]) else None
        flat = pa.array(flat.copy() if copy else flat, mask=mask)
        cols = list(zip(*self.fields[a:b], strict=True)) if b > a else [()] * 8
        h0, state, reason, z, stat, culprits, direction, calibrating = cols
        return pa.RecordBatch.from_arrays(
            [
                pa.array(step[a:b], pa.int64()),
                wall_array(wall[a:b]),
                pa.FixedSizeListArray.from_arrays(flat, self.shape[0] * self.shape[1]),
                pa.array(h0, pa.float64()),
                pa.array(state, pa.string()),
                pa.array(reason, pa.string()),
                pa.array(z, pa.float64()),
                pa.array(stat, pa.float64()),
                pa.array(culprits, pa.list_(pa.string())),
                pa.array(direction, pa.string()),
                pa.array(calibrating, pa.bool_()),
            ],
            schema=self.schema,
        )


def _all_str(items: tuple) -> bool:
    for c in items:
        if type(c) is not str:
            return False
    return True


def _as_culprits(culprits: Any) -> tuple[str, ...]:
    """``row['culprits']`` as a tuple of str, or an error naming it."""
    if isinstance(culprits, (str, bytes)) or not isinstance(culprits, (list, tuple)):
        raise InputTypeError(f"row['culprits'] must be a tuple of str, got {describe(culprits)}")
    culprits = tuple(culprits)
    if not _all_str(culprits):
        raise InputTypeError(f"row['culprits'] must be a tuple of str, got {describe(culprits)}")
    return culprits


_WALL_LIMIT = 9.2e12  # seconds that fit in int64 microseconds


def wall_array(wall: list[Any]) -> pa.Array:
    """``wall_time`` seconds as a UTC microsecond timestamp array (non-finite: null)."""
    w = np.asarray(wall, dtype=np.float64)
    ok = np.isfinite(w) & (np.abs(w) < _WALL_LIMIT)
    us = np.where(ok, np.round(w * 1e6), 0.0).astype(np.int64)
    return pa.array(us, type=WALL, mask=None if ok.all() else ~ok)


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def as_float(value: Any, what: str) -> float:
    """``float(value)`` for a real number (NaN and inf are data); raise naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, NUMBERS):
        raise InputTypeError(f"{what} must be a float, got {describe(value)}")
    try:
        return float(value)
    except OverflowError:
        raise InputError(f"{what} is beyond the float64 range, got {describe(value)}") from None


def as_step(step: Any) -> int:
    """A row's step as a Python int (numpy integers accepted, bool refused)."""
    if isinstance(step, np.integer) and not isinstance(step, np.bool_):
        return int(step)
    raise InputTypeError(f"row['step'] must be an int, got {describe(step)}")


def _scalar_type(value: Any) -> str | None:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "int64"
    if isinstance(value, (float, np.floating)):
        return "float64"
    if isinstance(value, str):
        return "string"
    return None


class ScalarBuffer:
    """Rows of another monitor kind: scalar columns fixed by its first row."""

    def __init__(self, kind: str, row: dict[str, Any], cap: int) -> None:
        self.columns: list[tuple[str, str]] = []
        for key, value in row.items():
            if key in RESERVED:
                continue
            if not column_name_ok(key):
                raise InputError(
                    f"row key {key!r} of monitor {kind!r} is not a column name (a name, or "
                    "<signal>/<layer>)"
                )
            t = _scalar_type(value)
            if t is None:
                raise InputTypeError(
                    f"row[{key!r}] of monitor {kind!r} must be an int, float, str or bool, "
                    f"got {describe(value)}"
                )
            self.columns.append((key, t))
        self.keys = frozenset(k for k, _ in self.columns) | {"monitor", "step", "wall_time"}
        fields = [pa.field("step", pa.int64()), pa.field("wall_time", WALL)]
        fields += [pa.field(k, _PA[t]) for k, t in self.columns]
        self.table_schema = pa.schema(fields)
        self.schema = scalar_journal_schema(kind, self.table_schema)
        self.kind = kind
        self.row_bytes = 16 + 16 * len(self.columns)
        self.data: list[list[Any]] = [[None] * cap for _ in self.columns]

    def put(self, i: int, row: dict[str, Any]) -> str | None:
        extra = set(row) - self.keys - {"config"}
        if extra:
            raise InputError(f"row of monitor {self.kind!r} has unexpected keys {sorted(extra)}")
        values = []
        for key, t in self.columns:
            try:
                value = row[key]
            except KeyError:
                raise InputError(f"row of monitor {self.kind!r} lacks key {key!r}") from None
            got = _scalar_type(value)
            if got != t and not (t == "float64" and got == "int64"):
                raise InputTypeError(
                    f"row[{key!r}] of monitor {self.kind!r} must be {t}, got {describe(value)}"
                )
            if t == "float64":
                value = as_float(value, f"row[{key!r}] of monitor {self.kind!r}")
            elif t == "int64":
                value = int(value)
                if not _INT64_MIN <= value <= _INT64_MAX:
                    raise InputError(
                        f"row[{key!r}] of monitor {self.kind!r} must fit in int64, got {value}"
                    )
            values.append(value)
        for col, value in zip(self.data, values, strict=True):
            col[i] = value
        state = row.get("state")
        return state if isinstance(state, str) else None

    def batch(
        self, a: int, b: int, step: list, wall: list, *, copy: bool = False
    ) -> pa.RecordBatch:
        arrays = [pa.array(step[a:b], pa.int64()), wall_array(wall[a:b])]
        arrays += [
            pa.array(col[a:b], _PA[t]) for col, (_, t) in zip(self.data, self.columns, strict=True)
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema)


_PA = {"bool": pa.bool_(), "int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}


class Table:
    """One monitor kind inside a rank: its buffer, its open journal, and the rows the disk
    refused (kept, oldest first, until a flush succeeds)."""

    def __init__(self, kind: str, buf: Any, cap: int, next_index: int, last_step: int) -> None:
        self.kind, self.buf = kind, buf
        self.step: list[Any] = [0] * cap
        self.wall: list[Any] = [0.0] * cap
        self.n = 0  # rows buffered
        self.index = next_index  # part index of the next journal
        self.journal: Any = None
        self.last_state: str | None = None
        self.last_step = last_step
        self.offset = 0
        self.floor = -1  # rows must have steps above it (the rank's last recorded step)
        self.pending: deque[pa.RecordBatch] = deque()
        self.pending_rows = 0

    def keep(self, bound: int) -> tuple[int, int | None, int | None]:
        """Move the buffered rows into ``pending`` (a copy: the buffer is reused); drop the
        oldest kept batches beyond ``bound`` rows. Returns ``(dropped rows, first, last step)``."""
        n = self.n
        if n:
            self.pending.append(self.buf.batch(0, n, self.step, self.wall, copy=True))
            self.pending_rows += n
            self.n = 0
        dropped, first, last = 0, None, None
        while self.pending_rows > bound and len(self.pending) > 1:
            old = self.pending.popleft()
            self.pending_rows -= old.num_rows
            dropped += old.num_rows
            lo, hi = _step_range(old)
            first = lo if first is None else min(first, lo)
            last = hi if last is None else max(last, hi)
        return dropped, first, last

    def pending_span(self) -> str:
        """``steps a..b`` of the kept rows."""
        if not self.pending:
            return ""
        ranges = [_step_range(b) for b in self.pending]
        lo, hi = min(r[0] for r in ranges), max(r[1] for r in ranges)
        return f"step {lo}" if lo == hi else f"steps {lo}..{hi}"


def _step_range(batch: pa.RecordBatch) -> tuple[int, int]:
    steps = batch.column(0)
    return int(pc.min(steps).as_py()), int(pc.max(steps).as_py())


def new_buffer(row: Any, cap: int) -> tuple[str, Any, dict[str, Any]]:
    """The table (kind) of a first row, its buffer and its ``_meta.json`` description."""
    if not isinstance(row, dict) or "monitor" not in row:
        raise InputTypeError(f"row must be a dict with a 'monitor' key, got {describe(row)}")
    kind = check_kind(row["monitor"])
    for key in ("step", "wall_time", "config"):
        if key not in row:
            raise InputError(f"row of monitor {kind!r} lacks key {key!r}")
    try:
        config = json.loads(json.dumps(row["config"], allow_nan=False))
    except (TypeError, ValueError, RecursionError) as exc:
        raise InputError(f"row['config'] must be JSON-serialisable: {exc}") from exc
    if not isinstance(config, dict):
        raise InputTypeError(f"row['config'] must be a dict, got {describe(row['config'])}")
    if kind_of(kind) == LAYER:
        for key in ("signals", "layer_names", "values", "h0", "state", "reason"):
            if key not in row:
                raise InputError(f"row of monitor {kind!r} lacks key {key!r}")
        signals = check_names(row["signals"], "row['signals']")
        names = check_names(row["layer_names"], "row['layer_names']")
        buf: Any = LayerBuffer(signals, names, cap)
        info = {
            "files": f"table={kind}/rank=*/part-*.parquet",
            "signals": list(signals),
            "layer_names": list(names),
            "config": config,
            "schema": table_schema_json(layer_table_schema(signals, names)),
            "columns": wide_columns(signals, names),
        }
    else:
        buf = ScalarBuffer(kind, row, cap)
        info = {
            "files": f"table={kind}/rank=*/part-*.parquet",
            "config": config,
            "schema": table_schema_json(buf.table_schema),
        }
    return kind, buf, info
