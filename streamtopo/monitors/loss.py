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
from collections.abc import Callable
from typing import Any

from .._validation import check_positive_int, describe
from ..alarms import Patience, State, Streak
from ..errors import InputError, InputTypeError
from ._base import Monitor
from ._status import LossStatus

__all__ = ["LossRiseDetector", "LossStatus"]


class LossRiseDetector(Monitor):
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
    name : str, optional
        The monitor's identity in the run log ([a-z0-9_], at most 32 characters): its rows go
        to table ``loss.<name>`` instead of ``loss`` (e.g. ``"eval"`` beside a train monitor
        on the same writer, which refuses two unnamed monitors of one kind).

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
        name: str | None = None,
    ) -> None:
        self.span = check_positive_int(span, "span")
        if (
            isinstance(factor, bool)
            or not isinstance(factor, (int, float))
            or not 1 < factor < math.inf
        ):
            raise InputError(f"factor must be a number > 1, got {describe(factor)}")
        self.factor = float(factor)
        self.patience = check_positive_int(patience, "patience")
        self.warmup = (
            max(1, self.span // 4)
            if warmup is None
            else check_positive_int(warmup, "warmup", minimum=0)
        )
        self.stop_patience = check_positive_int(stop_patience, "stop_patience")
        self._attach(writer, name)
        self.reset()

    kind = "loss"
    _config_keys = ("span", "factor", "patience", "warmup", "stop_patience")
    _state_ = ("ema_", "seen_", "_rising", "_collapse")

    def _init_state(self) -> None:
        self.ema_ = math.nan
        self.seen_ = 0
        self._rising = Streak(self.patience, name="patience")  # loss above factor x EMA
        self._collapse = Patience(self.stop_patience)  # consecutive non-finite losses

    @property
    def streak_(self) -> int:
        """Consecutive steps with the loss above ``factor`` x EMA."""
        return self._rising.count

    @property
    def collapse_streak_(self) -> int:
        """Consecutive steps with a non-finite loss."""
        return self._collapse.count

    @property
    def status_(self) -> LossStatus | None:
        """The last status (same as ``last_status_``)."""
        return self._last  # type: ignore[return-value]

    @property
    def should_stop(self) -> bool:
        """True after ``stop_patience`` consecutive COLLAPSE (non-finite loss) steps."""
        return self._collapse.should_stop

    def check(self, loss: float) -> LossStatus:
        """Take one step's loss (a Python/NumPy number or a 0-d array) and return the status."""
        if isinstance(loss, (str, bytes, bool)):
            raise InputTypeError(f"loss must be a real number, got {describe(loss)}")
        try:
            value = float(loss)
        except OverflowError:
            raise InputError(f"loss is beyond the float64 range, got {describe(loss)}") from None
        except (TypeError, ValueError) as exc:
            raise InputTypeError(f"loss must be a real number, got {describe(loss)}") from exc
        step = self._step
        ema = self.ema_
        if not math.isfinite(value):
            self._rising.reset()
            self._collapse.update(State.COLLAPSE)
            state, reason, ratio = State.COLLAPSE, f"non-finite loss {value}", math.nan
        else:
            self._collapse.update(State.HEALTHY)
            ratio = value / ema if self.seen_ and ema != 0 else math.nan
            active = self.seen_ >= self.warmup
            rising = active and value - ema > (self.factor - 1.0) * abs(ema)
            streak = self._rising.update(rising)
            if self._rising.done:
                state = State.WATCH
                reason = f"loss {value:.4g} > {self.factor:g} x EMA {ema:.4g} for {streak} steps"
            else:
                state = State.HEALTHY
                reason = "warmup" if not active else ""
            alpha = 2.0 / (self.span + 1.0)
            self.ema_ = value if self.seen_ == 0 else ema + alpha * (value - ema)
            self.seen_ += 1
        status = LossStatus(
            step, state, reason, loss=value, ema=ema, ratio=ratio, streak=self._rising.count,
            calibrating=self.seen_ <= self.warmup,
        )  # fmt: skip
        self._record(status)
        self._emit(
            step, loss=value, ema=ema, ratio=ratio, streak=self._rising.count, state=str(state),
            reason=reason,
        )  # fmt: skip
        return status
