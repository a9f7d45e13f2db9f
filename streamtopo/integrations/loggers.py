"""Alarms where users already look: scalar loggers, ``logging`` records and an alarm hook.

:class:`AlarmReporter` turns each :class:`~streamtopo.integrations.training.TrainingStatus`
into the scalars of :func:`status_scalars` (keys under ``streamtopo/``) and sends them to
every logger given:

* an object with ``log_metrics(dict, step)`` (every Lightning logger),
* an object with ``log(dict, step=)`` (a W&B run, ``wandb.run``),
* an object with ``add_scalar(tag, value, step)`` (``torch.utils.tensorboard.SummaryWriter``).

It also writes a ``logging.getLogger("streamtopo")`` WARNING when an alarm episode starts
(HEALTHY → WATCH/COLLAPSE), when it escalates to COLLAPSE and when ``should_stop`` turns
True, and an INFO when the alarm ends; ``on_alarm(status)`` is called once per episode start
and once when ``should_stop`` turns True (the hook for Slack, e-mail, ``wandb.alert``). A stop
is never silent.

No framework is imported here: loggers are used through the methods above.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._validation import describe
from ..alarms import State
from ..errors import InputTypeError

__all__ = ["AlarmReporter", "status_scalars"]

_MONITORS = ("layer", "attention", "loss", "centroid", "collapse")
# the statistic that decides each monitor's state, first found wins
_STAT_FIELDS = ("stat", "z", "deviation", "ratio")
_H0_FIELDS = ("h0", "h0_gap", "ci")
_PREFIX = "streamtopo/"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return None
    value = float(value)
    return value if math.isfinite(value) else None


def _first(status: Any, names: tuple[str, ...]) -> float | None:
    """The first finite value among the fields ``names`` (``stat`` is NaN unless the monitor
    runs a change detector; otherwise the z-score is the firing statistic)."""
    for name in names:
        v = _finite(getattr(status, name, None))
        if v is not None:
            return v
    return None


def _subs(status: Any) -> dict[str, Any]:
    return {n: s for n in _MONITORS if (s := getattr(status, n, None)) is not None}


def status_scalars(status: Any) -> dict[str, float]:
    """The scalars logged for one status, keyed ``streamtopo/...``.

        ``streamtopo/state`` is 0 (HEALTHY), 1 (WATCH) or 2 (COLLAPSE); ``streamtopo/calibrating``
        is 1.0 while any monitor's baseline is not yet trusted; ``streamtopo/h0`` and
        ``streamtopo/stat`` are the layer monitor's total H0 and firing statistic (``stat`` under
    ``rule="cusum"``, else its z-score).
        For every monitor that has run, ``streamtopo/<name>/state`` and, when defined,
        ``streamtopo/<name>/h0`` and ``streamtopo/<name>/stat`` (``loss/loss`` for the loss).
        Non-finite values are left out (a NaN z while calibrating is no data point).

        Examples
        --------
        >>> from streamtopo.monitors import LayerStatus, MonitorStatus
        >>> from streamtopo.alarms import State
        >>> from streamtopo.integrations.training import TrainingStatus
        >>> layer = LayerStatus(4, State.WATCH, "topology z=+3.4", h0=0.5, z=3.4)
        >>> s = TrainingStatus(4, State.WATCH, "layer: ...", fired=("layer",), layer=layer)
        >>> status_scalars(s)  # doctest: +NORMALIZE_WHITESPACE
        {'streamtopo/state': 1.0, 'streamtopo/calibrating': 0.0, 'streamtopo/h0': 0.5,
         'streamtopo/stat': 3.4, 'streamtopo/layer/state': 1.0, 'streamtopo/layer/h0': 0.5,
         'streamtopo/layer/stat': 3.4}
    """
    subs = _subs(status)
    calibrating = bool(status.calibrating) or any(s.calibrating for s in subs.values())
    out = {
        f"{_PREFIX}state": float(State(status.state).severity),
        f"{_PREFIX}calibrating": float(calibrating),
    }
    main = subs.get("layer", status)
    for key, names in (("h0", ("h0",)), ("stat", _STAT_FIELDS)):
        v = _first(main, names)
        if v is not None:
            out[f"{_PREFIX}{key}"] = v
    for name, sub in subs.items():
        out[f"{_PREFIX}{name}/state"] = float(State(sub.state).severity)
        fields = {"h0": _H0_FIELDS, "stat": _STAT_FIELDS}
        if name == "loss":
            fields = {"loss": ("loss",), "stat": ("ratio",)}
        for key, names in fields.items():
            v = _first(sub, names)
            if v is not None:
                out[f"{_PREFIX}{name}/{key}"] = v
    return out


def _describe_alarm(status: Any) -> str:
    """Step, rule/reason, culprit layers and direction, in one line."""
    parts = [f"step {status.step}: {State(status.state).value}"]
    if status.reason:
        parts.append(f"({status.reason})")
    subs = _subs(status)
    for name in getattr(status, "fired", ()) or tuple(subs):
        sub = subs.get(name)
        culprits = tuple(getattr(sub, "culprits", ()) or ())
        direction = getattr(sub, "direction", "") or ""
        if culprits:
            parts.append(f"{name} culprits: {', '.join(culprits)}")
        if direction:
            parts.append(f"{name} direction: {direction}")
    return "; ".join(parts)


def _sink(obj: Any, where: str) -> Callable[[dict[str, float], int], None]:
    """How to send one dict of scalars at one step to ``obj``."""
    if callable(getattr(obj, "log_metrics", None)):
        return lambda d, step: obj.log_metrics(d, step)
    if callable(getattr(obj, "log", None)):
        return lambda d, step: obj.log(d, step=step)
    if callable(getattr(obj, "add_scalar", None)):

        def add(d: dict[str, float], step: int) -> None:
            for tag, value in d.items():
                obj.add_scalar(tag, value, step)

        return add
    raise InputTypeError(
        f"{where} must have log_metrics(dict, step), log(dict, step=) or "
        f"add_scalar(tag, value, step) (a Lightning logger, a W&B run, a TensorBoard "
        f"SummaryWriter), got {describe(obj)}"
    )


class AlarmReporter:
    """Send each status to loggers, ``logging`` and an alarm hook.

    Parameters
    ----------
    loggers : iterable
        Objects with ``log_metrics(dict, step)``, ``log(dict, step=)`` or
        ``add_scalar(tag, value, step)``; they receive :func:`status_scalars` at every
        evaluated step. A single logger may be given without a list.
    on_alarm : callable, optional
        ``on_alarm(status)``, called once when an alarm episode starts and once when
        ``should_stop`` turns True.
    logger : logging.Logger, optional
        Where the WARNING/INFO records go (default ``logging.getLogger("streamtopo")``).
    should_stop : callable, optional
        ``should_stop() -> bool``, asked after every evaluated status (the owner's
        ``should_stop``).

    Examples
    --------
    >>> from streamtopo.alarms import State
    >>> from streamtopo.monitors import MonitorStatus
    >>> class Recorder:
    ...     def __init__(self):
    ...         self.rows = []
    ...     def log(self, d, step=None):
    ...         self.rows.append((step, d["streamtopo/state"]))
    >>> rec, alarms = Recorder(), []
    >>> r = AlarmReporter([rec], on_alarm=alarms.append)
    >>> for t, state in enumerate([State.HEALTHY, State.WATCH, State.WATCH, State.HEALTHY]):
    ...     r.report(MonitorStatus(t, state, ""))
    >>> rec.rows
    [(0, 0.0), (1, 1.0), (2, 1.0), (3, 0.0)]
    >>> [a.step for a in alarms]
    [1]
    """

    def __init__(
        self,
        loggers: Iterable[Any] | Any = (),
        on_alarm: Callable[[Any], Any] | None = None,
        logger: logging.Logger | None = None,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        if loggers is None:
            loggers = ()
        if not isinstance(loggers, Iterable) or isinstance(loggers, (str, bytes, Mapping)):
            loggers = (loggers,)
        loggers = tuple(loggers)
        self._sinks = [_sink(obj, f"loggers[{i}]") for i, obj in enumerate(loggers)]
        self.loggers = loggers
        if on_alarm is not None and not callable(on_alarm):
            raise InputTypeError(f"on_alarm must be callable(status), got {describe(on_alarm)}")
        if logger is None:
            logger = logging.getLogger("streamtopo")
        if not isinstance(logger, logging.Logger):
            raise InputTypeError(f"logger must be a logging.Logger, got {describe(logger)}")
        if should_stop is not None and not callable(should_stop):
            raise InputTypeError(f"should_stop must be callable, got {describe(should_stop)}")
        self.on_alarm = on_alarm
        self.logger = logger
        self._should_stop = should_stop
        self._severity = 0
        self._stopped = False

    def report(self, status: Any, *, stop: bool | None = None) -> None:
        """Handle one status (statuses with ``evaluated=False`` repeat the last one: skipped).

        ``stop`` overrides the ``should_stop`` callable for this call.
        """
        if not getattr(status, "evaluated", True):
            return
        if self._sinks:
            scalars = status_scalars(status)
            step = int(status.step)
            for sink in self._sinks:
                sink(scalars, step)
        severity = State(status.state).severity
        if severity and not self._severity:
            self.logger.warning("streamtopo alarm starts at %s", _describe_alarm(status))
            if self.on_alarm is not None:
                self.on_alarm(status)
        elif severity > self._severity:
            self.logger.warning("streamtopo alarm escalates at %s", _describe_alarm(status))
        elif self._severity and not severity:
            why = str(getattr(status, "reason", "") or "")
            if "absorbed" in why:  # not a plain recovery: the new level was accepted
                self.logger.info("streamtopo alarm ends at step %s (HEALTHY: %s)", status.step, why)
            else:
                self.logger.info("streamtopo alarm ends at step %s (HEALTHY)", status.step)
        self._severity = severity
        if stop is None:
            stop = bool(self._should_stop()) if self._should_stop is not None else False
        if stop and not self._stopped:
            self.logger.warning("streamtopo says stop at %s", _describe_alarm(status))
            if self.on_alarm is not None:
                self.on_alarm(status)
        self._stopped = bool(stop)

    def reset(self) -> None:
        """Forget the current alarm episode and stop (e.g. after a rollback)."""
        self._severity = 0
        self._stopped = False

    def close(self) -> None:
        """Flush the loggers that can be flushed (they are not closed: the caller owns them)."""
        for obj in self.loggers:
            flush = getattr(obj, "flush", None)
            if callable(flush):
                flush()
