"""Monitors: stateful objects on one contract (:class:`Monitor`): ``check(...)`` returns a
status record (a :class:`MonitorStatus`), ``update(...)`` feeds data without a status, and
``reset()``, ``state_dict()``, ``load_state_dict()``, ``step_``, ``last_status_``,
``should_stop`` mean the same on every monitor. Monitors never touch files: rows go to an
injected writer. Every name here is also re-exported from ``streamtopo``; they are imported
lazily (PEP 562), so ``import streamtopo.monitors`` stays light.
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
