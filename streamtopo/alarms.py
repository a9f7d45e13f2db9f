"""The alarm engine: the one place where every monitor's decision rules live.

``State`` is a ``StrEnum`` so statuses compare equal to the plain strings users print and log
(``status.state == "COLLAPSE"``). Every alarming monitor (layer, centroid, collapse, loss)
builds its rule from the pieces below; none hand-writes a baseline or a streak counter:

- :class:`RollingBaseline` — mean/std of the previous ``size`` accepted values, O(1) per step;
  the caller decides what enters it (alarms freeze it).
- :class:`ZScoreAlarm` — two-sided consecutive-count alarm over one or more z-score detectors:
  WATCH after ``raise_after`` steps over ``watch_z``, COLLAPSE after ``raise_after`` steps over
  ``collapse_z`` or when WATCH has lasted ``escalate_after`` steps, cleared after
  ``clear_after`` calm steps.
- :class:`PeakRule` — ph-training's rule: ratio to the peak after warm-up.
- :class:`Streak` — consecutive-count of a condition (the loss rule's patience, the centroid
  rule's consecutive alerts); :class:`Patience` is a streak of COLLAPSE statuses behind
  ``should_stop``.
- :class:`FrozenBaseline` — the first ``size`` accepted values of a series, frozen, with a
  robust centre (median) or the mean and the sample spread (the collapse and centroid rules).
- :func:`sidak_z` — the threshold of the largest of ``n`` z-scores.
- :class:`ChangeDetector` — the sequential change detector (two-sided CUSUM on small-sample
  residuals, one false-alarm knob, live from the first evaluation, held shifts absorbed);
  defined in :mod:`streamtopo.changepoint` and loaded on first use, with its kernel.

Status records live in :mod:`streamtopo.monitors` (``MonitorStatus`` and one subclass per
monitor); this module knows only :class:`State`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from ._validation import check_positive_int, describe
from .errors import InputError

if TYPE_CHECKING:  # loaded on first use (see __getattr__ at the end)
    from .changepoint import ChangeDetector, cusum_threshold  # noqa: F401

__all__ = [
    "ChangeDetector",
    "FrozenBaseline",
    "Patience",
    "PeakRule",
    "RollingBaseline",
    "State",
    "Streak",
    "ZScoreAlarm",
    "sidak_z",
]


class State(StrEnum):
    """Health of the monitored structure, ordered by severity."""

    HEALTHY = "HEALTHY"
    WATCH = "WATCH"
    COLLAPSE = "COLLAPSE"

    @property
    def severity(self) -> int:
        """0 for HEALTHY, 1 for WATCH, 2 for COLLAPSE."""
        return _SEVERITY[self]


_SEVERITY = {State.HEALTHY: 0, State.WATCH: 1, State.COLLAPSE: 2}


class RollingBaseline:
    """Mean and standard deviation (ddof=0) of the last ``size`` values pushed.

    Sums are kept relative to a reference (the first value, then the mean recomputed exactly
    with ``math.fsum`` every ``10 * size`` pushes), which bounds cancellation and drift while
    staying O(1) and deterministic.

    Examples
    --------
    >>> b = RollingBaseline(size=3)
    >>> for x in [1.0, 2.0, 3.0, 10.0]:
    ...     b.push(x)
    >>> round(b.mean, 6), b.ready
    (5.0, True)
    >>> round(b.zscore(5.0 + 3 * b.std), 6)
    3.0
    """

    __slots__ = ("_buf", "_n", "_pos", "_pushes", "_ref", "_s1", "_s2", "min_std", "size")

    def __init__(self, size: int = 100, *, min_std: float = 0.0) -> None:
        self.size = check_positive_int(size, "size")
        self.min_std = float(min_std)
        self.reset()

    def reset(self) -> None:
        self._buf = [0.0] * self.size
        self._n = self._pos = self._pushes = 0
        self._ref = self._s1 = self._s2 = 0.0

    @property
    def count(self) -> int:
        return self._n

    @property
    def ready(self) -> bool:
        """True once ``size`` values are held."""
        return self._n == self.size

    @property
    def mean(self) -> float:
        return self._ref + self._s1 / self._n if self._n else math.nan

    @property
    def std(self) -> float:
        if not self._n:
            return math.nan
        m = self._s1 / self._n
        var = self._s2 / self._n - m * m
        return max(math.sqrt(var) if var > 0.0 else 0.0, self.min_std)

    def zscore(self, x: float) -> float:
        """``(x - mean) / std`` once ready, NaN before (and for non-finite x: +-inf/NaN)."""
        n = self._n
        if n < self.size:
            return math.nan
        # self.std and self.mean, inlined (per-step path): the same operations in the same order
        m = self._s1 / n
        var = self._s2 / n - m * m
        sd = max(math.sqrt(var) if var > 0.0 else 0.0, self.min_std)
        d = x - (self._ref + m)
        if sd == 0.0:
            return 0.0 if d == 0.0 else math.copysign(math.inf, d)
        return d / sd

    def push(self, x: float) -> None:
        """Add ``x`` (dropping the oldest value once full)."""
        n, pos, ref = self._n, self._pos, self._ref  # locals: the same operations, per step
        if n == self.size:
            d = self._buf[pos] - ref
            s1 = self._s1 - d
            s2 = self._s2 - d * d
        else:
            if n == 0:  # centre the sums on the first value: no cancellation from offsets
                ref, s1, s2 = x, 0.0, 0.0
                self._ref = x
            else:
                s1, s2 = self._s1, self._s2
            self._n = n + 1
        self._buf[pos] = x
        d = x - ref
        self._s1 = s1 + d
        self._s2 = s2 + d * d
        self._pos = (pos + 1) % self.size
        self._pushes += 1
        if self._pushes % (10 * self.size) == 0:  # rare: keeps the exact refresh out of p99
            held = self._buf[: self._n]
            m = math.fsum(held) / self._n
            self._ref = m
            self._s1 = math.fsum(v - m for v in held)
            self._s2 = math.fsum((v - m) ** 2 for v in held)

    def state_dict(self) -> dict[str, Any]:
        return {
            "buf": list(self._buf),
            "n": self._n,
            "pos": self._pos,
            "pushes": self._pushes,
            "ref": self._ref,
            "s1": self._s1,
            "s2": self._s2,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buf = [float(v) for v in state["buf"]]
        if len(buf) != self.size:
            raise InputError(f"baseline buf must have {self.size} values, got {len(buf)}")
        self._buf = buf
        self._n, self._pos, self._pushes = int(state["n"]), int(state["pos"]), int(state["pushes"])
        self._ref, self._s1, self._s2 = float(state["ref"]), float(state["s1"]), float(state["s2"])


class ZScoreAlarm:
    """Two-sided consecutive-count alarm over named z-score detectors.

    Each step every detector reports a z-score (NaN = not evaluated: its counters hold). A
    detector is *over* when ``|z| > watch_z`` (and *critical* when ``|z| > collapse_z``; use
    ``inf`` for detectors that only raise WATCH). WATCH starts when a detector has been over for
    ``raise_after`` consecutive steps, COLLAPSE when one has been critical for ``collapse_after``
    (default: ``raise_after``) or when the alarm has lasted ``escalate_after`` steps with some
    detector still over. The alarm clears after ``clear_after`` consecutive steps with every
    evaluated detector calm.

    Examples
    --------
    >>> alarm = ZScoreAlarm(("topology",), raise_after=2, clear_after=1)
    >>> [str(alarm.update((z,))) for z in [4.0, 4.0, 7.0, 0.0]]
    ['HEALTHY', 'WATCH', 'WATCH', 'HEALTHY']
    """

    __slots__ = (
        "_calm",
        "_crit",
        "_over",
        "_over_steps",
        "clear_after",
        "collapse_after",
        "collapse_z",
        "detectors",
        "escalate_after",
        "raise_after",
        "raised_by",
        "state",
        "watch_z",
    )

    def __init__(
        self,
        detectors: Sequence[str],
        *,
        watch_z: float | Sequence[float] = 3.0,
        collapse_z: float | Sequence[float] = 6.0,
        raise_after: int = 5,
        escalate_after: int = 50,
        clear_after: int = 5,
        collapse_after: int | None = None,
    ) -> None:
        self.detectors = tuple(detectors)
        k = len(self.detectors)
        self.watch_z = _per_detector(watch_z, k, "watch_z")
        self.collapse_z = _per_detector(collapse_z, k, "collapse_z")
        for w, c in zip(self.watch_z, self.collapse_z, strict=True):
            if not 0.0 < w < c:
                raise InputError(
                    f"thresholds must satisfy 0 < watch_z < collapse_z, got watch_z={w}, "
                    f"collapse_z={c}"
                )
        self.raise_after = check_positive_int(raise_after, "raise_after")
        self.collapse_after = (
            self.raise_after
            if collapse_after is None
            else check_positive_int(collapse_after, "collapse_after")
        )
        self.escalate_after = check_positive_int(escalate_after, "escalate_after")
        self.clear_after = check_positive_int(clear_after, "clear_after")
        self.reset()

    def reset(self) -> None:
        k = len(self.detectors)
        self._over = [0] * k
        self._crit = [0] * k
        self._calm = 0
        self._over_steps = 0
        self.state = State.HEALTHY
        self.raised_by: tuple[str, ...] = ()

    acknowledge = reset

    @property
    def active(self) -> bool:
        return self.state is not State.HEALTHY

    def pending(self, k: int) -> bool:
        """Detector ``k`` is over its WATCH threshold now (counting toward an alarm, or holding
        one). A monitor can keep such values out of that detector's baseline, so the first
        outliers of an event cannot inflate the spread they are judged against."""
        return self._over[k] > 0

    @property
    def longest_over(self) -> int:
        """The largest count of consecutive steps over the WATCH threshold, over detectors."""
        return max(self._over)

    @property
    def over_steps(self) -> int:
        """Steps of the current alarm with some detector over its WATCH threshold."""
        return self._over_steps

    def raise_now(self, k: int) -> State:
        """Raise WATCH at once on detector ``k`` (a jump too large to wait ``raise_after``
        steps for), as if it had been over its threshold that long; an active alarm is kept.

        >>> alarm = ZScoreAlarm(("topology", "layer"), raise_after=8)
        >>> alarm.update((0.0, 9.0)), alarm.raise_now(1), alarm.raised_by
        (<State.HEALTHY: 'HEALTHY'>, <State.WATCH: 'WATCH'>, ('layer',))
        """
        if self.state is State.HEALTHY:
            self._over[k] = max(self._over[k], self.raise_after)
            self.state = State.WATCH
            self.raised_by = (self.detectors[k],)
            self._over_steps = 1
            self._calm = 0
        return self.state

    def update(self, zs: Sequence[float]) -> State:
        """Feed this step's z-scores (one per detector, NaN = hold); return the new state."""
        any_over = False
        any_eval = False
        crit = False
        over_long: list[str] = []
        over, crits, raise_after = self._over, self._crit, self.raise_after
        collapse_after = self.collapse_after
        for k, z in enumerate(zs):
            if z != z:  # NaN: detector not evaluated this step
                if over[k] > 0:
                    any_over = True
                continue
            any_eval = True
            a = abs(z)
            if a > self.watch_z[k]:
                any_over = True
                over[k] += 1
                crits[k] = crits[k] + 1 if a > self.collapse_z[k] else 0
            else:
                over[k] = 0
                crits[k] = 0
            if over[k] >= raise_after or crits[k] >= collapse_after:
                over_long.append(self.detectors[k])
            if crits[k] >= collapse_after:
                crit = True
        if self.state is State.HEALTHY:
            if over_long:
                self.state = State.COLLAPSE if crit else State.WATCH
                self.raised_by = tuple(over_long)
                self._over_steps = 1
                self._calm = 0
            return self.state
        if any_eval and not any_over:
            self._calm += 1
            if self._calm >= self.clear_after:
                self.reset()
                return self.state
        else:
            self._calm = 0
            if any_over:
                self._over_steps += 1
        if over_long:
            self.raised_by = tuple(over_long)
        if crit or self._over_steps > self.escalate_after:
            self.state = State.COLLAPSE
        return self.state

    def state_dict(self) -> dict[str, Any]:
        return {
            "over": list(self._over),
            "crit": list(self._crit),
            "calm": self._calm,
            "over_steps": self._over_steps,
            "state": str(self.state),
            "raised_by": list(self.raised_by),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._over = [int(v) for v in state["over"]]
        self._crit = [int(v) for v in state["crit"]]
        self._calm = int(state["calm"])
        self._over_steps = int(state["over_steps"])
        self.state = State(state["state"])
        self.raised_by = tuple(state["raised_by"])


def _per_detector(value: float | Sequence[float], k: int, name: str) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),) * k
    out = tuple(float(v) for v in value)
    if len(out) != k:
        raise InputError(f"{name} must have one value per detector ({k}), got {describe(value)}")
    return out


