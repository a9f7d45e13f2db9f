"""Exception hierarchy: one root, argument errors are also ``ValueError``/``TypeError``.

Warnings have one root too, :class:`StreamtopoWarning` (a ``UserWarning``), so
``warnings.filterwarnings("error", category=StreamtopoWarning)`` turns every one into an error.
"""

from __future__ import annotations

__all__ = [
    "InputError",
    "InputTypeError",
    "RecoveryError",
    "RecoveryWarning",
    "StepGapWarning",
    "StreamtopoError",
    "StreamtopoWarning",
    "WriteError",
    "WriteFailedWarning",
]


class StreamtopoError(Exception):
    """Root of every exception streamtopo raises on purpose."""


class InputError(StreamtopoError, ValueError):
    """An argument has the right type but a wrong value (shape, range, NaN, ...)."""


class InputTypeError(StreamtopoError, TypeError):
    """An argument has the wrong type."""


class RecoveryError(StreamtopoError):
    """A run directory cannot be read or recovered (unknown format version, ...)."""


class WriteError(StreamtopoError, OSError):
    """A run log could not be written (disk full, read-only file system, ...); the message says
    what failed, in which thread, and what was kept."""


class StreamtopoWarning(UserWarning):
    """Root of every warning streamtopo emits."""


class RecoveryWarning(StreamtopoWarning):
    """Opening a run changed it: an unreadable file was moved aside (its bytes are kept)."""


class StepGapWarning(StreamtopoWarning):
    """A run's recorded steps have a hole (a part was deleted or lost)."""


class WriteFailedWarning(StreamtopoWarning):
    """A RunWriter could not write (``on_error="warn"``): rows are kept in memory and retried."""
