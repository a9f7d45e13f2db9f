"""Where a RunWriter's flushed rows go: one journal per table, rolled into Parquet parts.

A flush appends each table's rows (kept ones first) to the table's open journal
(``part-NNNNNN.arrows``, opened at the first flush after a roll). A full journal is closed and
handed to the spool's background thread, which turns it into ``part-NNNNNN.parquet`` with the
code crash recovery uses; the hand-over blocks when two journals are already waiting
(backpressure). A journal that cannot be rolled now (its roll failed, or a failed append left
rows in it, or it was closed by the thread itself) is *left over*: the writer rolls it at close,
and recovery does if the process dies first. Between jobs the thread calls the writer's timed
flush. The counters (rows written, last step flushed) count what reached a journal.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ._buffers import Table
from ._journalfile import Journal
from ._layout import JOURNAL_EXT, file_name, table_path
from .recovery import RecoveryReport, convert_journal

__all__ = ["JournalSpool"]

Job = tuple[Path, pa.Schema]  # a closed journal and its schema
_STOP = object()


class JournalSpool:
    """The journals of one rank and the background thread that rolls them into parts.

    ``tick`` runs in the thread every ``tick_seconds`` without a job (the writer's timed
    flush); ``roll_failed(path, exc)`` runs there when a journal could not be rolled (it is
    left over first). :meth:`start` starts the thread, :meth:`finish` stops it.
    """

    def __init__(
        self,
        run_dir: Path,
        rank: int,
        fsync: str,
        *,
        roll_rows: int,
        roll_bytes: int,
        tick_seconds: float,
        tick: Callable[[], None],
        roll_failed: Callable[[Path, BaseException], None],
    ) -> None:
        self.run_dir, self.rank, self.fsync = run_dir, rank, fsync
        self.roll_rows, self.roll_bytes = roll_rows, roll_bytes
        self.rows_written = 0  # rows appended to journals
        self.flushed_step = -1  # step of the last row appended
        self.parts: list[Path] = []  # Parquet parts written by the thread
        self._tick, self._tick_seconds, self._roll_failed = tick, tick_seconds, roll_failed
        self._leftover: list[Job] = []  # journals not yet rolled to parts
        self._leftover_lock = threading.Lock()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=2)
        self.thread = threading.Thread(
            target=self._run, name=f"streamtopo-writer-{rank}", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def in_thread(self) -> bool:
        """Whether the caller is the spool's background thread."""
        return threading.current_thread() is self.thread

    # -- journals --------------------------------------------------------------------------
    def flush(
        self, tables: Iterable[Table], keep: Callable[[Table], None], *, roll: bool
    ) -> tuple[tuple[Table, Exception] | None, int]:
        """Write every table's kept and buffered rows; with ``roll``, roll the journals that
        reached ``roll_rows`` rows or ``roll_bytes``. A table the disk refuses is given to
        ``keep`` (its rows stay in memory) and the others are written. Returns the first
        refused table with its error (or None) and the rows written."""
        failed: tuple[Table, Exception] | None = None
        written = 0
        for table in tables:
            if table.n == 0 and not table.pending:
                continue
            before = table.pending_rows + table.n
            try:
                self.write(table)
            except Exception as exc:
                keep(table)
                if failed is None:
                    failed = (table, exc)
                continue
            written += before
            if roll and (
                table.journal.rows >= self.roll_rows
                or table.journal.rows * table.buf.row_bytes >= self.roll_bytes
            ):
                self.roll(table)  # blocks while two journals wait: backpressure
        return failed, written

    def write(self, table: Table) -> None:
        """Append ``table``'s kept rows, then its buffered ones, to its journal (opened if
        needed). A failed append raises with the rows not appended still in ``table``."""
        if table.journal is None:
            folder = table_path(self.run_dir, table.kind, self.rank)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / file_name(table.kind, table.index, JOURNAL_EXT)
            table.journal = Journal(path, table.buf.schema, fsync=self.fsync == "flush")
            table.index += 1
        while table.pending:
            self._append(table, table.pending[0])
            batch = table.pending.popleft()
            table.pending_rows -= batch.num_rows
            self._count(batch.num_rows, int(pc.max(batch.column(0)).as_py()))
        n = table.n
        if n:
            self._append(table, table.buf.batch(0, n, table.step, table.wall))
            table.n = 0
            self._count(n, int(table.step[n - 1]))
        table.last_step = max(table.last_step, self.flushed_step)

    def _append(self, table: Table, batch: pa.RecordBatch) -> None:
        journal = table.journal
        try:
            journal.append(batch)
        except BaseException:
            table.journal = None
            if journal.abandoned == 0:
                table.index -= 1  # the file is gone: its index is free again
            elif journal.rows:
                self._leave(journal.path, journal.schema)
            raise

    def _count(self, n: int, last: int) -> None:
        self.rows_written += n
        self.flushed_step = last

    def close_journal(self, table: Table) -> Job:
        """Close ``table``'s journal; the job that rolls it."""
        job = table.journal.close()
        table.journal = None
        return job

    def roll(self, table: Table) -> None:
        """Close ``table``'s journal and hand it to the thread (blocks while two wait); from
        the thread itself it is left over (the thread never waits on its own queue)."""
        job = self.close_journal(table)
        if self.in_thread():
            self._leave(*job)
        else:
            self._queue.put(job)  # blocks: backpressure

    def _leave(self, path: Path, schema: pa.Schema) -> None:
        with self._leftover_lock:
            self._leftover.append((path, schema))

    def take_leftover(self) -> list[Job]:
        """The journals left over so far (now the caller's to roll)."""
        with self._leftover_lock:
            jobs, self._leftover = self._leftover, []
        return jobs

    # -- the background thread -------------------------------------------------------------
    def finish(self, jobs: list[Job]) -> None:
        """Roll ``jobs``, then stop the thread and wait for it."""
        for job in jobs:
            self._queue.put(job)
        self._queue.put(_STOP)
        self.thread.join()

    def _run(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=self._tick_seconds)
            except queue.Empty:
                job = None
            if job is _STOP:
                return
            if job is None:
                self._tick()
                continue
            self._convert(*job)

    def _convert(self, path: Path, schema: pa.Schema) -> None:
        report = RecoveryReport()
        try:
            convert_journal(path, schema, report, fsync=self.fsync != "never", validate=False)
        except Exception as exc:  # the journal stays; never take the writer's lock here
            self._leave(path, schema)
            self._roll_failed(path, exc)
        else:
            self.parts.extend(path.parent / p for p in report.parts_written)
