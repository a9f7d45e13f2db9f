"""Words of a change-detector alarm on layer streams (LayerMonitor's ``rule="cusum"``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..alarms import ChangeDetector, State

__all__ = ["cusum_reason"]


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
    if det.alarm_start >= 0:
        text += f" (since step {det.alarm_start})"
    return tuple(names), f"cusum: {text}"
