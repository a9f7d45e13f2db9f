"""The guard's records and checks: :class:`Intervention`, the :class:`GuardState` protocol,
knob and state validation (used by :mod:`streamtopo.guard`)."""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

from ._validation import describe
from .errors import InputError, InputTypeError

__all__ = ["STATE_FORMAT", "GuardState", "Intervention", "LossLevel", "check_number",
           "checked_state", "loss_of", "writable_dir"]  # fmt: skip


class GuardState(Protocol):
    """What the guard needs from a framework: capture/restore of everything a restart needs."""

    rank: int

    def capture(self) -> Any:
        """A deep copy of the training state (must not share memory with the live state)."""

    def restore(self, snapshot: Any) -> None:
        """Put ``snapshot`` back in place (must not keep references into ``snapshot``)."""

    def save(self, snapshot: Any, path: Path) -> None:
        """Write ``snapshot`` to ``path`` in a format that loads without pickle."""

    def load(self, path: Path) -> Any:
        """Read a snapshot written by :meth:`save`."""

    def set_lr_scale(self, scale: float) -> None:
        """Multiply every learning rate by ``scale`` from the next optimizer step on."""


@dataclass(frozen=True, slots=True)
class Intervention:
    """One action of the guard.

    Attributes
    ----------
    step : int
        Step at which the guard acted (the caller's step number).
    action : str
        ``"rollback"``; ``"stop"`` (``max_rollbacks`` used up: the last good snapshot is
        restored, then training should stop); ``"no_snapshot"`` (nothing old enough to
        restore; the run goes on untouched); ``"declined"`` (the loss was back near its
        pre-episode level at the decision step, see ``Guard(still_failing=)``: not rolled
        back, the alarm stays in the statuses).
    restored_step : int
        Step of the restored snapshot (-1 when nothing was restored).
    onset : int
        First step of the alarm episode that triggered the action.
    reason : str
        The alarm's reason (from the status).
    policy : str
        What was applied, in words (``"restored step 400, lr x0.5 for 200 steps"``).
    lr_scale : float
        Learning-rate multiplier in force after the action (1.0 when unchanged).
    level : int
        Escalation level: 1 for a first rollback, k for the k-th rollback in a row.
    steps_redone : int
        ``step - restored_step`` (0 when nothing was restored).
    """

    step: int
    action: str
    restored_step: int
    onset: int
    reason: str
    policy: str
    lr_scale: float
    level: int
    steps_redone: int

    @property
    def message(self) -> str:
        """One line for logs and summaries."""
        return (
            f"step {self.step}: {self.action} ({self.policy}); "
            f"alarm since step {self.onset}: {self.reason}"
        )

    def as_row(self) -> dict[str, Any]:
        """The run-log row (``monitor="interventions"``, see the run-writer contract)."""
        return {"monitor": "interventions", "wall_time": time.time(), "state": "COLLAPSE",
                "config": {}, **asdict(self)}  # fmt: skip


