"""Run summary counters and the status frame of the layer monitor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..alarms import State
from ._status import LayerStatus

__all__ = ["RunSummary", "StatusColumns", "status_frame"]


class RunSummary:
    """Counters behind :meth:`LayerMonitor.summary`, updated once per evaluated step."""

    __slots__ = (
        "collapse_events", "collapse_steps", "first_collapse_step", "first_step", "last_step",
        "n", "nonfinite_steps", "prev_collapse", "sh", "st", "sth", "stt", "watch_steps",
    )  # fmt: skip

    def __init__(self) -> None:
        self.watch_steps = self.collapse_steps = self.collapse_events = self.nonfinite_steps = 0
        self.first_collapse_step: int | None = None
        self.prev_collapse = False
        # least-squares sums of (step, h0) for the trend
        self.n = 0
        self.st = self.sh = self.stt = self.sth = 0.0
        self.first_step: int | None = None
        self.last_step: int | None = None

    def record(self, status: LayerStatus) -> None:
        state = status.state
        collapse = state is State.COLLAPSE
        if state is State.WATCH:
            self.watch_steps += 1
        elif collapse:
            self.collapse_steps += 1
            if not self.prev_collapse:
                self.collapse_events += 1
            if self.first_collapse_step is None:
                self.first_collapse_step = status.step
        self.prev_collapse = collapse
        if status.nonfinite:
            self.nonfinite_steps += 1
        h = status.h0
        if math.isfinite(h):
            t = float(status.step)
            self.n += 1
            self.st += t
            self.sh += h
            self.stt += t * t
            self.sth += t * h
            if self.first_step is None:
                self.first_step = status.step
            self.last_step = status.step

    def trend(self) -> str:
        """Least-squares slope of h0 over the run: 'increasing'/'decreasing' when the fitted
        change over the run exceeds 5 % of the mean h0, else 'flat'."""
        n = self.n
        if n < 2 or self.first_step is None or self.last_step is None:
            return "flat"
        var = self.stt - self.st * self.st / n
        mean_h = self.sh / n
        if var <= 0.0 or mean_h == 0.0:
            return "flat"
        slope = (self.sth - self.st * self.sh / n) / var
        change = slope * (self.last_step - self.first_step) / abs(mean_h)
        if change > 0.05:
            return "increasing"
        if change < -0.05:
            return "decreasing"
        return "flat"

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__slots__}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for k in self.__slots__:
            setattr(self, k, state[k])


def status_frame(statuses: Sequence[LayerStatus]) -> Any:
    """Statuses as a polars DataFrame, one row per step (``culprits`` and ``nonfinite`` are
    list columns, ``state`` a string)."""
    import polars as pl

    return pl.DataFrame(
        {
            "step": [s.step for s in statuses],
            "h0": [s.h0 for s in statuses],
            "z": [s.z for s in statuses],
            "ratio": [s.ratio for s in statuses],
            "peak": [s.peak for s in statuses],
            "state": [str(s.state) for s in statuses],
            "direction": [s.direction for s in statuses],
            "culprits": [list(s.culprits) for s in statuses],
            "reason": [s.reason for s in statuses],
            "nonfinite": [list(s.nonfinite) for s in statuses],
            "layer_z": [s.layer_z for s in statuses],
            "stat": [s.stat for s in statuses],
            "calibrating": [s.calibrating for s in statuses],
            "evaluated": [s.evaluated for s in statuses],
        },
        schema=_schema(),
    )


_FLOAT_COLUMNS = ("h0", "z", "ratio", "peak", "layer_z", "stat")
_STATE_TEXT = {State.HEALTHY: "HEALTHY", State.WATCH: "WATCH", State.COLLAPSE: "COLLAPSE"}


class StatusColumns:
    """The columns of :func:`status_frame` for ``n`` steps, filled row by row from statuses
    (:meth:`put`) or in blocks from a fused replay's arrays (:meth:`fill`); :meth:`frame` gives
    the same DataFrame as ``status_frame`` of the equivalent statuses."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.step = np.zeros(n, dtype=np.int64)
        self.floats = {k: np.zeros(n) for k in _FLOAT_COLUMNS}
        self.state = np.full(n, "HEALTHY", dtype=object)
        self.direction = np.full(n, "", dtype=object)
        self.reason = np.full(n, "", dtype=object)
        # the list columns are sparse (almost every row is empty): row -> list
        self.culprits: dict[int, list[str]] = {}
        self.nonfinite: dict[int, list[int]] = {}
        self.calibrating = np.zeros(n, dtype=bool)
        self.evaluated = np.zeros(n, dtype=bool)

    def put(self, i: int, s: LayerStatus) -> None:
        """Row ``i`` from a status."""
        self.step[i] = s.step
        f = self.floats
        f["h0"][i], f["z"][i], f["ratio"][i], f["peak"][i] = s.h0, s.z, s.ratio, s.peak
        f["layer_z"][i], f["stat"][i] = s.layer_z, s.stat
        self.state[i] = _STATE_TEXT[s.state]
        self.direction[i] = s.direction
        self.reason[i] = s.reason
        if s.culprits:
            self.culprits[i] = list(s.culprits)
        if s.nonfinite:
            self.nonfinite[i] = list(s.nonfinite)
        self.calibrating[i] = s.calibrating
        self.evaluated[i] = s.evaluated

    def fill(
        self,
        a: int,
        b: int,
        first_step: int,
        floats: np.ndarray,
        direction: np.ndarray,
        calibrating: np.ndarray,
        evaluated: np.ndarray,
        reason: np.ndarray,
        skipped_reason: str,
        prev: LayerStatus | None,
    ) -> None:
        """Rows ``a..b-1``: HEALTHY evaluated rows from the arrays (``floats`` (b - a, 6) in the
        order h0, z, ratio, peak, layer_z, stat; ``direction`` -1/0/+1), rows not evaluated
        repeating the last evaluated one (``prev`` before the first), as ``check()`` does."""
        m = b - a
        self.step[a:b] = np.arange(first_step, first_step + m)
        src = np.where(evaluated, np.arange(m), -1)
        np.maximum.accumulate(src, out=src)
        own = src >= 0
        pick = np.maximum(src, 0)
        for k, name in enumerate(_FLOAT_COLUMNS):
            col = floats[pick, k]
            if prev is not None and not own.all():
                col[~own] = getattr(prev, name)
            self.floats[name][a:b] = col
        text = np.array(["falling", "", "rising"], dtype=object)[direction[pick] + 1]
        cal = calibrating[pick]
        if prev is not None and not own.all():
            text[~own] = prev.direction
            cal[~own] = prev.calibrating
            if prev.culprits:
                for i in np.flatnonzero(~own):
                    self.culprits[a + i] = list(prev.culprits)
        self.direction[a:b] = text
        self.calibrating[a:b] = cal
        self.evaluated[a:b] = evaluated
        self.reason[a:b] = np.where(evaluated, reason, skipped_reason)

    def row_status(self, i: int) -> LayerStatus:
        """Row ``i`` as a status (the monitor's last status after a fused block)."""
        f = self.floats
        return LayerStatus(
            int(self.step[i]), State(self.state[i]), self.reason[i], float(f["h0"][i]),
            float(f["z"][i]), float(f["ratio"][i]), float(f["peak"][i]), self.direction[i],
            tuple(self.culprits.get(i, ())), tuple(self.nonfinite.get(i, ())),
            float(f["layer_z"][i]),
            float(f["stat"][i]), evaluated=bool(self.evaluated[i]),
            calibrating=bool(self.calibrating[i]),
        )  # fmt: skip

    def frame(self) -> Any:
        import polars as pl

        f = self.floats
        return pl.DataFrame(
            {
                "step": self.step,
                "h0": f["h0"],
                "z": f["z"],
                "ratio": f["ratio"],
                "peak": f["peak"],
                "state": self.state.tolist(),
                "direction": self.direction.tolist(),
                "culprits": _list_column(self.culprits, self.n, pl.String),
                "reason": self.reason.tolist(),
                "nonfinite": _list_column(self.nonfinite, self.n, pl.Int64),
                "layer_z": f["layer_z"],
                "stat": f["stat"],
                "calibrating": self.calibrating,
                "evaluated": self.evaluated,
            },
            schema=_schema(),
        )


