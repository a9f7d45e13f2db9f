"""Monitors: stateful objects on one contract (:class:`Monitor`): ``check(...)`` returns a
status record (a :class:`MonitorStatus`), ``update(...)`` feeds data without a status, and
``reset()``, ``state_dict()``, ``load_state_dict()``, ``step_``, ``last_status_``,
``should_stop`` mean the same on every monitor. Monitors never touch files: rows go to an
injected writer. Every name here is also re-exported from ``streamtopo``; they are imported
lazily (PEP 562), so ``import streamtopo.monitors`` stays light.

Steps: LayerMonitor, LossRiseDetector and CollapseMonitor number statuses from 0 and ``step_``
is the next status's step; CentroidMonitor counts checks from 1 (seed 004) and MorseMonitor
counts edits since ``initialize`` (0 for it), so there ``step_`` equals the last status's step.
MorseMonitor has no alarm rule: its status is always HEALTHY and says what changed.

:class:`DepthProfile` is *not* a monitor: it profiles a fixed probe batch once per layer
(``add`` / ``omega`` / ``theta``, seed 003), has no per-step ``check`` and no alarm, so it does
not take the Monitor contract; it is re-exported here for compatibility.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Monitor": "streamtopo.monitors._base",
    "MonitorStatus": "streamtopo.monitors._status",
    "LayerStatus": "streamtopo.monitors._status",
    "LossStatus": "streamtopo.monitors._status",
    "LayerMonitor": "streamtopo.monitors.layer",
    "LossRiseDetector": "streamtopo.monitors.loss",
    "CentroidMonitor": "streamtopo.monitors.centroid",
    "GapStatus": "streamtopo.monitors.centroid",
    "CollapseMonitor": "streamtopo.monitors.collapse",
    "CollapseStatus": "streamtopo.monitors.collapse",
    "MorseMonitor": "streamtopo.monitors.morse",
    "MorseStatus": "streamtopo.monitors.morse",
    "DepthProfile": "streamtopo.monitors.depth",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamtopo.monitors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
