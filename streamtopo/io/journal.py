"""RunWriter: monitor rows → Arrow IPC journal → immutable Parquet parts, crash-safe.

The training thread only copies each row into a preallocated buffer. A flush writes the
buffered rows as one RecordBatch to the rank's journal (``part-NNNNNN.arrows``); once the journal
holds ``roll_rows`` rows it is closed and a background thread turns it into
``part-NNNNNN.parquet`` (``.tmp`` then ``os.replace``, then the journal is deleted). What a
flush has written survives ``kill -9`` (the page cache keeps it; ``fsync`` guards against power
loss too), and :func:`~streamtopo.io.recovery.recover`, run on every open, turns leftover
journals into parts. When the disk refuses a write, the policy of ``_failures.py`` applies; the
run-id reuse policy and the step floor of a reopened rank are in ``_resume.py``; the journals
and the background thread that rolls them are ``_spool.py``'s; the flush on SIGTERM, the close
at exit and the fork guard are ``_process_hooks.py``'s.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from .._validation import check_choice, check_positive_int, describe
from ..errors import InputError, InputTypeError, StreamtopoError, WriteError, WriteFailedWarning
from ._buffers import LayerBuffer, Table, as_float, as_step, new_buffer
from ._claims import TableClaims
from ._failures import FailurePolicy, step_span
from ._layout import LAYER, check_kind, check_names, check_run_id, run_path, table_path
from ._meta import register_table
from ._process_hooks import on_sigterm, register, unregister
from ._resume import STEP_LIMIT, check_resume_args, open_rank, start_steps, step_error
from ._spool import JournalSpool
from .recovery import recover

__all__ = ["RunWriter", "recover"]

_ALARMS = frozenset({"WATCH", "COLLAPSE"})
_FSYNC = ("never", "part", "flush")
_ON_ERROR = ("warn", "raise")


class RunWriter:
    """Crash-safe Parquet log of monitor rows; pass it as a monitor's ``writer=``.

    Parameters
    ----------
    log_dir : path
        Directory holding runs; created if needed. Everything is written strictly inside it.
    run_id : str, optional
        ``[A-Za-z0-9._-]``, at most 128 characters. Default: UTC time plus a random suffix
        (required when ``rank > 0`` so that all ranks agree on it).
    rank : int, default 0
        Process rank; each rank writes its own ``table=<kind>/rank=<r>/`` directories.
    flush_rows : int, default 512
        Rows buffered before a flush to the journal (the buffer is preallocated to this size).
        At 64 layers a row is ~300 bytes, so one flush is one ~150 kB write.
    flush_seconds : float, default 5
        Longest time a buffered row waits for its flush (checked on each row and by the
        background thread, so a stalled training loop still gets its rows on disk).
    roll_rows : int, default 65536
        Rows per journal before it is rolled into a Parquet part (also rolled at
        ``roll_bytes``). Parts of ~65k rows keep the file count low and row groups large.
    fsync : {"never", "part", "flush"}, default "never"
        "never" survives ``kill -9`` through the page cache; "part" fsyncs each Parquet part
        before its journal is deleted; "flush" also fsyncs the journal at every flush.
    roll_bytes : int, default 64 MiB
        Upper bound of a journal's size before it is rolled (wide runs); also the bound of the
        rows one table keeps in memory while the disk refuses writes (see ``on_error``).
    step_offset : int or "continue", default 0
        Added to every logged step (0 <= offset < 2**62). ``"continue"`` starts where this
        rank's recorded steps end (:attr:`next_step_`), for a monitor that restarts at step 0
        on a resumed run.
    handle_sigterm : bool, default True
        Flush on SIGTERM, then run the previous handler (installed only from the main thread).
    resume : {"never", "allow", "must"}, default "never"
        What to do when this rank of ``run_id`` already holds rows. "never": an error naming the
        run id (reusing a run id used to append silently and mix two runs' steps); "allow":
        continue the run; "must": continue it, and a rank without rows is an error. A
        continued table accepts only steps above its last recorded one (a monitor restarting
        at step 0 is refused with that step and the ways on: ``step_offset="continue"`` or
        ``rewind_to``).
    rewind_to : int, optional
        Training restarted from a checkpoint taken at this step (``resume`` "allow" or "must"):
        rows from this step on are accepted again, and replay keeps them over the recorded
        ones (the later copy wins). The recorded rows stay on disk.
    on_error : {"warn", "raise"}, default "warn"
        When the disk refuses a flush (full, read-only, quota): "warn" keeps training, emits one
        :class:`~streamtopo.errors.WriteFailedWarning` and one ERROR record on
        ``logging.getLogger("streamtopo")`` per failure episode, keeps the refused rows in
        memory (at most ``max(flush_rows, roll_bytes // row size)`` rows per table; beyond it
        the oldest are dropped, said once, and readers report the hole as a step gap) and
        retries them at every later flush; "raise" raises
        :class:`~streamtopo.errors.WriteError` at each failed flush, keeping the rows the same
        way. Rows already on disk are never touched: a batch cut short is truncated away.

    Attributes
    ----------
    run_dir, rank_dir : Path
        ``<log_dir>/run=<run_id>`` and its layer table directory ``table=layer/rank=<r>``.
    recovery_ : RecoveryReport
        What the recovery of this rank did on open. Unreadable files it moved to
        ``<run>/_quarantine/`` are also announced with a
        :class:`~streamtopo.errors.RecoveryWarning`.
    rows_written_ : int
        Rows flushed to journals so far.
    flushed_step_ : int
        Step of the last row a completed flush wrote (-1 before the first flush).
    parts_ : list of Path
        Parquet parts written by the background thread.
    next_step_ : int
        One past the largest layer step recorded in this rank.
    pending_rows_ : int
        Rows kept in memory because the disk refused them (0 when all is well).

    Notes
    -----
    Rows are dicts (the contract every monitor follows): ``"monitor"`` (the table: the
    monitor's kind, or ``<kind>.<name>`` for a monitor built with ``name=``), ``"step"``
    (an int, 0 <= step < 2**62), ``"wall_time"``, ``"config"``; for ``"layer"`` also
    ``"signals"``, ``"layer_names"``, ``"values"`` (float array of shape (signals, layers)),
    ``"h0"``, ``"state"``, ``"reason"``; other kinds add scalar columns (int, float, str, bool)
    fixed by their first row. A bad row raises ``ValueError``/``TypeError`` and leaves the
    writer and its files unchanged. Close the writer (or use ``with``); atexit closes writers
    left open. A forked child never writes its parent's files.

    Examples
    --------
    >>> import tempfile, numpy as np, polars as pl
    >>> log_dir = tempfile.mkdtemp()
    >>> with RunWriter(log_dir, run_id="demo") as writer:
    ...     for step in range(3):
    ...         writer({"monitor": "layer", "step": step, "wall_time": 0.0,
    ...                 "signals": ("grad_norm",), "layer_names": ("fc1", "fc2"),
    ...                 "values": np.array([[1.0, 2.0 + step]], np.float32),
    ...                 "h0": 1.0 + step, "state": "HEALTHY", "reason": "ok", "config": {}})
    >>> df = pl.read_parquet(writer.run_dir / "table=layer/**/*.parquet", hive_partitioning=True)
    >>> df.select("step", "grad_norm/fc2", "h0", "rank").rows()
    [(0, 2.0, 1.0, 0), (1, 3.0, 2.0, 0), (2, 4.0, 3.0, 0)]

    Reopening the run takes a decision, and its steps continue:

    >>> RunWriter(log_dir, run_id="demo")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    streamtopo.errors.InputError: run_id 'demo' already holds rows of rank 0 in ...
    >>> with RunWriter(log_dir, run_id="demo", resume="allow") as writer:
    ...     writer.next_step_
    3
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        run_id: str | None = None,
        rank: int = 0,
        flush_rows: int = 512,
        flush_seconds: float = 5.0,
        roll_rows: int = 65536,
        fsync: str = "never",
        *,
        roll_bytes: int = 64 * 2**20,
        step_offset: int | str = 0,
        handle_sigterm: bool = True,
        resume: str = "never",
        rewind_to: int | None = None,
        on_error: str = "warn",
    ) -> None:
        if not isinstance(log_dir, (str, os.PathLike)):
            raise InputTypeError(f"log_dir must be a path, got {describe(log_dir)}")
        rank = check_positive_int(rank, "rank", minimum=0)
        if rank >= 10**9:
            raise InputError(f"rank must be < 10**9, got {rank}")
        if run_id is None:
            if rank != 0:
                raise InputError(f"run_id is required when rank > 0 (got rank={rank})")
            run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        self.run_id = check_run_id(run_id)
        self.rank = rank
        self.flush_rows = check_positive_int(flush_rows, "flush_rows")
        if not isinstance(handle_sigterm, bool):
            raise InputTypeError(f"handle_sigterm must be a bool, got {describe(handle_sigterm)}")
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)):
            raise InputTypeError(f"flush_seconds must be a number, got {describe(flush_seconds)}")
        if not 0 < flush_seconds < 1e9:
            raise InputError(f"flush_seconds must be > 0 (and < 1e9), got {flush_seconds!r}")
        self.flush_seconds = float(flush_seconds)
        self.roll_rows = check_positive_int(roll_rows, "roll_rows")
        self.roll_bytes = check_positive_int(roll_bytes, "roll_bytes")
        self.fsync = check_choice(fsync, "fsync", _FSYNC)
        self.resume, self.rewind_to, self.step_offset = check_resume_args(
            resume, rewind_to, step_offset
        )
        self.on_error = check_choice(on_error, "on_error", _ON_ERROR)

        self.log_dir = Path(log_dir)
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"log_dir {self.log_dir} cannot be created: {exc}") from exc
        self.run_dir = run_path(self.log_dir, self.run_id)
        self.rank_dir = table_path(self.run_dir, LAYER, rank)
        self._rank_lock, self.recovery_, self._next_index, self._last_step = open_rank(
            self.run_dir, rank, self.run_id, self.resume, fsync=self.fsync != "never"
        )

        self._tables: dict[str, Table] = {}
        self._claims = TableClaims()
        self._lock = threading.RLock()
        self._term_pending = False
        self._closed = False
        self._attention = False  # closed, or a failure to deliver: checked once per row
        self._failures = FailurePolicy(self.on_error, self.rank_dir)
        self._last_flush = time.monotonic()
        self._pid = os.getpid()
        self._spool = JournalSpool(
            self.run_dir,
            rank,
            self.fsync,
            roll_rows=self.roll_rows,
            roll_bytes=self.roll_bytes,
            tick_seconds=min(max(self.flush_seconds / 4, 0.05), 1.0),
            tick=self._timed_flush,
            roll_failed=self._roll_failed,
        )
        self.parts_: list[Path] = self._spool.parts
        self._failures.thread = self._spool.thread
        self._spool.start()
        self._live = _Live(self)
        register(self._live, handle_sigterm)

    def check_layer_names(self, signals: Any, layer_names: Any) -> None:
        """Raise now (naming the bad name) if a layer table with these signal and layer names
        could not be written: monitors call this when a writer is attached, so a name the
        table cannot hold fails at construction instead of at every ``check()``."""
        check_names(signals, "signals")
        check_names(layer_names, "layer_names")

    def claim_table(self, table: Any, owner: object) -> None:
        """Give table ``table`` to monitor ``owner``; raise if another live monitor holds it.

        Two monitors writing one table (a train and an eval LayerMonitor, both unnamed) would
        interleave the same steps, and replay would keep one row per step. Monitors call this
        at construction; the claim ends when its monitor is garbage-collected.
        """
        table = check_kind(table)
        with self._lock:
            self._claims.claim(table, owner, self.run_dir)

    # -- the hot path ----------------------------------------------------------------------
    def __call__(self, row: dict[str, Any]) -> None:
        """Append one monitor row (see the writer contract in the class notes)."""
        try:
            table = self._tables[row["monitor"]]
        except KeyError:
            table = self._open_table(row)
        except TypeError:
            raise InputTypeError(
                f"row must be a dict with a 'monitor' key, got {describe(row)}"
            ) from None
        with self._lock:
            if self._attention:
                self._attend()
            i = table.n
            try:
                step, wall = row["step"], row["wall_time"]
                stored = self._stored(table, step)
                if type(wall) is not float:
                    wall = as_float(wall, "row['wall_time']")
                state = table.buf.put(i, row)
            except KeyError as exc:
                raise InputError(f"row of monitor {table.kind!r} lacks key {exc}") from None
            self._commit(table, i, stored, wall, state)  # nothing above changed the writer
        if self._term_pending:
            self._signal_if_pending()

    def append_layer(
        self,
        table: str,
        step: int,
        values: Any,
        h0: float,
        state: str,
        reason: str,
        z: float,
        stat: float,
        culprits: tuple[str, ...],
        direction: str,
        calibrating: bool,
        missing: Any,
        signals: tuple[str, ...],
        layer_names: tuple[str, ...],
        config: dict[str, Any],
    ) -> None:
        """Append one layer row given field by field: what ``self(row)`` does with the same
        row as a dict, minus building and unpacking the dict.

        :class:`~streamtopo.monitors.LayerMonitor` logs through this on every step (it copies
        ``values``, so the monitor passes its own buffer without copying it first). The fields
        are checked as in ``self(row)``; a bad one raises and changes nothing. The first row of
        a table (and every row while the writer has something to report) goes through
        ``self(row)``. ``wall_time`` is the time of the call.

        Parameters
        ----------
        table : str
            The table (``"layer"``, or ``"layer.<name>"``).
        step, values, h0, state, reason, z, stat, culprits, direction, calibrating, missing
            The row's fields (see the class notes); ``missing`` may be None.
        signals, layer_names : tuple of str
            Must match the table's.
        config : dict
            The monitor's configuration (recorded with the table's first row).

        Examples
        --------
        >>> import tempfile, math, numpy as np
        >>> with RunWriter(tempfile.mkdtemp(), run_id="fields") as writer:
        ...     writer.append_layer("layer", 0, np.array([[1.0, 2.0]], np.float32), 0.5,
        ...                         "HEALTHY", "ok", math.nan, math.nan, (), "", False, None,
        ...                         ("grad_norm",), ("fc1", "fc2"), {})
        ...     writer.flush()
        ...     writer.rows_written_
        1
        """
        t = self._tables.get(table)
        if t is None or self._attention or type(t.buf) is not LayerBuffer:
            row = {
                "monitor": table, "step": step, "wall_time": time.time(), "signals": signals,
                "layer_names": layer_names, "values": values, "h0": h0, "state": state,
                "reason": reason, "z": z, "stat": stat, "culprits": culprits,
                "direction": direction, "calibrating": calibrating, "config": config,
            }  # fmt: skip
            if missing is not None:
                row["missing"] = missing
            return self(row)
        buf = t.buf
        if signals is not buf.signals or layer_names is not buf.layer_names:
            buf.match_names(signals, layer_names)
        with self._lock:
            i = t.n
            stored = self._stored(t, step)
            state = buf.put_fields(
                i, values, h0, state, reason, z, stat, culprits, direction, calibrating, missing
            )
            self._commit(t, i, stored, time.time(), state)
        if self._term_pending:
            self._signal_if_pending()

    def _stored(self, t: Table, step: Any) -> int:
        """``step`` as stored in ``t`` (offset by a resume), or the error naming it."""
        if type(step) is not int:
            step = as_step(step)
        stored = step + t.offset
        if step < 0 or not t.floor < stored < STEP_LIMIT:
            raise step_error(t.kind, self.rank_dir, step, t.offset, t.floor)
        return stored

    def _commit(self, t: Table, i: int, stored: int, wall: float, state: Any) -> None:
        """Commit row ``i`` of ``t`` (under the lock, its fields already stored), then flush
        when an alarm starts, the buffer is full or ``flush_seconds`` have passed."""
        t.step[i] = stored
        t.wall[i] = wall
        t.n = i + 1
        urgent = state != t.last_state and state in _ALARMS
        t.last_state = state
        if (
            urgent
            or i + 1 >= self.flush_rows
            or time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self._flush_locked(roll=True)

    def _attend(self, *, row: bool = True) -> None:
        """The writer is closed, or a failure noticed in the background is to be delivered
        (before this call's ``row`` is taken)."""
        if self._closed:
            raise StreamtopoError(f"RunWriter {self.rank_dir} is closed")
        self._attention = False
        self._failures.deliver(row_taken=not row)

    def _signal_if_pending(self) -> None:
        """Handle a SIGTERM that arrived while this thread was inside the writer."""
        if self._term_pending:
            self._term_pending = False
            on_sigterm(signal.SIGTERM, None)

    # -- tables ----------------------------------------------------------------------------
    def _open_table(self, row: Any) -> Table:
        cap = self.flush_rows
        kind, buf, info = new_buffer(row, cap)
        with self._lock:
            if kind in self._tables:  # another thread got here first
                return self._tables[kind]
            if self._attention:
                self._attend()
            table = Table(
                kind, buf, cap, self._next_index.get(kind, 0), self._last_step.get(kind, -1)
            )
            table.offset, table.floor = start_steps(
                table.last_step, self.step_offset, self.rewind_to
            )
            # the whole first row is checked before _meta.json registers the table
            self._stored(table, row["step"])
            if type(row["wall_time"]) is not float:
                as_float(row["wall_time"], "row['wall_time']")
            buf.put(0, row)
            try:
                register_table(self.run_dir, self.run_id, kind, info, fsync=self.fsync != "never")
            except OSError as exc:  # not kept in memory: without _meta.json no reader knows it
                raise WriteError(
                    f"RunWriter {self.rank_dir}: registering table {kind!r} in _meta.json "
                    f"failed in the calling thread: {exc!r}; this row and table are not "
                    "recorded (call again once the disk accepts writes), other tables go on"
                ) from exc
            self._tables[kind] = table
        return table

    @property
    def next_step_(self) -> int:
        """One past the largest layer-table step recorded in this rank (0 for a new run)."""
        with self._lock:
            t = self._tables.get(LAYER)
            last = self._last_step.get(LAYER, -1)
            if t is not None:
                last = max(last, t.last_step, *(int(x) for x in t.step[: t.n]))
                for batch in t.pending:
                    last = max(last, int(pc.max(batch.column(0)).as_py()))
            return last + 1

    @property
    def rows_written_(self) -> int:
        """Rows flushed to journals so far."""
        return self._spool.rows_written

    @property
    def flushed_step_(self) -> int:
        """Step of the last row a completed flush wrote (-1 before the first flush)."""
        return self._spool.flushed_step

    @property
    def pending_rows_(self) -> int:
        """Rows kept in memory because the disk refused them."""
        with self._lock:
            return sum(t.pending_rows for t in self._tables.values())

    # -- flushing --------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered rows to the journal now (and retry rows the disk refused before)."""
        with self._lock:
            if not self._closed:
                if self._attention:
                    self._attend(row=False)
                self._flush_locked(roll=True)
        self._signal_if_pending()

    def _flush_locked(self, *, roll: bool) -> None:
        """Write every table's kept and buffered rows. Caller holds the lock.

        A table the disk refuses keeps its rows (see ``on_error``); the others are written.
        """
        failed, written = self._spool.flush(self._tables.values(), self._keep, roll=roll)
        self._last_flush = time.monotonic()
        if failed is not None:
            table, exc = failed
            background = self._spool.in_thread()
            self._failures.flush_failed(
                table.kind, exc, list(self._tables.values()), self.flushed_step_, background
            )
            self._attention = self._attention or background
        elif self._failures.failing and not any(t.pending for t in self._tables.values()):
            self._failures.recovered(written)

    def _keep(self, table: Table) -> None:
        """Move the buffered rows of a refused flush into the table's bounded memory."""
        bound = max(self.flush_rows, self.roll_bytes // table.buf.row_bytes)
        dropped, first, last = table.keep(bound)
        if dropped:
            self._failures.dropped_rows_(dropped, step_span(first, last), bound, table.kind)
            self._attention = True

    # -- the spool's background thread: timed flushes, failed rolls --------------------------
    def _timed_flush(self) -> None:
        if time.monotonic() - self._last_flush < self.flush_seconds:
            return
        # never wait for the training thread: it may itself wait on our queue (backpressure)
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self._closed:
                self._flush_locked(roll=False)
        finally:
            self._lock.release()

    def _roll_failed(self, path: Path, exc: BaseException) -> None:
        """A journal could not be rolled into a part (it is left over for close/recovery)."""
        self._failures.roll_failed(path, exc, self.run_dir)
        self._attention = True

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, roll every journal into a Parquet part, stop the thread, release the rank.

        Rows the disk still refuses are lost here: said by a WriteFailedWarning ("warn") or a
        WriteError ("raise") raised after the writer is closed and its rank released.
        """
        jobs = []
        error: BaseException | None = None
        lost = ""
        with self._lock:
            if self._closed:
                return
            try:
                try:
                    self._flush_locked(roll=False)
                except WriteError as exc:
                    error = exc
                lost = ", ".join(
                    f"{t.pending_rows} {t.kind!r} row(s) ({t.pending_span()})"
                    for t in self._tables.values()
                    if t.pending_rows
                )
                for table in self._tables.values():
                    if table.journal is not None:
                        jobs.append(self._spool.close_journal(table))
                jobs += self._spool.take_leftover()
            finally:
                self._closed = self._attention = True
        self._signal_if_pending()
        try:
            self._spool.finish(jobs)
        finally:
            self._rank_lock.release()
            unregister(self._live)
        self._failures.deliver(row_taken=True)
        if lost:
            msg = (
                f"RunWriter {self.rank_dir} closed while the disk still refused writes: "
                f"{lost} could not be written and are lost; rows already on disk are kept"
            )
            if self.on_error == "raise":
                raise WriteError(msg) from error
            warnings.warn(msg, WriteFailedWarning, stacklevel=2)
        elif error is not None:
            raise error

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"RunWriter({str(self.rank_dir)!r}, {state}, rows_written_={self.rows_written_})"

    # -- signals ---------------------------------------------------------------------------
    def _flush_for_signal(self) -> None:
        """Flush from the SIGTERM handler (never inside one of our own critical sections)."""
        if self._closed or self._pid != os.getpid():
            return
        with self._lock:
            if not self._closed:
                self._flush_locked(roll=False)


class _Live:
    """A writer as the process-wide hooks (``_process_hooks.py``) see it."""

    __slots__ = ("writer",)

    def __init__(self, writer: RunWriter) -> None:
        self.writer = writer

    def busy(self) -> bool:
        # RLock._is_owned: held by the current thread (the test threading.Condition uses)
        return self.writer._lock._is_owned()

    def defer_sigterm(self) -> None:
        self.writer._term_pending = True

    def flush_for_signal(self) -> None:
        self.writer._flush_for_signal()

    def close_at_exit(self) -> None:
        if self.writer._pid == os.getpid():
            self.writer.close()

    def disown(self) -> None:
        self.writer._closed = self.writer._attention = True

    def __repr__(self) -> str:
        return repr(self.writer)