class PeakRule:
    """ph-training's rule: ``ratio = h0 / peak`` with ``peak`` the highest h0 after ``warmup``
    updates; WATCH below ``watch_ratio``, COLLAPSE below ``collapse_ratio``.

    Examples
    --------
    >>> rule = PeakRule(warmup=0)
    >>> [str(rule.update(h)) for h in [1.0, 0.5, 0.2, 0.9]]
    ['HEALTHY', 'WATCH', 'COLLAPSE', 'HEALTHY']
    """

    __slots__ = ("collapse_ratio", "n", "peak", "ratio", "warmup", "watch_ratio")

    def __init__(
        self, *, watch_ratio: float = 0.6, collapse_ratio: float = 0.3, warmup: int = 10
    ) -> None:
        if not 0.0 <= collapse_ratio < watch_ratio <= 1.0:
            raise InputError(
                "thresholds must satisfy 0 <= collapse_ratio < watch_ratio <= 1, got "
                f"collapse_ratio={collapse_ratio}, watch_ratio={watch_ratio}"
            )
        self.watch_ratio = float(watch_ratio)
        self.collapse_ratio = float(collapse_ratio)
        self.warmup = check_positive_int(warmup, "warmup", minimum=0)
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.peak = 0.0
        self.ratio = 1.0

    @property
    def warming_up(self) -> bool:
        return self.n <= self.warmup

    def update(self, h0: float) -> State:
        """Track the peak (after warm-up) and classify ``h0``; NaN h0 counts as HEALTHY."""
        self.n += 1
        if self.n <= self.warmup or h0 != h0:
            self.ratio = h0 / self.peak if self.peak > 0.0 else 1.0
            return State.HEALTHY
        if h0 > self.peak:
            self.peak = h0
        self.ratio = h0 / self.peak if self.peak > 0.0 else 1.0
        if self.ratio < self.collapse_ratio:
            return State.COLLAPSE
        if self.ratio < self.watch_ratio:
            return State.WATCH
        return State.HEALTHY

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "peak": self.peak, "ratio": self.ratio}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n, self.peak, self.ratio = int(state["n"]), float(state["peak"]), float(state["ratio"])