def loss_of(status: Any) -> float | None:
    """The training loss a status carries (``TrainingStatus.loss.loss`` or a ``LossStatus``'s
    ``loss``), None when it carries none or the step was not evaluated."""
    if not getattr(status, "evaluated", True):
        return None
    value = getattr(status, "loss", None)
    value = getattr(value, "loss", value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class LossLevel:
    """Is the failure still there? The training loss during the alarm against its level before.

    ``pre`` = median of the last ``n_pre`` losses of HEALTHY steps taken more than ``lag`` steps
    before the episode's onset (frozen at the onset: alarms come a few steps after the damage,
    so the steps just before the onset may already be failing); ``now`` = median of the
    episode's last ``n_now`` losses (from its onset on, so a failure caught at once is not
    diluted by the healthy steps before it). A rollback drops the healthy losses after the
    restored step (that trajectory was the failing one). Medians, because one batch's loss is
    noisy. A non-finite loss counts as failing.
    """

    def __init__(self, n_pre: int = 20, n_now: int = 10, lag: int = 10) -> None:
        self.n_pre, self.lag = n_pre, lag
        self.healthy: deque[tuple[int, float]] = deque(maxlen=n_pre + 4 * lag + 64)
        self.recent: deque[float] = deque(maxlen=n_now)
        self.pre: float | None = None

    def observe(self, step: int, loss: float | None, healthy: bool, onset: bool) -> None:
        if onset:  # the first step of an episode: freeze the level before it
            before = [v for s, v in self.healthy if s < step - self.lag][-self.n_pre :]
            self.pre = statistics.median(before) if len(before) >= 5 else None
            self.recent.clear()
        if loss is None:
            return
        if not healthy:
            self.recent.append(loss)
        elif math.isfinite(loss):
            self.healthy.append((step, loss))

    def rolled_back(self, restored_step: int) -> None:
        """After a rollback: the losses since the restored step were the failed trajectory's."""
        self.recent.clear()
        kept = [(s, v) for s, v in self.healthy if s <= restored_step]
        self.healthy.clear()
        self.healthy.extend(kept)

    def ratio(self) -> float | None:
        """``now / pre`` (inf for a non-finite recent loss); None when either is unknown."""
        if self.pre is None or self.pre <= 0 or not self.recent:
            return None
        if not all(math.isfinite(v) for v in self.recent):
            return math.inf
        return statistics.median(self.recent) / self.pre

    def state(self) -> dict[str, Any]:
        return {
            "healthy": [[s, v] for s, v in self.healthy],
            "recent": list(self.recent),
            "pre": self.pre,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self.healthy.clear()
        self.healthy.extend((int(s), float(v)) for s, v in state["healthy"])
        self.recent.clear()
        self.recent.extend(state["recent"])
        self.pre = state["pre"]


def check_number(value: Any, name: str, low: float, high: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value <= high:
        raise InputError(f"{name} must be a number {what}, got {describe(value)}")
    return float(value)


STATE_FORMAT = "streamtopo-guard-1"
_INTS = ("calls", "streak", "cool_until", "level", "rollbacks", "steps_redone")


def checked_state(state: Any) -> dict[str, Any]:
    """``state`` validated field by field (a bad field raises naming it)."""
    if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
        raise InputError(
            f"state must be a Guard.state_dict() (format {STATE_FORMAT!r}), got {describe(state)}"
        )

    def bad(key: str, expected: str) -> InputError:
        return InputError(f"state[{key!r}] must be {expected}, got {describe(state.get(key))}")

    def is_int(v: Any, low: int) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= low

    out: dict[str, Any] = {}
    for key in _INTS:
        if not is_int(state.get(key), -1 if key == "cool_until" else 0):
            raise bad(key, "an int >= 0 (cool_until >= -1)")
        out[key] = state[key]
    for key in ("onset", "last_restored"):
        if state.get(key) is not None and not is_int(state.get(key), 0):
            raise bad(key, "None or an int >= 0")
        out[key] = state.get(key)
    for key, kind in (("handled", bool), ("should_stop", bool), ("stop_reason", str)):
        if not isinstance(state.get(key), kind):
            raise bad(key, kind.__name__)
        out[key] = state[key]
    scale = state.get("lr_scale")
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise bad("lr_scale", "a number in (0, 1]")
    out["lr_scale"] = float(scale)
    names = {f.name: f.type for f in fields(Intervention)}
    records = state.get("interventions")
    if not isinstance(records, list) or not all(
        isinstance(r, Mapping) and set(r) == set(names) for r in records
    ):
        raise bad("interventions", f"a list of dicts with keys {sorted(names)}")
    for r in records:
        for name, kind in names.items():
            ok = {"int": is_int(r[name], -1), "str": isinstance(r[name], str)}.get(
                kind, isinstance(r[name], (int, float)) and not isinstance(r[name], bool)
            )
            if not ok:
                raise bad("interventions", f"records whose {name!r} is {kind}")
    out["interventions"] = [dict(r) for r in records]
    snaps = state.get("snapshots")
    if not isinstance(snaps, list) or not all(
        isinstance(s, Mapping) and is_int(s.get("step"), 0) and isinstance(s.get("path"), str)
        for s in snaps
    ):
        raise bad("snapshots", "a list of {'step': int >= 0, 'path': str}")
    steps = [s["step"] for s in snaps]
    if steps != sorted(set(steps)):
        raise bad("snapshots", "snapshots in increasing step order")
    out["snapshots"] = [(s["step"], s["path"]) for s in snaps]
    out["declined"] = state.get("declined", False)  # absent in states before issue 19
    if not isinstance(out["declined"], bool):
        raise bad("declined", "bool")
    level = state.get("loss_level", {"healthy": [], "recent": [], "pre": None})

    def floats(v: Any) -> bool:
        return isinstance(v, list) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v
        )

    def pairs(v: Any) -> bool:
        return isinstance(v, list) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 and is_int(p[0], 0) and floats([p[1]])
            for p in v
        )

    pre = level.get("pre") if isinstance(level, Mapping) else None
    if (
        not isinstance(level, Mapping)
        or not pairs(level.get("healthy"))
        or not floats(level.get("recent"))
        or not (pre is None or (isinstance(pre, (int, float)) and not isinstance(pre, bool)))
    ):
        raise bad(
            "loss_level", "{'healthy': [[step, float]], 'recent': [float], 'pre': float or None}"
        )
    out["loss_level"] = {
        "healthy": [[int(p[0]), float(p[1])] for p in level["healthy"]],
        "recent": [float(x) for x in level["recent"]],
        "pre": None if pre is None else float(pre),
    }
    return out


def writable_dir(dir: Any) -> Path:
    if not isinstance(dir, (str, os.PathLike)):
        raise InputTypeError(f"dir must be a path (str or os.PathLike), got {describe(dir)}")
    path = Path(dir)
    existed = path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".guard-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if not existed and path.is_dir():
            try:
                path.rmdir()
            except OSError:
                pass
        raise InputError(f"dir must be a writable directory, got {str(path)!r}: {exc}") from None
    return path
