"""The combined status of a :class:`~streamtopo.integrations.training.TrainingMonitor` step:
:class:`TrainingStatus`, made from the monitors' last statuses (:func:`combine`) or repeated
unchanged on the calls between monitored steps (:func:`repeated`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from ..alarms import State
from ..monitors import LossStatus, MonitorStatus
from ._training_parts import MONITORS

__all__ = ["TrainingStatus", "combine", "repeated"]


@dataclass(frozen=True, slots=True)
class TrainingStatus(MonitorStatus):
    """Combined status of one :meth:`TrainingMonitor.step`.

    ``state`` is the most severe state among the monitors; ``fired`` names the monitors not
    HEALTHY (``"layer"``, ``"attention"``, ``"loss"``, ``"centroid"``, ``"collapse"``), and
    ``reason`` joins their reasons (and, for a HEALTHY layer monitor with absent layers, which
    layers had no value this step). The monitors' own statuses are kept in the other fields
    (None when that monitor is off or has not run yet). ``evaluated`` is False on the calls
    between monitored steps, which repeat the last monitored status. ``step`` is the training
    step (the ``step=`` given to :meth:`TrainingMonitor.step`, by default counted from 0; never
    rewound by a guard's rollback), and the monitors' statuses carry the training step they
    were made at, as every table of the run does; ``intervention`` is what the guard did at
    this step (a :class:`~streamtopo.guard.Intervention`), or None.
    """

    kind: ClassVar[str] = "training"

    fired: tuple[str, ...] = ()
    layer: MonitorStatus | None = None
    attention: MonitorStatus | None = None
    loss: LossStatus | None = None
    centroid: MonitorStatus | None = None
    collapse: MonitorStatus | None = None
    intervention: Any = None


_STATUS_FIELDS = tuple(f.name for f in fields(TrainingStatus))
# the slots' own setters: a frozen dataclass refuses setattr, its slot descriptors do not
_SETTERS = tuple(getattr(TrainingStatus, name).__set__ for name in _STATUS_FIELDS)
_REPEATED = {"evaluated": False, "intervention": None}


def repeated(status: TrainingStatus, t: int) -> TrainingStatus:
    """``replace(status, step=t, evaluated=False, intervention=None)`` without ``replace``'s
    per-call introspection: the status of every call between monitored steps."""
    new = object.__new__(TrainingStatus)
    for name, set_ in zip(_STATUS_FIELDS, _SETTERS, strict=True):
        set_(new, t if name == "step" else _REPEATED.get(name, getattr(status, name)))
    return new


def _named(name: str, reason: str) -> str:
    """A monitor's reason prefixed by its name, once (the layer rule's reason already starts
    with ``layer:``)."""
    return reason if reason.startswith(f"{name}: ") else f"{name}: {reason}"


def combine(
    last: Mapping[str, Any], t: int, evaluated: bool, names: Sequence[str] = MONITORS
) -> TrainingStatus:
    """The status at training step ``t`` from the monitors' last statuses ``last`` (by name);
    only the monitors in ``names`` count towards ``state``, ``fired`` and ``reason``."""
    fired, reasons, worst = [], [], State.HEALTHY
    for name in MONITORS:
        st = last.get(name) if name in names else None
        if st is None:
            continue
        state = State(st.state)
        if state.severity > worst.severity:
            worst = state
        if state is not State.HEALTHY:
            fired.append(name)
            reasons.append(_named(name, st.reason or state.value))
        elif getattr(st, "absent", ()) or " absorbed (" in st.reason:
            # healthy, but say which layers were not measured, or that a shift was absorbed
            reasons.append(_named(name, st.reason))
    return TrainingStatus(
        t,
        worst,
        "; ".join(reasons),
        fired=tuple(fired),
        evaluated=evaluated,
        **{name: last.get(name) for name in MONITORS},
    )