class Streak:
    """Consecutive count of a condition: ``done`` once it has held ``length`` times in a row.

    Examples
    --------
    >>> s = Streak(2)
    >>> [s.update(hit) for hit in [True, False, True, True]], s.done
    ([1, 0, 1, 2], True)
    """

    __slots__ = ("count", "length")

    def __init__(self, length: int = 3, *, name: str = "length") -> None:
        self.length = check_positive_int(length, name)
        self.count = 0

    def update(self, hit: bool) -> int:
        """Count one more step where the condition holds (``hit``) or restart at 0."""
        self.count = self.count + 1 if hit else 0
        return self.count

    @property
    def done(self) -> bool:
        """The condition has held ``length`` consecutive times."""
        return self.count >= self.length

    def reset(self) -> None:
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])


class Patience(Streak):
    """``should_stop`` after ``patience`` truly consecutive COLLAPSE updates.

    Examples
    --------
    >>> p = Patience(2)
    >>> [p.update(s) for s in ["COLLAPSE", "HEALTHY", "COLLAPSE", "COLLAPSE"]]
    [False, False, False, True]
    """

    __slots__ = ()

    def __init__(self, patience: int = 3) -> None:
        super().__init__(patience, name="patience")

    @property
    def patience(self) -> int:
        return self.length

    def update(self, state: str) -> bool:  # type: ignore[override]
        # Streak.update and done, inlined (per-step path)
        count = self.count = self.count + 1 if state == State.COLLAPSE else 0
        return count >= self.length

    @property
    def should_stop(self) -> bool:
        return self.done


