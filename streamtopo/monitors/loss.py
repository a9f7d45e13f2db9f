"""Loss-rise alarm: the plain rule that the topology alarms are measured against.

The rule (DESIGN.md §2 "Status"): WATCH when the training loss stays above ``factor`` (1.1) times
its exponential moving average over ``span`` (100) steps for ``patience`` (5) consecutive steps.
In the study behind DESIGN.md this rule raised its alarms no later than the layer-H0 rule and
caught different failures, so the torch façade runs both. Each loss is compared with the EMA
of the losses *before* it, so a jump cannot hide by pulling its own reference up. A non-finite
loss is COLLAPSE at once (it is never added to the EMA); ``should_stop`` follows after
``stop_patience`` consecutive COLLAPSE steps, like the other monitors. For losses that can be
negative the test reads ``loss − ema > (factor − 1)·|ema|``, which equals ``loss > factor·ema``
for positive losses.

The EMA lags a falling loss: early in training, when the loss halves within ``span`` steps, the
EMA sits well above the current loss and a jump must clear that gap first (in the tests, a 2×
jump at step 150 of a loss decaying with time constant 100 steps stays below 1.1 × EMA; a 3×
jump fires within 5 steps).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._validation import check_positive_int, describe
from ..errors import InputError, InputTypeError
from ..status import State

__all__ = ["LossRiseDetector", "LossStatus"]


@dataclass(frozen=True, slots=True)
class LossStatus:
    """One step of :class:`LossRiseDetector`: the loss, the EMA it was compared with, and why."""

    step: int
    loss: float
    ema: float
    ratio: float
    streak: int
    state: State
    reason: str

    @property
    def alarm(self) -> bool:
        """True when the state is WATCH or COLLAPSE."""
        return self.state is not State.HEALTHY


class LossRiseDetector:
    """Alarm when the loss rises above ``factor`` × its ``span``-step EMA for ``patience`` steps.

    Parameters
    ----------
    span : int
        EMA span in steps; the smoothing weight is ``2 / (span + 1)``.
    factor : float
        Alarm when the loss exceeds ``factor`` times the EMA (> 1).
    patience : int
        Consecutive exceeding steps before WATCH.
    warmup : int
        Steps before the rule is active (the EMA needs history; default ``span // 4``: the
        weight of the initial value has decayed below 60% by then).
    stop_patience : int
        Consecutive COLLAPSE (non-finite loss) steps before ``should_stop``.
    writer : callable, optional
        Receives one row per step (``{"monitor": "loss", ...}``), see the run-writer contract.

    Examples
    --------
    >>> det = LossRiseDetector(span=10, patience=2, warmup=3)
    >>> [det.check(x).state.value for x in [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]]
    ['HEALTHY', 'HEALTHY', 'HEALTHY', 'HEALTHY', 'HEALTHY', 'WATCH', 'WATCH']
    >>> det.status_.reason
    'loss 2 > 1.1 x EMA 1.331 for 3 steps'
    """

    def __init__(
        self,
        span: int = 100,
        factor: float = 1.1,
        patience: int = 5,
        *,
        warmup: int | None = None,
        stop_patience: int = 3,
        writer: Callable[[dict[str, Any]], Any] | None = None,
    ) -> None:
        self.span = check_positive_int(span, "span")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor > 1:
            raise InputError(f"factor must be a number > 1, got {describe(factor)}")
        self.factor = float(factor)
        self.patience = check_positive_int(patience, "patience")
        self.warmup = (
            max(1, self.span // 4)
            if warmup is None
            else check_positive_int(warmup, "warmup", minimum=0)
        )
        self.stop_patience = check_positive_int(stop_patience, "stop_patience")
        self.writer = writer
        self.reset()

    # state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every loss seen."""
        self.step_ = 0
        self.ema_ = math.nan
        self.seen_ = 0
        self.streak_ = 0
        self.collapse_streak_ = 0
        self.status_: LossStatus | None = None

    @property
    def config(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "factor": self.factor,
            "patience": self.patience,
            "warmup": self.warmup,
            "stop_patience": self.stop_patience,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable state (restores identical statuses)."""
        return {
            "config": self.config,
            "step": self.step_,
            "ema": self.ema_,
            "seen": self.seen_,
            "streak": self.streak_,
            "collapse_streak": self.collapse_streak_,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` (the configuration must match)."""
        saved = state.get("config") if isinstance(state, dict) else state
        if saved != self.config:
            raise InputError(
                f"state was saved with config {describe(saved)}, this detector has {self.config}"
            )
        self.step_ = int(state["step"])
        self.ema_ = float(state["ema"])
        self.seen_ = int(state["seen"])
        self.streak_ = int(state["streak"])
        self.collapse_streak_ = int(state["collapse_streak"])
        self.status_ = None

    # per step ------------------------------------------------------------------------------
    @property
    def should_stop(self) -> bool:
        """True after ``stop_patience`` consecutive COLLAPSE (non-finite loss) steps."""
        return self.collapse_streak_ >= self.stop_patience

    def check(self, loss: float) -> LossStatus:
        """Take one step's loss (a Python/NumPy number or a 0-d array) and return the status."""
        if isinstance(loss, (str, bytes, bool)):
            raise InputTypeError(f"loss must be a real number, got {describe(loss)}")
        try:
            value = float(loss)
        except (TypeError, ValueError) as exc:
            raise InputTypeError(f"loss must be a real number, got {describe(loss)}") from exc
        step = self.step_
        ema = self.ema_
        if not math.isfinite(value):
            self.streak_ = 0
            self.collapse_streak_ += 1
            state, reason, ratio = State.COLLAPSE, f"non-finite loss {value}", math.nan
        else:
            self.collapse_streak_ = 0
            ratio = value / ema if self.seen_ and ema != 0 else math.nan
            active = self.seen_ >= self.warmup
            rising = active and value - ema > (self.factor - 1.0) * abs(ema)
            self.streak_ = self.streak_ + 1 if rising else 0
            if self.streak_ >= self.patience:
                state = State.WATCH
                reason = (
                    f"loss {value:.4g} > {self.factor:g} x EMA {ema:.4g} for {self.streak_} steps"
                )
            else:
                state = State.HEALTHY
                reason = "warmup" if not active else ""
            alpha = 2.0 / (self.span + 1.0)
            self.ema_ = value if self.seen_ == 0 else ema + alpha * (value - ema)
            self.seen_ += 1
        self.step_ += 1
        status = LossStatus(step, value, ema, ratio, self.streak_, state, reason)
        self.status_ = status
        if self.writer is not None:
            self.writer(
                {
                    "monitor": "loss",
                    "step": step,
                    "wall_time": time.time(),
                    "loss": value,
                    "ema": ema,
                    "ratio": ratio,
                    "streak": self.streak_,
                    "state": str(state),
                    "reason": reason,
                    "config": self.config,
                }
            )
        return status
