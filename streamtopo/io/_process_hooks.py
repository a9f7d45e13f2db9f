"""Process-wide hooks of the live RunWriters: flush on SIGTERM, close at exit, disown on fork.

Each open writer registers a handle (:class:`LiveWriter`: the few things these hooks may do to
it). SIGTERM flushes every writer, then does what the previous handler would have done; the
handler is installed by the first writer made in the main thread that asks for it. A handler
runs between two bytecodes of the main thread, possibly inside a writer call: then it only marks
the writers, and the interrupted call flushes and chains when it ends. At exit every writer of
this process is closed; in a forked child (a DataLoader worker) the parent's writers are
disowned and never write.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import Any, Protocol

__all__ = ["LiveWriter", "on_sigterm", "register", "unregister"]


class LiveWriter(Protocol):
    """What the process-wide hooks may do to one open writer."""

    def busy(self) -> bool:
        """The current thread is inside a call of the writer."""

    def defer_sigterm(self) -> None:
        """Have the writer call :func:`on_sigterm` when its current call ends."""

    def flush_for_signal(self) -> None:
        """Flush now (the writer's own process only)."""

    def close_at_exit(self) -> None:
        """Close the writer if this process opened it (its ``repr`` names the writer)."""

    def disown(self) -> None:
        """Never write again (a forked child's copy of its parent's writer)."""


LIVE: set[Any] = set()
_REGISTRY_LOCK = threading.Lock()
PREVIOUS_HANDLER: Any = None  # the SIGTERM handler before ours, chained after the flush
_HANDLER_INSTALLED = False


def register(writer: LiveWriter, handle_sigterm: bool) -> None:
    global _HANDLER_INSTALLED, PREVIOUS_HANDLER
    with _REGISTRY_LOCK:
        LIVE.add(writer)
    if (
        handle_sigterm
        and not _HANDLER_INSTALLED
        and threading.current_thread() is threading.main_thread()
    ):
        PREVIOUS_HANDLER = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, on_sigterm)
        _HANDLER_INSTALLED = True


def unregister(writer: LiveWriter) -> None:
    with _REGISTRY_LOCK:
        LIVE.discard(writer)


def on_sigterm(signum: int, frame: Any) -> None:
    """Flush every writer, then do what the previous handler would have done."""
    writers = list(LIVE)
    # the handler runs in the main thread: if that thread is inside a writer call, we have
    # interrupted it there
    busy = [w for w in writers if w.busy()]
    if busy:
        # we interrupted this thread inside a writer: finish that call first, then flush
        for w in busy:
            w.defer_sigterm()
        return
    for w in writers:
        try:
            w.flush_for_signal()
        except Exception:  # pragma: no cover - never block termination on a logging error
            pass
    previous = PREVIOUS_HANDLER
    if callable(previous):
        previous(signum, frame)
    elif previous is None or previous == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


@atexit.register
def _close_all() -> None:
    for w in list(LIVE):
        try:
            w.close_at_exit()
        except Exception as exc:  # pragma: no cover - report, never mask the exit
            print(f"streamtopo: closing {w!r} failed: {exc!r}", file=sys.stderr)


def _after_fork_in_child() -> None:
    # a forked child (e.g. a DataLoader worker) must never write the parent's files
    for w in list(LIVE):
        w.disown()
    LIVE.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
