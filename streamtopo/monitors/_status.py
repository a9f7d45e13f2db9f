"""Status records: one frozen base that every monitor's per-step record extends.

Every record has ``step`` (the monitor's step counter at the call), ``state`` (HEALTHY, WATCH
or COLLAPSE), ``reason`` (why, in words: the rule, statistic, layers and direction), and the
keyword-only ``evaluated`` (False on calls that only recorded data and repeat the last
evaluation) and ``calibrating`` (True while the monitor's baseline is not yet trusted: a
HEALTHY that means "not looking yet" says so here). :attr:`MonitorStatus.alarm` is true
unless HEALTHY, with the same meaning on every record.

Records round-trip through plain containers (:func:`status_to_dict` / :func:`status_from_dict`),
which is how they travel in ``state_dict()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..alarms import State
from ..errors import InputError

__all__ = [
    "LayerStatus",
    "LossStatus",
    "MonitorStatus",
    "positional_constructor",
    "status_from_dict",
    "status_to_dict",
]


@dataclass(frozen=True, slots=True)
class MonitorStatus:
    """What a monitor's ``check()`` says about one step.

    Attributes
    ----------
    step : int
        The monitor's step counter at the call (0 for the first).
    state : State
        HEALTHY, WATCH or COLLAPSE.
    reason : str
        Why the state is what it is.
    evaluated : bool
        False on calls that only recorded data (fields repeat the last evaluation).
    calibrating : bool
        True while the monitor's baseline is not yet trusted.

    Examples
    --------
    >>> s = MonitorStatus(3, State.WATCH, "loss rising")
    >>> s.alarm, s.evaluated, s.calibrating
    (True, True, False)
    >>> status_from_dict(status_to_dict(s)) == s
    True
    """

    kind: ClassVar[str] = "monitor"

    step: int
    state: State
    reason: str
    evaluated: bool = field(default=True, kw_only=True)
    calibrating: bool = field(default=False, kw_only=True)

    @property
    def alarm(self) -> bool:
        """True unless HEALTHY."""
        return self.state is not State.HEALTHY

    def _repr_html_(self) -> str:
        """A small HTML table for Jupyter: the state coloured, every field, and the state and
        reason of nested statuses (a TrainingStatus's monitors) on one row each.

        Examples
        --------
        >>> html = MonitorStatus(3, State.WATCH, "loss rising")._repr_html_()
        >>> "WATCH" in html and "loss rising" in html and html.startswith("<table")
        True
        """
        import html as _html

        colour = {"HEALTHY": "#2e7d32", "WATCH": "#ef6c00", "COLLAPSE": "#c62828"}
        state = str(self.state)
        rows = [
            f"<tr><th colspan='2' style='text-align:left'>{type(self).__name__} · step "
            f"{self.step} · <span style='color:{colour.get(state, '#000')}'>{state}</span>"
            f"{' (calibrating)' if self.calibrating else ''}</th></tr>"
        ]
        for f in fields(self):
            if f.name in ("step", "state"):
                continue
            v = getattr(self, f.name)
            if v is None or v == () or v == "":
                continue
            if isinstance(v, MonitorStatus):
                text = f"{v.state} (step {v.step}){': ' + v.reason if v.reason else ''}"
            elif isinstance(v, float):
                text = f"{v:.6g}"
            elif isinstance(v, tuple):
                text = ", ".join(map(str, v))
            else:
                text = str(v)
            rows.append(
                f"<tr><td style='text-align:left'>{f.name}</td>"
                f"<td style='text-align:left'>{_html.escape(text)}</td></tr>"
            )
        return "<table>" + "".join(rows) + "</table>"


def _status_classes() -> dict[str, type[MonitorStatus]]:
    """Every status class by name: the base and all its (imported) subclasses."""
    found: dict[str, type[MonitorStatus]] = {}
    todo: list[type[MonitorStatus]] = [MonitorStatus]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls
        todo.extend(cls.__subclasses__())
    return found


@dataclass(frozen=True, slots=True)
class LayerStatus(MonitorStatus):
    """What :meth:`~streamtopo.monitors.LayerMonitor.check` says about one step.

    Attributes
    ----------
    h0 : float
        Total H0 persistence of the layer point cloud.
    z : float
        Z-score of ``log(h0)`` against its baseline (NaN while calibrating or on degraded
        steps).
    ratio : float
        ``h0 / peak`` (1.0 before a peak exists).
    peak : float
        Highest h0 seen after warm-up.
    direction : str
        ``"rising"`` (layers diverging), ``"falling"`` (layers converging) or ``""``.
    culprits : tuple of str
        Layers whose own signal moved most (largest per-layer |z| first).
    nonfinite : tuple of int
        Indices of layers with a NaN/inf value at this step.
    layer_z : float
        Largest per-layer z-score (signed) at this step.
    stat : float
        ``rule="cusum"``: the change detector's statistic (largest CUSUM over streams; inf on a
        jump); NaN for the other rules and on steps the detector did not see.
    absent : tuple of str
        Layers without a value this step (``check(..., missing=...)``: a frozen layer, no
        backward pass): left out of H0 and the rules, never a collapse.
    """

    kind: ClassVar[str] = "layer"

    h0: float = math.nan
    z: float = math.nan
    ratio: float = 1.0
    peak: float = 0.0
    direction: str = ""
    culprits: tuple[str, ...] = ()
    nonfinite: tuple[int, ...] = ()
    layer_z: float = math.nan
    stat: float = math.nan
    absent: tuple[str, ...] = ()

    @property
    def status(self) -> str:
        """The state as a plain string (ph-training's ``status.status``)."""
        return str(self.state)

    @property
    def alert(self) -> bool:
        """True unless HEALTHY (ph-training's name for :attr:`alarm`)."""
        return self.state is not State.HEALTHY


@dataclass(frozen=True, slots=True)
class LossStatus(MonitorStatus):
    """One step of :class:`~streamtopo.monitors.LossRiseDetector`: the loss, the EMA it was
    compared with, their ratio and the length of the current rising streak."""

    kind: ClassVar[str] = "loss"

    loss: float = math.nan
    ema: float = math.nan
    ratio: float = math.nan
    streak: int = 0


def positional_constructor(cls: type[MonitorStatus]) -> Any:
    """A function building ``cls`` from every field positionally, in :func:`dataclasses.fields`
    order (keyword-only ones included), for per-step hot paths.

    The result equals ``cls(...)`` field for field; it skips the frozen dataclass ``__init__``,
    which sets each field through ``object.__setattr__`` by name (about half of the cost): the
    slot descriptors are bound once here and called directly.

    Examples
    --------
    >>> make = positional_constructor(MonitorStatus)
    >>> s = make(3, State.WATCH, "loss rising", True, False)
    >>> s == MonitorStatus(3, State.WATCH, "loss rising")
    True
    """
    names = [f.name for f in fields(cls)]
    setters = {}
    for i, name in enumerate(names):
        owner = next(c for c in cls.__mro__ if name in vars(c))
        setters[f"set{i}"] = vars(owner)[name].__set__
    body = "".join(f"    set{i}(o, {name})\n" for i, name in enumerate(names))
    src = f"def make({', '.join(names)}):\n    o = new(cls)\n{body}    return o\n"
    namespace: dict[str, Any] = {"new": object.__new__, "cls": cls, **setters}
    exec(src, namespace)  # the source holds only the dataclass's own field names
    make = namespace["make"]
    make.__doc__ = f"Build a {cls.__name__} from ({', '.join(names)})."
    return make


def status_to_dict(status: MonitorStatus) -> dict[str, Any]:
    """A status as plain containers (str, int, float, bool, list), tagged with its class."""
    out: dict[str, Any] = {"__status__": type(status).__name__}
    for f in fields(status):
        v = getattr(status, f.name)
        if isinstance(v, State):
            v = str(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def status_from_dict(d: Any) -> MonitorStatus:
    """Inverse of :func:`status_to_dict`; lists become tuples, ``state`` a :class:`State`."""
    classes = _status_classes()
    if not isinstance(d, dict) or d.get("__status__") not in classes:
        raise InputError(f"a saved status must be a dict tagged '__status__', got {d!r:.80}")
    cls = classes[d["__status__"]]
    names = {f.name for f in fields(cls)}
    given = {k for k in d if k != "__status__"}
    if given != names:
        raise InputError(
            f"saved {cls.__name__} has fields {sorted(given)}, expected {sorted(names)}"
        )
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
    kw["state"] = State(kw["state"])
    return cls(**kw)
