"""Exception hierarchy: one root, argument errors are also ``ValueError``/``TypeError``."""

from __future__ import annotations

__all__ = ["InputError", "InputTypeError", "RecoveryError", "StreamtopoError"]


class StreamtopoError(Exception):
    """Root of every exception streamtopo raises on purpose."""


class InputError(StreamtopoError, ValueError):
    """An argument has the right type but a wrong value (shape, range, NaN, ...)."""


class InputTypeError(StreamtopoError, TypeError):
    """An argument has the wrong type."""


class RecoveryError(StreamtopoError):
    """A run directory cannot be read or recovered (unknown format version, ...)."""
