"""The sequential change detector of the alarm engine (exported as
``streamtopo.alarms.ChangeDetector``).

A two-sided CUSUM (Page 1954) over N standardised streams, live from the first evaluation.
CUSUM minimises the worst-case detection delay for a given false-alarm rate (Lorden 1971): a
x100 jump fires at once, a small persistent shift once its evidence accumulates, a drift by its
slope. The one knob, ``fa_per_1k``, is the expected number of false alarms per 1,000
evaluations of a healthy run; WATCH and COLLAPSE are two thresholds of the same statistic.

Per stream and evaluation (the kernel is ``streamtopo._kernels.changepoint``):

1. **Baseline**, O(1): a one-step-ahead prediction ``m`` (running mean of accepted values,
   cumulative for ``mean_window`` values, then exponentially weighted) and the variance ``v`` of
   the prediction errors (cumulative for 10 errors, then exponentially weighted over half the
   errors seen, at most ``scale_window``, so the early-training transient is forgotten).
   Updates are winsorised at ``winsor`` sd once the stream is live.
2. **Small-sample residual**: ``t = (x - m) / sqrt(v (1 + 1/n))`` (``n`` the effective count of
   the mean), a Student-t value mapped to a standard normal quantile (Wallace 1959), so a short
   history does not over-alarm and the thresholds tighten to the asymptotic ones as it grows.
3. **Two-sided CUSUM** ``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``; the statistic
   is the largest S. WATCH at ``h_watch``, COLLAPSE at ``h_collapse`` (the threshold of a 100x
   smaller rate) or when an alarm has lasted ``escalate_after`` evaluations.
4. **Thresholds from the knob**: each side of each stream gets an equal share of the rate
   (union bound), i.e. a one-sided in-control run length ``ARL0 = 2 N 1000 / fa_per_1k``; with
   ``tail`` (a Laplace scale, heavy-tailed residuals) ``h = log(ARL0) / theta`` (Lundberg), with
   ``tail=None`` Siegmund's Gaussian approximation solved for h.
5. **Live from evaluation 0**: a non-finite value is COLLAPSE at once (the statistic is then
   inf). Once a stream has a settled own history (``jump_after`` accepted values, and the move
   exceeds ``jump_sd`` prediction-error sd), a move of more than ``jump`` (log 30) from its
   baseline mean fires at once, with the finite statistic
   ``h_watch + (h_collapse - h_watch) (|move| / jump - 1)``: WATCH for a x30 move of a log
   signal, the COLLAPSE threshold at x900. The CUSUM of a stream starts after ``min_history``
   accepted values; ``calibrating`` is True until every stream has ``trusted_after``.
6. **Baseline hygiene**: a value enters its stream's baseline only while no alarm is active and
   the stream's own statistic is at most ``pending * h_watch``. During an alarm the last
   ``absorb_after`` vectors are kept; once the alarm is that old and every stream holds the
   same level in both halves of that buffer (within ``hold_z`` standard errors), the shift is
   *absorbed*: baselines restart from the buffer's second half, the CUSUMs from 0, and the
   state returns to HEALTHY; a shift that keeps growing escalates instead. A later failure
   raises a new alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ._validation import as_real_array, check_positive_int, describe
from .errors import InputError, InputTypeError

__all__ = ["ChangeDetector", "cusum_threshold", "lundberg_theta", "siegmund_arl"]

_SIEGMUND = 1.166  # Siegmund's overshoot correction (2 x 0.583) for Gaussian increments
_STATE_NAMES = ("HEALTHY", "WATCH", "COLLAPSE")


def siegmund_arl(k: float, h: float) -> float:
    """In-control average run length of a one-sided CUSUM ``S = max(0, S + z - k)`` on N(0, 1)
    increments with threshold ``h`` (Siegmund 1985).

    >>> round(siegmund_arl(1.0, 3.0), 1)
    2072.7
    """
    a = 2.0 * k * (h + _SIEGMUND)
    if a > 700.0:
        return math.inf
    return (math.expm1(a) - a) / (2.0 * k * k)


def lundberg_theta(k: float, tail: float | None) -> float:
    """Exponent ``theta > 0`` with ``E[exp(theta (z - k))] = 1`` for the CUSUM increment: ``2 k``
    for standard normal z, and for Laplace z of scale ``tail`` the root of
    ``exp(-theta k) = 1 - (theta tail)^2`` in ``(0, 1 / tail)``.

    >>> lundberg_theta(2.0, None), round(lundberg_theta(2.0, 1.6), 4)
    (4.0, 0.4956)
    """
    if tail is None:
        return 2.0 * k
    lo, hi = 1e-9, (1.0 - 1e-12) / tail
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if math.exp(-mid * k) > 1.0 - (mid * tail) ** 2:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def cusum_threshold(fa_per_1k: float, k: float, n_streams: int, tail: float | None = None) -> float:
    """CUSUM threshold ``h`` for ``fa_per_1k`` expected false alarms per 1,000 evaluations over
    ``n_streams`` two-sided streams (union bound: each one-sided CUSUM needs
    ``ARL0 = 2 N 1000 / fa_per_1k``). ``tail=None``: Siegmund's Gaussian approximation;
    ``tail`` a Laplace scale: ``h = log(ARL0) / theta`` with theta from :func:`lundberg_theta`.

    >>> round(cusum_threshold(0.1, 1.0, 1), 2)
    4.13
    >>> round(cusum_threshold(0.1, 2.0, 17, tail=1.6), 1)
    25.7
    """
    if not (isinstance(fa_per_1k, (int, float)) and fa_per_1k > 0 and math.isfinite(fa_per_1k)):
        raise InputError(f"fa_per_1k must be a positive finite number, got {fa_per_1k!r}")
    target = 2.0 * n_streams * 1000.0 / fa_per_1k
    if tail is not None:
        return math.log(target) / lundberg_theta(k, tail)
    lo, hi = 0.0, 300.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if siegmund_arl(k, mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def _number(value: Any, name: str, lo: float, hi: float = math.inf, *, lo_open=True) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a number, got {describe(value)}")
    v = float(value)
    ok = (v > lo if lo_open else v >= lo) and v <= hi
    if not ok:
        side = ">" if lo_open else ">="
        raise InputError(f"{name} must be {side} {lo} and <= {hi}, got {value!r}")
    return v


class ChangeDetector:
    """Two-sided CUSUM over N standardised streams, live from the first evaluation.

    See the module docstring for the algorithm. State lives in preallocated arrays; each
    :meth:`update` is one numba call that allocates nothing. Monitors call ``step(x, label)``
    instead (the kernel with the arrays bound: no validation, returns the state code 0/1/2,
    ``x`` a float64 array of ``n_streams`` values) and read :attr:`stat`, :meth:`streams`...

    Parameters
    ----------
    n_streams : int
        N, the length of every vector given to :meth:`update`.
    fa_per_1k : float, default 0.1
        The knob: expected false alarms per 1,000 evaluations of healthy streams. Sets
        ``h_watch_``; ``h_collapse_`` is the threshold for a 100x smaller rate.
    k : float, default 2.0
        CUSUM reference value (half the shift, in residual sd, the detector is tuned for).
    tail : float or None, default 1.6
        Laplace scale of the residuals assumed by the thresholds (heavy tails); None: Gaussian.
    mean_window, scale_window : int, default 20, 100
        Memory (evaluations) of the prediction and of its error variance.
    min_history : int, default 40
        Accepted values before a stream's CUSUM runs.
    trusted_after : int, default 100
        Accepted values (of every stream) before ``calibrating`` turns False.
    jump : float, default log(30)
        Absolute check: a move this large (stream units; log units for log signals) from the
        baseline mean fires at once (WATCH; twice as large reaches the COLLAPSE threshold), so a
        x100 move of a log signal fires even while the CUSUM is not live yet.
    jump_after : int, default 5
        Accepted values of a stream before its jump check runs (the first optimizer steps of a
        healthy run can move a layer by orders of magnitude).
    jump_sd : float, default 3.0
        A jump must also exceed this many prediction-error sd of its stream: right after a
        large healthy transient the stream's own history is not settled yet.
    absorb_after : int, default 30
        Age (evaluations) at which a held shift is absorbed; also the buffer length (>= 4).
    hold_z : float, default 4.0
        Largest difference of the buffer halves' means, in standard errors, of a held shift.
    escalate_after : int, default 50
        Alarm age (evaluations) at which WATCH becomes COLLAPSE.
    clear_below : float, default 0.5
        The alarm ends when the statistic falls below ``clear_below * h_watch_``.
    min_std : float, default 0.01
        Floor of every prediction-error sd (stream units; 1 % for log signals). A median-relative
        layer stream is exactly 0 while that layer is the median (odd layer counts), so a
        smaller floor (1e-3) made a change of median layer a large residual.
    autocorr : bool, default False
        Divide residuals by the long-run sd factor ``sqrt((1 + rho) / (1 - rho))``.
    z_cap : float, default inf
        Cap of |z| entering the CUSUM.
    pending : float, default 0.5
        A stream whose statistic exceeds ``pending * h_watch_`` keeps its value out of its
        baseline.
    winsor : float, default 3.0
        Baseline updates of a live stream are clipped at this many sd.
    restart_on_clear : bool, default True
        Reset the CUSUMs when an alarm ends.
    calibration_cap : bool, default True
        While ``calibrating`` (at the start of the call), the CUSUM's own evidence raises WATCH
        but not COLLAPSE, and an alarm does not escalate by age: the baseline is not trusted
        yet, and healthy early training moves single layers fast (on 28 small real torch runs
        the uncapped detector reached COLLAPSE in early training in 4). A non-finite value and
        a jump check at the COLLAPSE threshold (a x900 move) still raise COLLAPSE. Values seen
        during an alarm do not count towards ``trusted_after``, so an alarm that starts while
        calibrating stays WATCH until it ends or is absorbed, unless it jumps or goes
        non-finite.

    Examples
    --------
    >>> det = ChangeDetector(2, fa_per_1k=1.0)
    >>> rng = np.random.default_rng(0)
    >>> states = [det.update(rng.normal(size=2))[0] for _ in range(50)]
    >>> states.count("HEALTHY"), det.calibrating
    (50, True)
    >>> state, stat, streams, direction = det.update([0.0, 10.0])  # stream 1 jumps: at once
    >>> state, round(stat, 1), streams, direction, det.jumped
    ('COLLAPSE', 34.4, (1,), 1, True)
    >>> round(det.h_watch_, 1), round(det.h_collapse_, 1)  # x30 / x900 jumps of a log signal
    (16.7, 26.0)
    """

    def __init__(
        self,
        n_streams: int,
        fa_per_1k: float = 0.1,
        *,
        k: float = 2.0,
        tail: float | None = 1.6,
        mean_window: int = 20,
        scale_window: int = 100,
        min_history: int = 40,
        trusted_after: int = 100,
        jump: float = math.log(30.0),
        jump_after: int = 5,
        jump_sd: float = 3.0,
        absorb_after: int = 30,
        hold_z: float = 4.0,
        escalate_after: int = 50,
        clear_below: float = 0.5,
        min_std: float = 0.01,
        autocorr: bool = False,
        z_cap: float = math.inf,
        pending: float = 0.5,
        winsor: float = 3.0,
        restart_on_clear: bool = True,
        calibration_cap: bool = True,
    ) -> None:
        self.n_streams = check_positive_int(n_streams, "n_streams")
        self.fa_per_1k = _number(fa_per_1k, "fa_per_1k", 0.0, 1000.0)
        self.k = _number(k, "k", 0.0, 1e6)
        self.tail = None if tail is None else _number(tail, "tail", 0.0, 1e6)
        self.mean_window = check_positive_int(mean_window, "mean_window")
        self.scale_window = check_positive_int(scale_window, "scale_window")
        self.min_history = check_positive_int(min_history, "min_history")
        self.trusted_after = check_positive_int(trusted_after, "trusted_after")
        self.jump = _number(jump, "jump", 0.0)
        self.jump_after = check_positive_int(jump_after, "jump_after")
        self.jump_sd = _number(jump_sd, "jump_sd", 0.0, lo_open=False)
        self.absorb_after = check_positive_int(absorb_after, "absorb_after", minimum=4)
        self.hold_z = _number(hold_z, "hold_z", 0.0)
        self.escalate_after = check_positive_int(escalate_after, "escalate_after")
        self.clear_below = _number(clear_below, "clear_below", 0.0, 1.0)
        self.min_std = _number(min_std, "min_std", 0.0)
        for name, flag in (
            ("autocorr", autocorr), ("restart_on_clear", restart_on_clear),
            ("calibration_cap", calibration_cap),
        ):  # fmt: skip
            if not isinstance(flag, bool):
                raise InputTypeError(f"{name} must be True or False, got {describe(flag)}")
        self.autocorr, self.restart_on_clear = autocorr, restart_on_clear
        self.calibration_cap = calibration_cap
        self.z_cap = _number(z_cap, "z_cap", 0.0)
        self.pending = _number(pending, "pending", 0.0, 1.0, lo_open=False)
        self.winsor = _number(winsor, "winsor", 0.0)
        self.h_watch_ = cusum_threshold(self.fa_per_1k, self.k, self.n_streams, self.tail)
        self.h_collapse_ = cusum_threshold(
            self.fa_per_1k / 100.0, self.k, self.n_streams, self.tail
        )
        self.reset()

    def __repr__(self) -> str:
        return (
            f"ChangeDetector(n_streams={self.n_streams}, fa_per_1k={self.fa_per_1k}, "
            f"h_watch_={self.h_watch_:.3f}, evaluations={int(self._ist[0])})"
        )

    # -- state ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (a fresh detector). Allocates the state arrays."""
        from ._kernels import changepoint as kc

        self._kc = kc
        N = self.n_streams
        self._f = np.zeros((kc.NF, N))
        self._f[kc.MEAN] = np.nan  # no value seen yet
        self._ist = np.zeros(kc.NI, dtype=np.int64)
        self._ist[[kc.ALARM_START, kc.ABSORBED, kc.ALARM_LABEL, kc.ABSORBED_LABEL]] = -1
        self._buf = np.zeros((self.absorb_after, N))
        self._out = np.zeros(kc.NO)
        self._order = np.zeros(N, dtype=np.int64)
        par = np.zeros(kc.NP)
        par[kc.P_K], par[kc.P_H_WATCH], par[kc.P_H_COLLAPSE] = (
            self.k,
            self.h_watch_,
            self.h_collapse_,
        )
        par[kc.P_MEAN_WINDOW], par[kc.P_SCALE_WINDOW] = self.mean_window, self.scale_window
        par[kc.P_MIN_HISTORY], par[kc.P_TRUSTED_AFTER] = self.min_history, self.trusted_after
        par[kc.P_JUMP], par[kc.P_HOLD_Z] = self.jump, self.hold_z
        par[kc.P_ESCALATE_AFTER], par[kc.P_CLEAR_BELOW] = self.escalate_after, self.clear_below
        par[kc.P_MIN_STD], par[kc.P_AUTOCORR], par[kc.P_Z_CAP] = (
            self.min_std, float(self.autocorr), self.z_cap,
        )  # fmt: skip
        par[kc.P_PENDING], par[kc.P_WINSOR] = self.pending, self.winsor
        par[kc.P_RESTART] = float(self.restart_on_clear)
        par[kc.P_JUMP_AFTER], par[kc.P_JUMP_SD] = self.jump_after, self.jump_sd
        par[kc.P_CAL_CAP] = float(self.calibration_cap)
        self._par = par
        self._out[self._kc.O_CALIBRATING] = 1.0
        self._code = 0
        self.step = self._bind()

    def _bind(self):
        """``step(x, label) -> state code``: the kernel with this detector's arrays bound
        (after its first call, its compiled function for these argument types: no
        dispatcher type resolution per call)."""
        kernel = self._kc.changepoint_step
        f, ist, par, buf, out, order = (
            self._f, self._ist, self._par, self._buf, self._out, self._order,
        )  # fmt: skip
        fn = kernel

        def step(x: np.ndarray, label: int) -> int:
            nonlocal fn
            code = fn(x, f, ist, par, buf, out, order, label)
            if fn is kernel:
                from ._kernels._jit import compiled

                fn = compiled(kernel, (x, f, ist, par, buf, out, order, label))
            return code

        return step

    def kernel_arrays(self) -> tuple[np.ndarray, ...]:
        """The arrays ``changepoint_step(x, *arrays, label)`` reads and updates in place (state
        first, ``out`` fifth), for a compiled loop that calls the kernel itself (the layer
        monitor's fused replay); the detector's properties then describe that loop's last
        call."""
        return (self._f, self._ist, self._par, self._buf, self._out, self._order)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-identically, in plain lists/ints/floats."""
        return {
            "f": self._f.tolist(),
            "ist": self._ist.tolist(),
            "buf": self._buf.tolist(),
            "out": self._out.tolist(),
            "order": self._order.tolist(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` of a detector with the same parameters; on a wrong shape
        raise naming the entry and leave this detector unchanged."""
        if not isinstance(state, Mapping):
            raise InputTypeError(f"state must be a dict from state_dict(), got {describe(state)}")
        new = {}
        for name, dtype in (
            ("f", np.float64), ("ist", np.int64), ("buf", np.float64), ("out", np.float64),
            ("order", np.int64),
        ):  # fmt: skip
            cur = getattr(self, f"_{name}")
            if name not in state:
                raise InputError(f"change-detector state is missing {name!r}")
            try:
                arr = np.asarray(state[name], dtype=dtype)
            except (TypeError, ValueError) as exc:
                raise InputError(f"change-detector state[{name!r}] is not numeric: {exc}") from exc
            if arr.shape != cur.shape:
                raise InputError(
                    f"change-detector state[{name!r}] must have shape {cur.shape}, got {arr.shape}"
                )
            new[name] = arr
        kc, ist, A = self._kc, new["ist"], self.absorb_after
        checks = (
            (ist[kc.T] >= 0, "t >= 0"),
            (0 <= ist[kc.STATE] <= 2, "state in 0..2"),
            (0 <= ist[kc.BUF_LEN] <= A, f"buffer length in 0..{A}"),
            (0 <= ist[kc.BUF_POS] < A, f"buffer position in 0..{A - 1}"),
            (bool(np.all((new["order"] >= 0) & (new["order"] < self.n_streams))), "stream ids"),
        )
        for ok, what in checks:
            if not ok:  # the kernel indexes with these: refuse before anything is changed
                raise InputError(f"change-detector state is inconsistent: expected {what}")
        for name, arr in new.items():
            getattr(self, f"_{name}")[...] = arr
        self._code = int(self._ist[self._kc.STATE])

    # -- results of the last call ---------------------------------------------------------------
    @property
    def evaluations(self) -> int:
        """Calls of :meth:`update` so far."""
        return int(self._ist[0])

    @property
    def code(self) -> int:
        """Current state as 0 (HEALTHY), 1 (WATCH) or 2 (COLLAPSE)."""
        return int(self._ist[self._kc.STATE])

    @property
    def history(self) -> int:
        """Fewest accepted values of any stream (``calibrating`` until ``trusted_after``)."""
        return int(self._f[self._kc.CNT].min())

    @property
    def state(self) -> str:
        """Current state: ``"HEALTHY"``, ``"WATCH"`` or ``"COLLAPSE"``."""
        return _STATE_NAMES[int(self._ist[self._kc.STATE])]

    @property
    def stat(self) -> float:
        """The statistic of the last call: the largest per-stream statistic (CUSUM or jump
        check; inf on a non-finite value)."""
        return float(self._out[0])

    @property
    def jumped(self) -> bool:
        """The statistic of the last call is a jump check's (see ``jump``)."""
        return bool(self._out[self._kc.O_JUMPED])

    @property
    def direction(self) -> int:
        """+1 / -1 for an upward / downward move of the largest contributor, 0 for none."""
        return int(self._out[1])

    @property
    def calibrating(self) -> bool:
        """True until every stream has ``trusted_after`` accepted values."""
        return bool(self._out[self._kc.O_CALIBRATING])

    @property
    def absorbed(self) -> bool:
        """The last call absorbed a held shift."""
        return bool(self._out[self._kc.O_ABSORBED])

    @property
    def absorbed_start(self) -> int:
        """Label (see :meth:`update`) of the first evaluation of the last absorbed shift; -1."""
        return int(self._ist[self._kc.ABSORBED_LABEL])

    @property
    def alarm_start(self) -> int:
        """Label of the first evaluation of the running alarm; -1 when there is none."""
        return int(self._ist[self._kc.ALARM_LABEL])

    @property
    def alarm_length(self) -> int:
        """Evaluations in the running alarm, the last one included; 0 when there is none."""
        kc = self._kc
        start = int(self._ist[kc.ALARM_START])
        return 0 if start < 0 else int(self._ist[kc.T]) - start

    @property
    def absorbed_length(self) -> int:
        """At the call that absorbed a held shift (:attr:`absorbed`): the evaluations it was
        held, this one included; 0 when no shift was ever absorbed."""
        kc = self._kc
        start = int(self._ist[kc.ABSORBED])
        return 0 if start < 0 else int(self._ist[kc.T]) - start

    def streams(self, limit: int | None = None) -> tuple[int, ...]:
        """Streams over ``h_watch_`` at the last call (the jumping or non-finite ones when those
        fired), largest statistic first, at most ``limit``."""
        n = int(self._out[2])
        if limit is not None:
            n = min(n, limit)
        return tuple(self._order[:n].tolist())

    def stream_stat(self, j: int) -> float:
        """Stream ``j``'s own statistic at the last call: the larger CUSUM side, or its jump
        check's statistic when that is larger."""
        kc = self._kc
        return float(max(self._f[kc.S, j], self._f[kc.JMP, j]))

    def stream_move(self, j: int) -> float:
        """Stream ``j``'s last value minus its baseline mean (stream units)."""
        return float(self._f[self._kc.DEV, j])

    # -- the per-evaluation call ----------------------------------------------------------------
    def update(self, x: Any, label: int | None = None) -> tuple[str, float, tuple[int, ...], int]:
        """Score one evaluation's stream values.

        Returns ``(state, statistic, streams, direction)``: ``"HEALTHY"``/``"WATCH"``/
        ``"COLLAPSE"``, the statistic (see :attr:`stat`), the streams over
        ``h_watch_`` (see :meth:`streams`) and +1 / -1 / 0. ``label`` (default: the evaluation
        index) names this evaluation in :attr:`alarm_start` and :attr:`absorbed_start`.
        """
        arr = as_real_array(x, "x", f"{self.n_streams} stream values")
        if arr.shape != (self.n_streams,):
            raise InputError(f"x must have shape ({self.n_streams},), got {describe(arr)}")
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        lab = self.evaluations if label is None else int(label)
        code = self.step(arr, lab)
        return _STATE_NAMES[code], self.stat, self.streams(), self.direction
