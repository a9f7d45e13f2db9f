"""The Monitor base: one contract for every stateful monitor.

In the spirit of torchmetrics' ``add_state``, a monitor declares its state once — the names of
the attributes that hold it, in ``_state_`` — and gets from that declaration:

- ``reset()`` (``step_ = 0``, ``last_status_ = None``, then the subclass's ``_init_state()``);
- ``state_dict()`` / ``load_state_dict()`` in plain containers only (dict, list, str, int,
  float, bool, None), so a state loads with ``torch.load(weights_only=True)`` and through
  JSON, bit-identically: numpy arrays travel as ``{"__ndarray__": dtype, "shape", "data"}``
  (float32 and float64 values survive a Python float exactly), statuses as tagged dicts,
  helper objects (baselines, alarms, rings) through their own ``state_dict``;
- the config check: a state saved with another configuration is refused with an error that
  names the differing keys, and a state that fails to load leaves the monitor as it was;
- ``step_``, ``last_status_``, ``should_stop`` and ``_emit(step, **fields)``, the one writer
  envelope (``monitor``, ``step``, ``wall_time``, the fields, ``config``);
- ``name``: the monitor's identity in the run log (``monitor`` = ``<kind>.<name>``, its own
  table; see ``streamtopo.io._layout``), set with the writer by ``_attach(writer, name)``.

Verbs, the same on every monitor: ``check(...) -> <X>Status`` is the only per-step entry;
``update(...)`` feeds data and returns nothing; ``reset``, ``state_dict``, ``load_state_dict``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import numpy as np

from .._validation import check_monitor_name, describe
from ..alarms import State
from ..errors import InputError, InputTypeError, StreamtopoError
from ._status import MonitorStatus, status_from_dict, status_to_dict

__all__ = ["Monitor", "decode_state", "encode_state"]

STATE_VERSION = 1


class Monitor:
    """Base class of every streamtopo monitor (see the module docstring for the contract).

    Subclasses set ``kind`` (the writer's table name), ``_config_keys`` (constructor
    parameters that define the monitor), ``_state_`` (attributes holding its state), implement
    ``_init_state()`` and ``check()``, and call ``self.reset()`` at the end of ``__init__``.

    Examples
    --------
    >>> class Counter(Monitor):
    ...     kind = "counter"
    ...     _config_keys = ("limit",)
    ...     _state_ = ("total",)
    ...     def __init__(self, limit=3):
    ...         self.limit = limit
    ...         self.writer = None
    ...         self.reset()
    ...     def _init_state(self):
    ...         self.total = 0
    ...     def check(self, x):
    ...         self.total += x
    ...         state = State.WATCH if self.total > self.limit else State.HEALTHY
    ...         return self._record(MonitorStatus(self._step, state, f"total {self.total}"))
    >>> c = Counter()
    >>> [c.check(2).state.value for _ in range(2)], c.step_
    (['HEALTHY', 'WATCH'], 2)
    >>> d = Counter()
    >>> d.load_state_dict(c.state_dict())
    >>> d.total, d.step_, d.last_status_.reason
    (4, 2, 'total 4')
    """

    kind: ClassVar[str] = "monitor"
    _config_keys: ClassVar[tuple[str, ...]] = ()
    _state_: ClassVar[tuple[str, ...]] = ()
    #: What a monitor saved or recorded before a parameter existed ran with, where that is not
    #: the parameter's default today (a missing key takes this value, else the default).
    legacy_defaults: ClassVar[dict[str, Any]] = {}

    writer: Callable[[dict[str, Any]], Any] | None
    name: str | None = None  # identity in the run log: rows go to table <kind>.<name>
    _table: str | None = None  # the table key of the rows, None: ``kind``

    def _attach(self, writer: Any, name: Any) -> None:
        """Check and set ``writer`` and ``name`` (call in ``__init__`` after the other checks).

        The monitor's rows go to table ``kind`` (unnamed) or ``<kind>.<name>``. A writer with
        ``claim_table`` (a RunWriter) refuses a second live monitor on one table here, at
        construction, instead of mixing their steps in the log.
        """
        if writer is not None and not callable(writer):
            raise InputTypeError(f"writer must be callable or None, got {describe(writer)}")
        name = check_monitor_name(name)
        table = self.kind if name is None else f"{self.kind}.{name}"
        claim = getattr(writer, "claim_table", None)
        if claim is not None:
            claim(table, self)
        self.name, self._table, self.writer = name, table, writer

    @property
    def table_(self) -> str:
        """The table this monitor's rows go to: ``kind``, or ``<kind>.<name>`` if named."""
        return self._table or self.kind

    # -- declared state ----------------------------------------------------------------------
    def _init_state(self) -> None:
        """Set every attribute named in ``_state_`` to its initial value."""

    def reset(self) -> None:
        """Forget every step: back to the state of a freshly constructed monitor."""
        self._step = 0
        self._last: MonitorStatus | None = None
        self._init_state()
        self._config_cache = self.config

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor parameters (everything but ``writer``):
        ``type(m)(**m.config)`` builds an identical monitor."""
        return {k: _plain(getattr(self, k)) for k in self._config_keys}

    @property
    def step_(self) -> int:
        """Calls of :meth:`check` so far (the next status's ``step``)."""
        return self._step

    @property
    def last_status_(self) -> MonitorStatus | None:
        """The status of the last :meth:`check` (None before the first)."""
        return self._last

    @property
    def should_stop(self) -> bool:
        """True when the monitor's stopping rule says stop (False for monitors without one)."""
        return False

    def _record(self, status: MonitorStatus) -> MonitorStatus:
        """Keep ``status`` as the last one and advance the step counter."""
        self._last = status
        self._step = status.step + 1
        return status

    def _emit(self, step: int, **fields: Any) -> None:
        """Send one row to the writer (if any): the one envelope every table shares."""
        if self.writer is not None:
            self.writer(
                {
                    "monitor": self._table or self.kind,
                    "step": step,
                    "wall_time": time.time(),
                    **fields,
                    "config": self._config_cache,
                }
            )

    # -- persistence -------------------------------------------------------------------------
    def _before_state_dict(self) -> None:
        """Hook: settle anything deferred so the saved state is complete."""

    def _after_load(self) -> None:
        """Hook: rebuild whatever derives from the loaded state."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically, in plain containers (loads with
        ``torch.load(weights_only=True)`` and through ``json``)."""
        self._before_state_dict()
        return {
            "kind": self.kind,
            "version": STATE_VERSION,
            "config": self.config,
            "step": self._step,
            "last": None if self._last is None else status_to_dict(self._last),
            "state": {name: encode_state(getattr(self, name)) for name in self._state_},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` of a monitor with the same config. On any problem
        raise a streamtopo error naming it and leave this monitor unchanged."""
        if not isinstance(state, Mapping):
            raise InputTypeError(f"state must be a dict from state_dict(), got {describe(state)}")
        self.check_config(state.get("config"))
        missing = [k for k in ("step", "last", "state") if k not in state]
        inner = state.get("state")
        if not missing and isinstance(inner, Mapping):
            missing = [f"state[{n!r}]" for n in self._state_ if n not in inner]
        if missing:
            raise InputError(f"state is missing {missing} (not a {type(self).__name__} state?)")
        backup = self.state_dict()
        try:
            self._load(state)
        except Exception as exc:
            self._load(backup)
            if isinstance(exc, StreamtopoError):
                raise
            raise InputError(f"state could not be loaded: {exc}") from exc

    def check_config(self, saved: Any) -> None:
        """Raise naming the keys where ``saved`` differs from this monitor's config. A key
        the saved config lacks (a parameter added after it was saved) matches this monitor's
        value when that is the parameter's default (or its ``legacy_defaults`` value)."""
        mine = self.config
        if saved == mine:
            return
        if not isinstance(saved, Mapping):
            raise InputError(f"state['config'] must be a dict, got {describe(saved)}")
        import inspect

        params = inspect.signature(type(self).__init__).parameters
        legacy = self.legacy_defaults
        saved = {
            **{k: _plain(params[k].default) for k in mine if k not in saved and k in params},
            **{k: v for k, v in legacy.items() if k in mine and k not in saved},
            **saved,
        }
        if saved == mine:
            return
        diff = sorted(k for k in {*mine, *saved} if saved.get(k) != mine.get(k))
        raise InputError(
            f"state['config'] differs from this {type(self).__name__}'s config in {diff}"
        )

    def _load(self, state: Mapping[str, Any]) -> None:
        step = state["step"]
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise InputError(f"state['step'] must be an int >= 0, got {describe(step)}")
        last = None if state["last"] is None else status_from_dict(state["last"])
        self.reset()
        for name in self._state_:
            _assign(self, name, state["state"][name])
        self._step = step
        self._last = last
        self._after_load()


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    if isinstance(v, np.generic):
        return v.item()
    return v


def encode_state(v: Any) -> Any:
    """A value in plain containers: arrays, tuples, statuses and stateful helpers tagged."""
    if v is None or isinstance(v, (bool, int, float)):
        return v
    if isinstance(v, State):
        return {"__state_enum__": str(v)}
    if isinstance(v, str):
        return v
    if isinstance(v, np.ndarray):
        return {"__ndarray__": v.dtype.str, "shape": list(v.shape), "data": v.ravel().tolist()}
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, MonitorStatus):
        return status_to_dict(v)
    if isinstance(v, tuple):
        return {"__tuple__": [encode_state(x) for x in v]}
    if isinstance(v, list):
        return [encode_state(x) for x in v]
    if isinstance(v, Mapping):
        if not all(isinstance(k, str) for k in v):
            raise InputTypeError(f"state dict keys must be str, got {sorted(map(repr, v))[:5]}")
        return {k: encode_state(x) for k, x in v.items()}
    if hasattr(v, "state_dict") and hasattr(v, "load_state_dict"):
        return {"__object__": encode_state(v.state_dict())}
    raise InputTypeError(f"cannot store {describe(v)} in a state_dict")


def decode_state(v: Any) -> Any:
    """Inverse of :func:`encode_state` (helper objects come back as their state dicts)."""
    if isinstance(v, list):
        return [decode_state(x) for x in v]
    if not isinstance(v, Mapping):
        return v
    if "__ndarray__" in v:
        dtype = np.dtype(v["__ndarray__"])
        shape = tuple(int(s) for s in v["shape"])
        arr = np.asarray(v["data"], dtype=dtype)
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise InputError(f"saved array has {arr.size} values, its shape {shape} needs more")
        return arr.reshape(shape)
    if "__status__" in v:
        return status_from_dict(dict(v))
    if "__tuple__" in v:
        return tuple(decode_state(x) for x in v["__tuple__"])
    if "__state_enum__" in v:
        return State(v["__state_enum__"])
    if "__object__" in v:
        return decode_state(v["__object__"])
    return {k: decode_state(x) for k, x in v.items()}


def _assign(obj: Any, name: str, saved: Any) -> None:
    """Load one declared attribute: in place for arrays and helper objects."""
    current = getattr(obj, name)
    value = decode_state(saved)
    if isinstance(saved, Mapping) and "__object__" in saved:
        current.load_state_dict(value)
    elif isinstance(current, np.ndarray):
        if not isinstance(value, np.ndarray) or value.shape != current.shape:
            raise InputError(
                f"state[{name.lstrip('_')!r}] must have shape {current.shape}, "
                f"got {describe(value)}"
            )
        current[...] = value
    else:
        setattr(obj, name, value)
