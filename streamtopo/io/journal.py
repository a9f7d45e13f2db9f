"""RunWriter: monitor rows → Arrow IPC journal → immutable Parquet parts, crash-safe.

The training thread only copies each row into a preallocated buffer. A flush writes the
buffered rows as one RecordBatch to the rank's journal (``part-NNNNNN.arrows``); once the journal
holds ``roll_rows`` rows it is closed and a background thread turns it into
``part-NNNNNN.parquet`` (``.tmp`` then ``os.replace``, then the journal is deleted). What a
flush has written survives ``kill -9`` (the page cache keeps it; ``fsync`` guards against power
loss too), and :func:`~streamtopo.io.recovery.recover`, run on every open, turns leftover
journals into parts.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .._validation import check_choice, check_positive_int, describe
from ..errors import InputError, InputTypeError, StreamtopoError
from ._buffers import NUMBERS, LayerBuffer, ScalarBuffer, Table
from ._layout import (
    JOURNAL_EXT,
    LAYER,
    RankLock,
    check_kind,
    check_names,
    check_run_id,
    file_name,
    layer_table_schema,
    parse_file,
    part_ext,
    rank_path,
    read_meta,
    register_table,
    run_path,
    table_schema_json,
    wide_columns,
)
from .recovery import RecoveryReport, convert_journal, expected_schemas, recover, recover_rank

__all__ = ["RunWriter", "recover"]

_ALARMS = frozenset({"WATCH", "COLLAPSE"})
_FSYNC = ("never", "part", "flush")
_STOP = object()


class RunWriter:
    """Crash-safe Parquet log of monitor rows; pass it as a monitor's ``writer=``.

    Parameters
    ----------
    log_dir : path
        Directory holding runs; created if needed. Everything is written strictly inside it.
    run_id : str, optional
        ``[A-Za-z0-9._-]``, at most 128 characters. Default: UTC time plus a random suffix
        (required when ``rank > 0`` so that all ranks agree on it). Reopening an existing run
        appends to it.
    rank : int, default 0
        Process rank; each rank writes its own ``rank=<r>/`` directory.
    flush_rows : int, default 512
        Rows buffered before a flush to the journal (the buffer is preallocated to this size).
        At 64 layers a row is ~300 bytes, so one flush is one ~150 kB write.
    flush_seconds : float, default 5
        Longest time a buffered row waits for its flush (checked on each row and by the
        background thread, so a stalled training loop still gets its rows on disk).
    roll_rows : int, default 65536
        Rows per journal before it is rolled into a Parquet part (also rolled at
        ``roll_bytes``). Parts of ~65k rows keep the file count low and row groups large.
    roll_bytes : int, default 64 MiB
        Upper bound of a journal's size before it is rolled (wide runs).
    fsync : {"never", "part", "flush"}, default "never"
        "never" survives ``kill -9`` through the page cache; "part" fsyncs each Parquet part
        before its journal is deleted; "flush" also fsyncs the journal at every flush.
    step_offset : int or "continue", default 0
        Added to every logged step. ``"continue"`` starts where this rank's recorded steps end
        (:attr:`next_step_`), for a monitor that restarts at step 0 on a resumed run.
    handle_sigterm : bool, default True
        Flush on SIGTERM, then run the previous handler (installed only from the main thread).

    Attributes
    ----------
    run_dir, rank_dir : Path
        ``<log_dir>/run=<run_id>`` and its ``rank=<r>`` directory.
    recovery_ : RecoveryReport
        What the recovery of this rank did on open.
    rows_written_ : int
        Rows flushed to journals so far.
    flushed_step_ : int
        Step of the last row a completed flush wrote (-1 before the first flush).
    parts_ : list of Path
        Parquet parts written by the background thread.
    next_step_ : int
        One past the largest layer step recorded in this rank.

    Notes
    -----
    Rows are dicts (the contract every monitor follows): ``"monitor"`` (kind), ``"step"``,
    ``"wall_time"``, ``"config"``; for ``"layer"`` also ``"signals"``, ``"layer_names"``,
    ``"values"`` (float array of shape (signals, layers)), ``"h0"``, ``"state"``, ``"reason"``;
    other kinds add scalar columns (int, float, str, bool) fixed by their first row. A bad row
    raises ``ValueError``/``TypeError`` and leaves the writer unchanged. Close the writer (or use
    ``with``); atexit closes writers left open. A forked child never writes its parent's files.

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
    >>> df = pl.read_parquet(writer.run_dir / "**/*.parquet", hive_partitioning=True)
    >>> df.select("step", "grad_norm/fc2", "h0", "rank").rows()
    [(0, 2.0, 1.0, 0), (1, 3.0, 2.0, 0), (2, 4.0, 3.0, 0)]
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
    ) -> None:
        if not isinstance(log_dir, (str, os.PathLike)):
            raise InputTypeError(f"log_dir must be a path, got {describe(log_dir)}")
        rank = check_positive_int(rank, "rank", minimum=0)
        if run_id is None:
            if rank != 0:
                raise InputError(f"run_id is required when rank > 0 (got rank={rank})")
            run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        self.run_id = check_run_id(run_id)
        self.rank = rank
        self.flush_rows = check_positive_int(flush_rows, "flush_rows")
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)):
            raise InputTypeError(f"flush_seconds must be a number, got {describe(flush_seconds)}")
        if not flush_seconds > 0:
            raise InputError(f"flush_seconds must be > 0, got {flush_seconds!r}")
        self.flush_seconds = float(flush_seconds)
        self.roll_rows = check_positive_int(roll_rows, "roll_rows")
        self.roll_bytes = check_positive_int(roll_bytes, "roll_bytes")
        self.fsync = check_choice(fsync, "fsync", _FSYNC)
        if step_offset != "continue" and (
            isinstance(step_offset, bool) or not isinstance(step_offset, (int, np.integer))
        ):
            raise InputError(
                f"step_offset must be an int or 'continue', got {describe(step_offset)}"
            )
        self.step_offset = step_offset

        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.run_dir = run_path(self.log_dir, self.run_id)
        self.run_dir.mkdir(exist_ok=True)
        self.rank_dir = rank_path(self.run_dir, rank)
        self.rank_dir.mkdir(exist_ok=True)
        meta = read_meta(self.run_dir)  # unknown version: RecoveryError before touching files
        self._rank_lock = RankLock(self.rank_dir / ".lock")
        try:
            self.recovery_: RecoveryReport = recover_rank(
                self.rank_dir,
                expected_schemas(meta),
                fsync=self.fsync != "never",
                root=self.run_dir,
            )
            self._next_index, self._last_step = _scan_rank(self.rank_dir)
        except BaseException:
            self._rank_lock.release()
            raise

        self._tables: dict[str, Table] = {}
        self._lock = threading.RLock()
        self._term_pending = False
        self._closed = False
        self._error: BaseException | None = None
        self._last_flush = time.monotonic()
        self._pid = os.getpid()
        self.rows_written_ = 0
        self.flushed_step_ = -1
        self.parts_: list[Path] = []
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self._thread = threading.Thread(
            target=self._background, name=f"streamtopo-writer-{rank}", daemon=True
        )
        self._thread.start()
        _register(self, handle_sigterm)

    # -- the hot path ----------------------------------------------------------------------
    def __call__(self, row: dict[str, Any]) -> None:
        """Append one monitor row (see the writer contract in the module docs)."""
        try:
            table = self._tables[row["monitor"]]
        except KeyError:
            table = self._open_table(row)
        except TypeError:
            raise InputTypeError(
                f"row must be a dict with a 'monitor' key, got {describe(row)}"
            ) from None
        with self._lock:
            if self._closed or self._error is not None:
                self._raise_closed()
            i = table.n
            try:
                step, wall = row["step"], row["wall_time"]
                if type(step) is not int and not isinstance(step, np.integer):
                    raise InputTypeError(f"row['step'] must be an int, got {describe(step)}")
                if type(wall) is not float and not isinstance(wall, NUMBERS):
                    raise InputTypeError(f"row['wall_time'] must be a float, got {describe(wall)}")
                state = table.buf.put(i, row)
            except KeyError as exc:
                raise InputError(f"row of monitor {table.kind!r} lacks key {exc}") from None
            table.step[i] = step + table.offset
            table.wall[i] = wall
            table.n = i + 1  # commit: nothing above changed the writer if it raised
            urgent = state != table.last_state and state in _ALARMS
            table.last_state = state
            if (
                urgent
                or i + 1 >= self.flush_rows
                or time.monotonic() - self._last_flush >= self.flush_seconds
            ):
                self._flush_locked(roll=True)
        if self._term_pending:
            self._signal_if_pending()

    def _signal_if_pending(self) -> None:
        """Handle a SIGTERM that arrived while this thread was inside the writer."""
        if self._term_pending:
            self._term_pending = False
            _on_sigterm(signal.SIGTERM, None)

    def _raise_closed(self) -> None:
        if self._error is not None:
            raise StreamtopoError(
                f"RunWriter {self.rank_dir} failed in its background thread: {self._error!r} "
                "(journals are kept; `streamtopo recover` converts them)"
            ) from self._error
        raise StreamtopoError(f"RunWriter {self.rank_dir} is closed")

    # -- tables ----------------------------------------------------------------------------
    def _open_table(self, row: Any) -> Table:
        if not isinstance(row, dict) or "monitor" not in row:
            raise InputTypeError(f"row must be a dict with a 'monitor' key, got {describe(row)}")
        kind = check_kind(row["monitor"])
        for key in ("step", "wall_time", "config"):
            if key not in row:
                raise InputError(f"row of monitor {kind!r} lacks key {key!r}")
        try:
            config = json.loads(json.dumps(row["config"], allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InputError(f"row['config'] must be JSON-serialisable: {exc}") from exc
        cap = self.flush_rows
        if kind == LAYER:
            for key in ("signals", "layer_names", "values", "h0", "state", "reason"):
                if key not in row:
                    raise InputError(f"row of monitor 'layer' lacks key {key!r}")
            signals = check_names(row["signals"], "row['signals']")
            names = check_names(row["layer_names"], "row['layer_names']")
            buf: Any = LayerBuffer(signals, names, cap)
            info = {
                "files": "rank=*/part-*.parquet",
                "signals": list(signals),
                "layer_names": list(names),
                "config": config,
                "schema": table_schema_json(layer_table_schema(signals, names)),
                "columns": wide_columns(signals, names),
            }
        else:
            buf = ScalarBuffer(kind, row, cap)
            info = {
                "files": f"rank=*/{kind}-*.{part_ext(kind)}",
                "config": config,
                "schema": table_schema_json(buf.table_schema),
            }
        with self._lock:
            if kind in self._tables:  # another thread got here first
                return self._tables[kind]
            register_table(self.run_dir, self.run_id, kind, info, fsync=self.fsync != "never")
            table = Table(
                kind, buf, cap, self._next_index.get(kind, 0), self._last_step.get(kind, -1)
            )
            if self.step_offset == "continue":
                table.offset = table.last_step + 1
            else:
                table.offset = int(self.step_offset)
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
            return last + 1

    # -- flushing --------------------------------------------------------------------------
    def flush(self) -> None:
        """Write buffered rows to the journal now."""
        with self._lock:
            if not self._closed:
                self._flush_locked(roll=True)
        self._signal_if_pending()

    def _flush_locked(self, *, roll: bool) -> None:
        """Write every table's buffered rows as one batch each. Caller holds the lock."""
        for table in self._tables.values():
            n = table.n
            if n == 0:
                continue
            try:
                batch = table.buf.batch(0, n, table.step, table.wall)
                if table.ipc is None:
                    self._open_journal(table)
                table.ipc.write_batch(batch)
                if self.fsync == "flush":
                    os.fsync(table.sink.fileno())
            except BaseException as exc:
                # a half-written batch would hide every later one from readers: stop here
                self._error = exc
                raise
            table.n = 0
            table.journal_rows += n
            table.last_step = max(table.last_step, int(table.step[n - 1]))
            self.rows_written_ += n
            self.flushed_step_ = int(table.step[n - 1])
            if roll and (
                table.journal_rows >= self.roll_rows
                or table.journal_rows * table.buf.row_bytes >= self.roll_bytes
            ):
                self._queue.put(self._close_journal(table))  # blocks: backpressure
        self._last_flush = time.monotonic()

    def _open_journal(self, table: Table) -> None:
        path = self.rank_dir / file_name(table.kind, table.index, JOURNAL_EXT)
        table.index += 1
        table.sink = pa.OSFile(str(path), "wb")
        table.ipc = pa.ipc.new_stream(table.sink, table.buf.schema)
        table.path = path
        table.journal_rows = 0

    def _close_journal(self, table: Table) -> tuple[Path, pa.Schema]:
        table.ipc.close()  # writes the end-of-stream marker
        if self.fsync == "flush":
            os.fsync(table.sink.fileno())
        table.sink.close()
        job = (table.path, table.buf.schema)
        table.ipc = table.sink = table.path = None
        table.journal_rows = 0
        return job

    # -- background thread: Parquet parts and timed flushes --------------------------------
    def _background(self) -> None:
        tick = min(max(self.flush_seconds / 4, 0.05), 1.0)
        while True:
            try:
                job = self._queue.get(timeout=tick)
            except queue.Empty:
                job = None
            if job is _STOP:
                return
            if job is None:
                self._timed_flush()
                continue
            path, schema = job
            report = RecoveryReport()
            try:
                convert_journal(path, schema, report, fsync=self.fsync != "never", validate=False)
            except BaseException as exc:  # kept for the training thread to raise
                self._error = exc
            else:
                self.parts_.extend(self.rank_dir / p for p in report.parts_written)

    def _timed_flush(self) -> None:
        if time.monotonic() - self._last_flush < self.flush_seconds:
            return
        # never wait for the training thread: it may itself wait on our queue (backpressure)
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self._closed:
                self._flush_locked(roll=False)
        except BaseException as exc:
            self._error = exc
        finally:
            self._lock.release()

    # -- closing ---------------------------------------------------------------------------
    def close(self) -> None:
        """Flush, roll every journal into a Parquet part, stop the thread, release the rank."""
        jobs = []
        with self._lock:
            if self._closed:
                return
            try:
                if self._error is None:
                    try:
                        self._flush_locked(roll=False)
                    except Exception:
                        pass  # kept in self._error, raised below
                for table in self._tables.values():
                    if table.ipc is not None:
                        try:
                            jobs.append(self._close_journal(table))
                        except Exception as exc:
                            self._error = self._error or exc
            finally:
                self._closed = True
        self._signal_if_pending()
        try:
            for job in jobs:
                self._queue.put(job)
            self._queue.put(_STOP)
            self._thread.join()
        finally:
            self._rank_lock.release()
            _unregister(self)
        if self._error is not None:
            self._raise_closed()

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
            if not self._closed and self._error is None:
                self._flush_locked(roll=False)


def _scan_rank(rank_dir: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Next part index and last recorded step per table kind, from the committed parts."""
    next_index: dict[str, int] = {}
    last_step: dict[str, int] = {}
    for path in rank_dir.iterdir():
        base = path.name.split(".corrupt")[0]  # quarantined journals keep their index taken
        parsed = parse_file(base)
        if parsed is None:
            continue
        kind, index, ext = parsed
        next_index[kind] = max(next_index.get(kind, 0), index + 1)
        if ext != JOURNAL_EXT and base == path.name:
            md = pq.ParquetFile(path).metadata
            for g in range(md.num_row_groups):
                stats = md.row_group(g).column(0).statistics
                if stats is not None and stats.has_min_max:
                    last_step[kind] = max(last_step.get(kind, -1), int(stats.max))
    return next_index, last_step


# -- process-wide hooks: atexit, SIGTERM, fork -----------------------------------------------
_LIVE: set[RunWriter] = set()
_REGISTRY_LOCK = threading.Lock()
_PREVIOUS_HANDLER: Any = None
_HANDLER_INSTALLED = False


def _register(writer: RunWriter, handle_sigterm: bool) -> None:
    global _HANDLER_INSTALLED, _PREVIOUS_HANDLER
    with _REGISTRY_LOCK:
        _LIVE.add(writer)
    if (
        handle_sigterm
        and not _HANDLER_INSTALLED
        and threading.current_thread() is threading.main_thread()
    ):
        _PREVIOUS_HANDLER = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _on_sigterm)
        _HANDLER_INSTALLED = True


def _unregister(writer: RunWriter) -> None:
    with _REGISTRY_LOCK:
        _LIVE.discard(writer)


def _on_sigterm(signum: int, frame: Any) -> None:
    """Flush every writer, then do what the previous handler would have done."""
    writers = list(_LIVE)
    # the handler runs in the main thread: if that thread holds a writer's lock, we have
    # interrupted it inside a writer call (RLock._is_owned: the test threading.Condition uses)
    busy = [w for w in writers if w._lock._is_owned()]
    if busy:
        # we interrupted this thread inside a writer: finish that call first, then flush
        for w in busy:
            w._term_pending = True
        return
    for w in writers:
        try:
            w._flush_for_signal()
        except Exception:  # pragma: no cover - never block termination on a logging error
            pass
    previous = _PREVIOUS_HANDLER
    if callable(previous):
        previous(signum, frame)
    elif previous is None or previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


@atexit.register
def _close_all() -> None:
    for w in list(_LIVE):
        if w._pid == os.getpid():
            try:
                w.close()
            except Exception as exc:  # pragma: no cover - report, never mask the exit
                import sys

                print(f"streamtopo: closing {w!r} failed: {exc!r}", file=sys.stderr)


def _after_fork_in_child() -> None:
    # a forked child (e.g. a DataLoader worker) must never write the parent's files
    for w in list(_LIVE):
        w._closed = True
    _LIVE.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
