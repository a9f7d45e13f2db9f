"""Run summary counters and the status frame of the layer monitor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ..alarms import State
from ._status import LayerStatus

__all__ = ["RunSummary", "status_frame"]


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
        schema={
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
        },
    )
