"""What the Lightning and Hugging Face callbacks share: argument checks at construction.

A callback builds its :class:`~streamtopo.integrations.training.TrainingMonitor` only when the
framework hands it the model (``setup`` / ``on_train_begin``). Misspelled or ill-typed
arguments must not wait until then: :func:`check_monitor_kwargs` checks them when the
callback is constructed.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from .._validation import check_choice, check_positive_int, describe
from ..errors import InputTypeError
from .loggers import AlarmReporter

__all__ = ["check_monitor_kwargs", "monitor_parameters"]


def monitor_parameters() -> tuple[str, ...]:
    """The keyword arguments :class:`TrainingMonitor` takes besides ``model``.

    Examples
    --------
    >>> "log_dir" in monitor_parameters() and "model" not in monitor_parameters()
    True
    """
    from .training import TrainingMonitor

    params = inspect.signature(TrainingMonitor.__init__).parameters
    return tuple(p for p in params if p not in ("self", "model"))


def check_monitor_kwargs(
    kwargs: Mapping[str, Any], owner: str, own: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Check a callback's ``**monitor_kwargs`` now rather than when training starts.

    Unknown names raise :class:`~streamtopo.errors.InputTypeError` naming the argument, the
    closest valid name and every valid name (``own`` are the callback's own arguments);
    ``every``, ``resume``, ``loggers`` and ``on_alarm`` are validated as the monitor would.

    Examples
    --------
    >>> check_monitor_kwargs({"log_dir": "runs"}, "StreamtopoCallback")
    {'log_dir': 'runs'}
    >>> check_monitor_kwargs({"logdir": "runs"}, "StreamtopoCallback")
    Traceback (most recent call last):
    ...
    streamtopo.errors.InputTypeError: StreamtopoCallback got an unexpected argument 'logdir' (did you mean 'log_dir'?); valid arguments: ...
    """  # noqa: E501
    valid = tuple(own) + monitor_parameters()
    for name in kwargs:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputTypeError(
                f"{owner} got an unexpected argument {name!r}{hint}; "
                f"valid arguments: {', '.join(valid)}"
            )
    if "every" in kwargs:
        check_positive_int(kwargs["every"], "every")
    if "resume" in kwargs:
        from ._training_parts import RESUME

        check_choice(kwargs["resume"], "resume", RESUME)
    if "loggers" in kwargs or "on_alarm" in kwargs:
        AlarmReporter(kwargs.get("loggers", ()), kwargs.get("on_alarm"))
    return dict(kwargs)


def check_labels(labels: Any) -> Callable[[Any], Any] | None:
    """``labels`` must be None or ``callable(batch) -> labels``."""
    if labels is not None and not callable(labels):
        raise InputTypeError(f"labels must be callable(batch) -> labels, got {describe(labels)}")
    return labels