def _list_column(rows: dict[int, list[Any]], n: int, inner: Any) -> Any:
    """A polars list column of ``n`` rows, empty but for ``rows`` (built from offsets: a
    Python list per row costs more than the rest of a fused replay)."""
    import polars as pl
    import pyarrow as pa

    lengths = np.zeros(n + 1, dtype=np.int32)
    flat: list[Any] = []
    for i in sorted(rows):
        lengths[i + 1] = len(rows[i])
        flat.extend(rows[i])
    offsets = pa.array(np.cumsum(lengths, dtype=np.int32))
    kind = pa.string() if inner == pl.String else pa.int64()
    return pl.Series(pa.ListArray.from_arrays(offsets, pa.array(flat, type=kind)))


def _schema() -> dict[str, Any]:
    import polars as pl

    return {
        "step": pl.Int64,
        "h0": pl.Float64,
        "z": pl.Float64,
        "ratio": pl.Float64,
        "peak": pl.Float64,
        "state": pl.String,
        "direction": pl.String,
        "culprits": pl.List(pl.String),
        "reason": pl.String,
        "nonfinite": pl.List(pl.Int64),
        "layer_z": pl.Float64,
        "stat": pl.Float64,
        "calibrating": pl.Boolean,
        "evaluated": pl.Boolean,
    }
