"""Run logs: crash-safe Parquet writing, recovery, reading and offline replay.

Monitors never touch files: they call ``writer(row)`` after each ``check()`` with a plain dict
(``{"monitor": kind, "step": ..., "wall_time": ..., "config": {...}, ...}``). A
:class:`RunWriter` is such a writer. Its run directory::

    <log_dir>/run=<run_id>/_meta.json           format version, names, config, schemas
    <log_dir>/run=<run_id>/table=<kind>/rank=<r>/part-NNNNNN.parquet  committed, immutable
    <log_dir>/run=<run_id>/table=<kind>/rank=<r>/part-NNNNNN.arrows   active journal

One directory per table (``layer``, ``loss``, ``centroid``, ...), so every reader of a directory
gets one schema. The layer table has ``step`` (int64), ``wall_time`` (timestamp), one float32
column ``<signal>/<layer>`` per signal and layer, ``h0`` (float64), ``state`` and ``reason``
(strings), the alarm's ``z``, ``stat``, ``culprits`` (list of layer names), ``direction`` and
``calibrating``. Plain polars reads it without streamtopo::

    pl.scan_parquet(run_dir / "table=layer/**/*.parquet", hive_partitioning=True)

and another monitor's table with ``pl.scan_parquet(run_dir / "table=centroid/**/*.parquet")``.
Format-1 runs (every table of a rank in ``rank=<r>/``) are still read.
:func:`read_run` does both with the schema of ``_meta.json`` (and can include rows still in
journals); :func:`replay` re-runs a LayerMonitor over the recorded signals; :func:`recover`
(run by every writer on open, and by ``streamtopo recover RUN``) turns journals a crash left
behind into parts.

A run directory is input, not truth: :func:`read_meta` checks every field of ``_meta.json``
(bounded size and nesting) before use; readers name a part that does not open and tell the user
to run ``streamtopo recover RUN``, which moves it to
``<run>/_quarantine/table=<kind>/rank=<r>/`` (bytes kept, globbed by no reader); a hole in a
rank's steps is a ``StepGapWarning``; symbolic links to ranks, parts or journals are refused. A
writer reopening a run follows ``resume=`` and refuses steps it already recorded; when the disk
refuses a write it follows ``on_error=``.
"""

from __future__ import annotations

from .journal import RunWriter
from .recovery import RecoveryReport, recover
from .replay import read_meta, read_run, replay, run_summary

__all__ = [
    "RecoveryReport",
    "RunWriter",
    "read_meta",
    "read_run",
    "recover",
    "replay",
    "run_summary",
]
