"""LayerMonitor's ``rule="cusum"``: the change detector over the layer streams, and the words of
its alarms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..alarms import ChangeDetector, State

__all__ = ["CusumRule", "cusum_reason", "evaluations"]

_STATES = (State.HEALTHY, State.WATCH, State.COLLAPSE)


class CusumRule:
    """The change detector of a LayerMonitor: stream 0 is ``log h0``, stream ``1 + s * L + i``
    layer i's median-relative value of signal s (when ``layer_rule``). Saved and restored as
    the detector itself (its ``state_dict``). Without ``topology`` stream 0 is held at 0 (it
    never alarms): the streak rule's kept detector watches the layers only, because ``h0`` of
    a 16-step window turns a one-step spike of one layer into a 16-step shift, which the
    CUSUM took for a lasting change (COLLAPSE for ~120 evaluations)."""

    def __init__(
        self,
        n_signals: int,
        n_layers: int,
        layer_rule: bool,
        fa_per_1k: float,
        escalate_after: int,
        min_history: int = 40,
        topology: bool = True,
    ) -> None:
        self._topology = topology
        n = 1 + (n_signals * n_layers if layer_rule else 0)
        self.detector = ChangeDetector(
            n, fa_per_1k, escalate_after=escalate_after, min_history=min_history
        )
        self._x = np.zeros(n)
        self._u = self._x[1:].reshape(n_signals, n_layers) if layer_rule else None

    @property
    def stream_buffer(self) -> np.ndarray:
        """The (N,) stream vector :meth:`update` fills (the fused replay writes it in place)."""
        return self._x

    def reset(self) -> None:
        self.detector.reset()

    def state_dict(self) -> dict[str, Any]:
        return self.detector.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.detector.load_state_dict(state)

    @property
    def state(self) -> State:
        """The detector's state, unchanged (a step that cannot be scored holds it)."""
        return _STATES[self.detector.code]

    def update(self, step: int, h0: float, u: np.ndarray) -> State:
        """Score one evaluation: ``h0`` and the (signals, layers) median-relative values ``u``."""
        if self._topology:
            self._x[0] = math.log(h0) if h0 > 0.0 else -math.inf
        if self._u is not None:
            self._u[...] = u  # np.copyto's result, at half its call cost
        return _STATES[self.detector.step(self._x, step)]

    def score(self, step: int, u: np.ndarray) -> State:
        """:meth:`update` without ``log h0`` (``topology=False``): the kept detector's
        per-step call."""
        self._u[...] = u
        return _STATES[self.detector.step(self._x, step)]

    def describe(
        self,
        state: State,
        layer_names: Sequence[str],
        signals: Sequence[str],
        max_culprits: int,
        escalate_after: int,
        log_units: bool,
    ) -> tuple[str, tuple[str, ...], str, float]:
        """``(direction, culprits, reason, statistic)`` of the last :meth:`update`."""
        det = self.detector
        if state is State.HEALTHY:
            reason = "ok"
            if det.calibrating:
                reason = f"ok, calibrating ({det.history}/{det.trusted_after} baseline values)"
            if det.absorbed:
                reason += f"; shift absorbed (held {evaluations(det.absorbed_length)})"
            return "", (), reason, det.stat
        direction = "rising" if det.direction > 0 else "falling" if det.direction < 0 else ""
        culprits, reason = cusum_reason(
            det, state, direction, layer_names, signals, max_culprits, escalate_after, log_units
        )
        return direction, culprits, reason, det.stat


def cusum_reason(
    det: ChangeDetector,
    state: State,
    direction: str,
    layer_names: Sequence[str],
    signals: Sequence[str],
    max_culprits: int,
    escalate_after: int,
    log_units: bool = True,
) -> tuple[tuple[str, ...], str]:
    """Culprits (layers of the streams over the threshold, largest statistic first, at most
    ``max_culprits``) and the reason of an alarm of ``det``, whose stream 0 is ``log h0`` and
    stream ``1 + s * L + i`` is layer i's median-relative value of signal s (log values when
    ``log_units``: a jump is then written as a factor)."""
    L = len(layer_names)
    streams = det.streams()
    stat = det.stat
    names: list[str] = []
    what: list[str] = []
    for j in streams:
        if j == 0:
            what.append("log h0")
            continue
        s, i = divmod(j - 1, L)
        name = layer_names[i]
        if len(what) < max_culprits:
            what.append(f"{name} [{signals[s]}]")
        if name not in names and len(names) < max_culprits:
            names.append(name)
    if not streams:
        text = "alarm held (no stream over the threshold now)"
    elif stat == math.inf and det.direction == 0:  # the detector saw a non-finite value
        text = f"{', '.join(what)} non-finite" + (" (h0 = 0)" if streams[0] == 0 else "")
    else:
        how = direction
        if streams[0] == 0:
            how += " (layers diverging)" if direction == "rising" else " (layers converging)"
        if det.jumped:  # the jump check: a settled stream moved by orders of magnitude
            move = abs(det.stream_move(streams[0]))
            if log_units:
                size = f"jump x{math.exp(min(move, 700.0)):.0f} > x{math.exp(det.jump):.0f}"
            else:
                size = f"jump {move:.3g} > {det.jump:.3g}"
        else:
            size = f"S={stat:.1f} >= {det.h_watch_:.1f}"
        text = f"{', '.join(what)} {how}, {size}"
    if state is State.COLLAPSE and stat < det.h_collapse_:
        text += f"; alarm older than {escalate_after} evaluations"
    if det.alarm_length:  # relative: a TrainingMonitor's own steps differ from the monitor's
        text += f" (for {evaluations(det.alarm_length)})"
    return tuple(names), f"cusum: {text}"


def evaluations(n: int) -> str:
    """``"1 evaluation"`` / ``"n evaluations"``.

    >>> evaluations(1), evaluations(30)
    ('1 evaluation', '30 evaluations')
    """
    return f"{n} evaluation" + ("" if n == 1 else "s")
