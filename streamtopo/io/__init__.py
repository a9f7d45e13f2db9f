"""Run logs: crash-safe Parquet writing (:class:`RunWriter`), recovery and offline replay."""

from __future__ import annotations

from .journal import RunWriter
from .recovery import RecoveryReport, recover
from .replay import read_run, replay

__all__ = ["RecoveryReport", "RunWriter", "read_run", "recover", "replay"]