class FrozenBaseline:
    """The first ``size`` values pushed, then frozen: the reference of rules that compare every
    later check with the start of the run (collapse and centroid monitors).

    Every push counts toward ``size``; non-finite values are held (so the baseline spans the
    same checks whatever they held) but left out of the statistics.

    Examples
    --------
    >>> b = FrozenBaseline(3)
    >>> for x in [1.0, float("nan"), 3.0, 100.0]:
    ...     _ = b.push(x)
    >>> b.ready, b.median, b.std
    (True, 2.0, 1.4142135623730951)
    """

    __slots__ = ("size", "values")

    def __init__(self, size: int) -> None:
        self.size = check_positive_int(size, "size")
        self.values: list[float] = []

    def push(self, x: float) -> bool:
        """Hold ``x`` if the baseline is still filling; return whether it was taken."""
        if len(self.values) >= self.size:
            return False
        self.values.append(float(x))
        return True

    @property
    def ready(self) -> bool:
        return len(self.values) >= self.size

    @property
    def count(self) -> int:
        return len(self.values)

    def finite(self) -> np.ndarray:
        """The held values that are finite, in order (float64)."""
        a = np.asarray(self.values, dtype=np.float64)
        return a[np.isfinite(a)]

    @property
    def median(self) -> float:
        """Median of the finite values (NaN when there are none)."""
        f = self.finite()
        return float(np.median(f)) if f.size else math.nan

    @property
    def mean(self) -> float:
        f = self.finite()
        return float(np.mean(f)) if f.size else math.nan

    @property
    def std(self) -> float:
        """Sample standard deviation (ddof=1) of the finite values; 0 for one value."""
        f = self.finite()
        if f.size < 2:
            return 0.0 if f.size else math.nan
        return float(np.std(f, ddof=1))

    def reset(self) -> None:
        self.values = []

    def state_dict(self) -> dict[str, Any]:
        return {"values": list(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        values = [float(v) for v in state["values"]]
        if len(values) > self.size:
            raise InputError(f"baseline values must be at most {self.size}, got {len(values)}")
        self.values = values


def sidak_z(z: float, n: int) -> float:
    """Threshold the largest |z| of ``n`` independent standard normals exceeds as often as a
    single |z| exceeds ``z``: solves ``1 - (1 - erfc(t / sqrt 2))**n = erfc(z / sqrt 2)``.

    >>> sidak_z(3.0, 1), round(sidak_z(3.0, 192), 2)
    (3.0, 4.34)
    """
    if n == 1:
        return float(z)
    p_single = -math.expm1(math.log1p(-math.erfc(z / math.sqrt(2.0))) / n)
    lo, hi = float(z), 40.0
    for _ in range(200):  # bisection on the monotone two-sided tail
        mid = 0.5 * (lo + hi)
        if math.erfc(mid / math.sqrt(2.0)) > p_single:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def __getattr__(name: str) -> Any:
    # the change detector lives in its own module (and pulls numba in only when first used)
    if name in ("ChangeDetector", "cusum_threshold"):
        from . import changepoint

        return getattr(changepoint, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
