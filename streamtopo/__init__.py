"""streamtopo — watch a neural network train and say, step by step, whether its internal
structure is healthy.

Public names are re-exported here lazily (PEP 562): ``import streamtopo`` loads neither numba
nor polars, and never torch, ripser, scipy or matplotlib; each name imports its module on
first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "StreamtopoError": "streamtopo.errors",
    "InputError": "streamtopo.errors",
    "InputTypeError": "streamtopo.errors",
    "RecoveryError": "streamtopo.errors",
    # H0 core
    "MergeEdges": "streamtopo.topology.h0",
    "betti0_at": "streamtopo.topology.h0",
    "h0_diagram": "streamtopo.topology.h0",
    "h0_total": "streamtopo.topology.h0",
    "h1_diagram": "streamtopo.topology.h0",
    "linkage": "streamtopo.topology.h0",
    "merge_order": "streamtopo.topology.h0",
    "persistence_entropy": "streamtopo.topology.h0",
    # cubical persistence and depth profile (seed 003)
    "BettiCurves": "streamtopo.topology.cubical",
    "betti_curves": "streamtopo.topology.cubical",
    "cubical_diagram": "streamtopo.topology.cubical",
    "cubical_diagrams": "streamtopo.topology.cubical",
    "DepthProfile": "streamtopo.monitors.depth",
    "LayerProfile": "streamtopo.topology.depth",
    "betti_profile": "streamtopo.topology.depth",
    # alarm engine and status records (Status: deprecated alias of LayerStatus)
    "State": "streamtopo.alarms",
    "Status": "streamtopo.status",
    "Monitor": "streamtopo.monitors._base",
    "MonitorStatus": "streamtopo.monitors._status",
    "LayerStatus": "streamtopo.monitors._status",
    # monitors
    "LayerMonitor": "streamtopo.monitors.layer",
    "ArrowRing": "streamtopo.ring",
    "MorseMonitor": "streamtopo.monitors.morse",
    "MorsePairs": "streamtopo.monitors.morse",
    # collapse index
    "collapse_components": "streamtopo.topology.collapse",
    "collapse_index": "streamtopo.topology.collapse",
    "CollapseMonitor": "streamtopo.monitors.collapse",
    "CollapseStatus": "streamtopo.monitors.collapse",
    "CentroidMonitor": "streamtopo.monitors.centroid",
    "GapStatus": "streamtopo.monitors.centroid",
    "difficulty": "streamtopo.monitors.centroid",
    # guard (acts on alarms: rollback + LR cut)
    "Guard": "streamtopo.guard",
    "Intervention": "streamtopo.guard",
    # data
    "load_digits": "streamtopo.data",
    # run logs
    "RunWriter": "streamtopo.io.journal",
    "RecoveryReport": "streamtopo.io.recovery",
    "read_run": "streamtopo.io.replay",
    "recover": "streamtopo.io.recovery",
    "replay": "streamtopo.io.replay",
    # calibration of the alarm knob on a user's healthy runs
    "calibrate": "streamtopo.app.calibrate",
    "Calibration": "streamtopo.app.calibrate",
    # training integration (torch is imported only when one of these is used)
    "LossRiseDetector": "streamtopo.monitors.loss",
    "LossStatus": "streamtopo.monitors._status",
    "TrainingMonitor": "streamtopo.integrations.training",
    "TrainingStatus": "streamtopo.integrations.training",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamtopo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .alarms import State
    from .app.calibrate import Calibration, calibrate
    from .data import load_digits
    from .errors import InputError, InputTypeError, RecoveryError, StreamtopoError
    from .guard import Guard, Intervention
    from .integrations.training import TrainingMonitor, TrainingStatus
    from .io.journal import RunWriter
    from .io.recovery import RecoveryReport, recover
    from .io.replay import read_run, replay
    from .monitors._base import Monitor
    from .monitors._status import LayerStatus, LossStatus, MonitorStatus
    from .monitors.centroid import CentroidMonitor, GapStatus, difficulty
    from .monitors.collapse import CollapseMonitor, CollapseStatus
    from .monitors.depth import DepthProfile
    from .monitors.layer import LayerMonitor
    from .monitors.loss import LossRiseDetector
    from .monitors.morse import MorseMonitor, MorsePairs
    from .ring import ArrowRing
    from .status import Status
    from .topology.collapse import collapse_components, collapse_index
    from .topology.cubical import BettiCurves, betti_curves, cubical_diagram, cubical_diagrams
    from .topology.depth import LayerProfile, betti_profile
    from .topology.h0 import (
        MergeEdges,
        betti0_at,
        h0_diagram,
        h0_total,
        h1_diagram,
        linkage,
        merge_order,
        persistence_entropy,
    )
