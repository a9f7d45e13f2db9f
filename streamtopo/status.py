"""Deprecated alias, kept for one release: the alarm engine moved to :mod:`streamtopo.alarms`
and the layer monitor's record is :class:`streamtopo.monitors.LayerStatus` (``Status`` here
and ``streamtopo.Status`` name it)."""

from __future__ import annotations

from .alarms import Patience, PeakRule, RollingBaseline, State, ZScoreAlarm, sidak_z
from .monitors._status import LayerStatus as Status

__all__ = ["Patience", "PeakRule", "RollingBaseline", "State", "Status", "ZScoreAlarm", "sidak_z"]
