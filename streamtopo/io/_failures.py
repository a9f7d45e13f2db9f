"""What a RunWriter does when the file system refuses a write (disk full, read-only, quota).

``on_error="warn"`` (the default) keeps training: the first failure of an episode is one
``WriteFailedWarning`` (``warnings.warn``) and one ERROR record on
``logging.getLogger("streamtopo")``; the rows stay in memory, bounded, and every later flush
retries them; when a flush succeeds again one WARNING record says so. ``on_error="raise"``
raises a :class:`~streamtopo.errors.WriteError` at every failed flush, with the same message and
the same rows kept. Either way the message says what failed, in which thread, and what was kept.

A failure in the writer's background thread (a timed flush, a journal rolled into a Parquet
part) cannot raise into training: it is logged at once and delivered to the training thread at
its next writer call (as the warning, or as the WriteError before that call's row is taken).
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path

from ..errors import WriteError, WriteFailedWarning

__all__ = ["FailurePolicy", "thread_label"]

_log = logging.getLogger("streamtopo")


def thread_label(background: threading.Thread | None) -> str:
    """Where the current code runs, in words."""
    here = threading.current_thread()
    if here is background:
        return f"the writer's background thread ({here.name!r})"
    return f"the calling thread ({here.name!r}, the one that called the writer)"


def step_span(first: int | None, last: int | None) -> str:
    if first is None or last is None:
        return ""
    return f"step {first}" if first == last else f"steps {first}..{last}"


class FailurePolicy:
    """Episode state and the reporting of write failures for one writer."""

    def __init__(self, on_error: str, where: Path) -> None:
        self.on_error = on_error
        self.where = where
        self.failing = False  # inside an episode: at least one failure since the last success
        self.failures = 0
        self.dropped_rows = 0
        self.dropped: list[str] = []  # step ranges dropped in this episode
        self._notices: list[tuple[str, BaseException | None]] = []
        self._lock = threading.Lock()

    thread: threading.Thread | None = None  # the writer's background thread

    # -- reporting --------------------------------------------------------------------------
    def message(self, what: str, exc: BaseException, kept: str) -> str:
        where = thread_label(self.thread)
        return f"RunWriter {self.where}: {what} failed in {where}: {exc!r}. {kept}"

    def flush_failed(
        self, kind: str, exc: BaseException, tables: list, flushed_step: int, background: bool
    ) -> None:
        """A flush failed for table ``kind``; ``tables`` keep their refused rows."""
        kept = [f"{t.pending_rows} {t.kind!r} row(s) ({t.pending_span()})" for t in tables]
        kept = [k for k, t in zip(kept, tables, strict=True) if t.pending_rows]
        text = (
            f"Rows already on disk are untouched (through step {flushed_step}); "
            f"{', '.join(kept) or 'no row'} kept in memory and retried at the next flush "
            f"(on_error={self.on_error!r})"
        )
        msg = self.message(f"writing {kind!r} rows to a journal", exc, text)
        self.failed(msg, exc, background=background)

    def roll_failed(self, path: Path, exc: BaseException, run_dir: Path) -> None:
        """The background roll of a journal into a Parquet part failed; the journal stays."""
        text = (
            f"The journal and its rows stay on disk ({path}); it is rolled again at close, by "
            f"the next writer of this rank, or by `streamtopo recover {run_dir}`"
        )
        self.failed(
            self.message(f"rolling journal {path.name} into a Parquet part", exc, text),
            exc,
            background=True,
        )

    def failed(self, msg: str, exc: BaseException, *, background: bool) -> None:
        """Record a failure; raise WriteError or warn now (calling thread) or later (background).

        In the calling thread with ``on_error="raise"`` this raises.
        """
        first = not self.failing
        self.failing = True
        self.failures += 1
        if first:
            _log.error("streamtopo: %s", msg)
        if background:
            if first or self.on_error == "raise":
                with self._lock:
                    self._notices.append((msg, exc))
            return
        if self.on_error == "raise":
            raise WriteError(msg) from exc
        if first:
            warnings.warn(msg, WriteFailedWarning, stacklevel=4)

    def dropped_rows_(self, n: int, span: str, bound: int, table: str) -> None:
        """Rows beyond the in-memory bound were dropped (the oldest kept ones)."""
        first = not self.dropped
        self.dropped_rows += n
        self.dropped.append(f"{table}: {span}")
        msg = (
            f"RunWriter {self.where}: writes keep failing and the rows kept in memory reached "
            f"{bound} for table {table!r}; dropped the oldest {n} row(s) ({span}). Readers "
            "will report the hole as a step gap"
        )
        if first:
            _log.error("streamtopo: %s", msg)
            with self._lock:
                self._notices.append((msg, None))
        else:
            _log.debug("streamtopo: %s", msg)

    def recovered(self, rows: int) -> None:
        """A flush succeeded with nothing left pending: the episode ends."""
        if not self.failing:
            return
        extra = (
            f"; {self.dropped_rows} row(s) had been dropped ({', '.join(self.dropped)})"
            if self.dropped_rows
            else ""
        )
        _log.warning(
            "streamtopo: RunWriter %s writes again after %d failed attempt(s); %d row(s) written, "
            "the ones kept in memory included%s",
            self.where,
            self.failures,
            rows,
            extra,
        )
        self.failing = False
        self.failures = 0
        self.dropped_rows = 0
        self.dropped = []

    # -- delivery to the calling thread ----------------------------------------------------
    def has_notices(self) -> bool:
        return bool(self._notices)

    def deliver(self, *, row_taken: bool) -> None:
        """Warn (``"warn"``) or raise WriteError (``"raise"``) for failures noticed elsewhere."""
        with self._lock:
            notices, self._notices = self._notices, []
        if not notices:
            return
        if self.on_error == "raise":
            text = " | ".join(m for m, _ in notices)
            if not row_taken:
                text += " (this call's row was not recorded)"
            raise WriteError(text) from notices[0][1]
        for msg, _ in notices:
            warnings.warn(msg, WriteFailedWarning, stacklevel=4)
