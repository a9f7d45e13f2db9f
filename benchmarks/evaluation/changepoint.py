"""Sequential change detector: a pure-numpy reference for LayerMonitor's next decision rule.

One :class:`ChangeDetector` watches N streams (per evaluation: ``log h0`` and, per signal and
layer, the layer's median-relative log value). Per stream and per evaluation:

1. **Baseline** (O(1)): a prediction ``m`` (mean of accepted values, cumulative for the first
   ``mean_window`` = 20, then exponentially weighted with that window) and the variance ``v``
   of the prediction errors ``r = x - m`` (cumulative for 10 errors, then exponentially
   weighted over half the errors seen, at most ``scale_window`` = 100, so the early-training
   transient is forgotten). Updates are winsorised at 3 sd once the stream is live.
2. **Small-sample residual**: ``t = r / sqrt(v (1 + 1/n))`` (Student-t predictive, ``n`` the
   effective count of the mean, dof the effective count of ``v`` minus 1) mapped to a standard
   normal quantile (Wallace 1959), so thresholds tighten to the asymptotic ones as n grows.
3. **Two-sided CUSUM** (Page 1954): ``S+ = max(0, S+ + z - k)``, ``S- = max(0, S- - z - k)``
   with ``k = 2``. The statistic is the largest S over streams and sides; WATCH when it
   reaches ``h_watch``, COLLAPSE when it reaches ``h_collapse`` (same statistic, 100x rarer
   under no change) or when an alarm has lasted ``escalate_after`` evaluations unabsorbed.
4. **One knob** ``fa_per_1k`` (expected false alarms per 1,000 evaluations). Each of the 2N
   one-sided CUSUMs needs ``ARL0 = 2 N 1000 / fa_per_1k`` (union bound) and
   ``h = log(ARL0) / theta`` (Wald/Lundberg: ``ARL0 ~ exp(theta h)``), theta solving
   ``E exp(theta (z - k)) = 1``. ``tail=None`` takes Gaussian z (theta = 2k, Siegmund's formula
   for h); the default ``tail=1.6`` takes Laplace z of scale 1.6: residuals of real training
   signals have far heavier tails than Gaussian (calibrated on the digits seeds 0-19, see
   benchmarks/evaluation/CHANGEPOINT.md).
5. **Live from evaluation 0**: a non-finite value is COLLAPSE at once. Once a stream has a
   settled own history (``jump_after`` accepted values, and the move exceeds ``jump_sd``
   prediction-error sd), a move of more than ``jump`` (log units; default log 30, so a x100
   move fires at once) from its baseline mean is WATCH at once
   (layer streams are median-relative, so this is "against its own history and against the
   other layers"), with the finite statistic ``h_watch + (h_collapse - h_watch) (|move| / jump
   - 1)``: the WATCH threshold at x30, the COLLAPSE threshold at x900 (twice ``jump``). The
   CUSUM runs once a stream has ``min_history`` accepted values; ``calibrating`` is True until
   every stream has ``trusted_after``.
6. **Baseline hygiene**: a value enters its stream's baseline only when no alarm is active and
   the stream's statistic is at most ``pending * h_watch`` (0.5). An alarm ends when the
   statistic falls below ``clear_below * h_watch``; the CUSUMs then restart from 0. During an
   alarm the last ``absorb_after`` (30) raw vectors are kept; once the alarm is that old and
   every stream's mean is the same in both halves of that buffer (within ``hold_z`` = 4
   standard errors) the shift is *absorbed*: baselines restart from the buffer's second half,
   CUSUMs from 0, state HEALTHY, ``absorbed_step`` = the alarm's first evaluation. A growing
   shift fails the test and escalates; after an absorption a new failure raises a new alarm.

State codes: 0 HEALTHY, 1 WATCH, 2 COLLAPSE.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

HEALTHY, WATCH, COLLAPSE = 0, 1, 2
_SIEGMUND = 1.166  # Siegmund's overshoot correction (2 * 0.583) for Gaussian increments


def siegmund_arl(k: float, h: float) -> float:
    """In-control average run length of a one-sided CUSUM ``S = max(0, S + z - k)`` on
    N(0, 1) increments with threshold ``h`` (Siegmund 1985)."""
    a = 2.0 * k * (h + _SIEGMUND)
    if a > 700.0:
        return math.inf
    return (math.expm1(a) - a) / (2.0 * k * k)


def lundberg_theta(k: float, tail: float | None) -> float:
    """Exponent theta > 0 with E[exp(theta (z - k))] = 1 for the CUSUM increment ``z - k``:
    ``2 k`` for standard normal z, and for Laplace z of scale ``tail`` (heavy tails) the root
    of ``exp(-theta k) = 1 - (theta tail)^2`` in (0, 1 / tail)."""
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


def threshold_for(fa_per_1k: float, k: float, n_streams: int, tail: float | None = None) -> float:
    """CUSUM threshold h giving ``fa_per_1k`` expected false alarms per 1,000 evaluations over
    ``n_streams`` two-sided streams (union bound: each side of each stream gets an equal share,
    so each one-sided CUSUM needs ARL0 = 2 N 1000 / fa_per_1k).

    ``tail=None``: Siegmund's Gaussian approximation, solved for h. ``tail`` = a Laplace scale:
    the exponential-tail (Lundberg/Wald) approximation ``ARL0 ~ exp(theta h)``, i.e.
    ``h = log(ARL0) / theta`` with theta from :func:`lundberg_theta`.

    >>> round(threshold_for(0.1, 1.0, 1), 2)
    4.13
    >>> round(threshold_for(0.1, 2.0, 17, tail=1.6), 1)
    25.7
    """
    if not fa_per_1k > 0:
        raise ValueError(f"fa_per_1k must be > 0, got {fa_per_1k!r}")
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


def t_to_z(t: float | np.ndarray, nu: float | np.ndarray) -> np.ndarray:
    """Standard normal quantile of a Student-t value with ``nu`` dof (Wallace 1959; error
    < 0.02 for nu >= 3 up to |t| = 10)."""
    t = np.asarray(t, dtype=np.float64)
    nu = np.maximum(np.asarray(nu, dtype=np.float64), 1.0)
    z = np.sqrt(nu * np.log1p(t * t / nu)) * (8.0 * nu + 1.0) / (8.0 * nu + 3.0)
    return np.sign(t) * z


class ChangeDetector:
    """Two-sided CUSUM over N standardised streams, live from the first evaluation.

    Parameters
    ----------
    n_streams : int
        N, the length of every vector given to :meth:`update`.
    fa_per_1k : float, default 0.1
        The knob: expected false alarms per 1,000 evaluations under no change (Gaussian,
        union bound over streams). Sets ``h_watch``; ``h_collapse`` is the threshold for a
        100x smaller rate.
    k : float, default 1.0
        CUSUM reference (half the shift, in long-run sd, the detector is tuned for).
    mean_window, scale_window : int, default 50, 200
        Memory (evaluations) of the prediction and of its error variance.
    min_history : int, default 40
        Accepted values before a stream's CUSUM runs.
    trusted_after : int, default 100
        Accepted values before ``calibrating`` turns False.
    jump : float, default log(30)
        Absolute check (log units): a move this large from the baseline mean is WATCH at once;
        twice as large reaches the COLLAPSE threshold.
    jump_after : int, default 5
        Accepted values of a stream before its jump check runs.
    jump_sd : float, default 3.0
        A jump must also exceed this many prediction-error sd (a settled own history: right
        after a large healthy transient the stream's scatter is still large).
    absorb_after : int, default 30
        Age (evaluations) at which a held shift is absorbed.
    hold_z : float, default 4.0
        Largest |difference of the buffer halves' means| (in standard errors) of a held shift.
    escalate_after : int, default 50
        Alarm age at which WATCH becomes COLLAPSE.
    clear_below : float, default 0.5
        The alarm ends when the statistic falls below ``clear_below * h_watch``.
    min_std : float, default 0.01
        Floor of every prediction-error sd (stream units; 1 % for log signals). A median-relative
        layer stream is exactly 0 while that layer is the median (odd layer counts), so a
        smaller floor (1e-3) made a change of median layer a large residual.
    calibration_cap : bool, default True
        While ``calibrating`` the CUSUM alone raises WATCH, never COLLAPSE, and alarms do not
        escalate by age; non-finite values and x900 jumps still raise COLLAPSE.
    """

    def __init__(
        self,
        n_streams: int,
        fa_per_1k: float = 0.1,
        *,
        k: float = 2.0,
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
        tail: float | None = 1.6,
        pending: float = 0.5,
        winsor: float = 3.0,
        h: float | None = None,
        calibration_cap: bool = True,
    ) -> None:
        if n_streams < 1:
            raise ValueError(f"n_streams must be >= 1, got {n_streams!r}")
        self.n = int(n_streams)
        self.fa_per_1k = float(fa_per_1k)
        self.k = float(k)
        self.tail, self.pending, self.winsor = tail, float(pending), float(winsor)
        self.h_watch = threshold_for(fa_per_1k, k, self.n, tail) if h is None else float(h)
        self.h_collapse = (
            threshold_for(fa_per_1k / 100.0, k, self.n, tail) if h is None else 2.0 * h
        )
        self.mean_window, self.scale_window = int(mean_window), int(scale_window)
        self.min_history, self.trusted_after = int(min_history), int(trusted_after)
        self.jump_after, self.jump_sd = int(jump_after), float(jump_sd)
        self.jump, self.absorb_after, self.hold_z = float(jump), int(absorb_after), float(hold_z)
        self.escalate_after, self.clear_below = int(escalate_after), float(clear_below)
        self.min_std, self.autocorr = float(min_std), bool(autocorr)
        self.z_cap = float(z_cap)
        self.calibration_cap = bool(calibration_cap)
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything (a fresh detector)."""
        n = self.n
        self.t = 0  # evaluations seen
        self.cnt = np.zeros(n)  # accepted values per stream
        self.m = np.full(n, np.nan)  # prediction (baseline mean); NaN before the first value
        self.v = np.zeros(n)  # prediction-error variance
        self.nv = np.zeros(n)  # prediction errors in v
        self.rho = np.zeros(n)  # lag-1 autocorrelation of z
        self.zprev = np.zeros(n)
        self.sp = np.zeros(n)  # CUSUM, upward
        self.sn = np.zeros(n)  # CUSUM, downward
        self.state = HEALTHY
        self.alarm_start = -1  # evaluation the running alarm started at
        self.absorbed_step = -1  # start of the last absorbed shift
        self.buf: deque = deque(maxlen=self.absorb_after)
        self.last_z = np.zeros(n)
        self.key = np.zeros(n)  # per-stream statistic of the last call: max(CUSUM, jump)
        self.jumped = False  # the last statistic came from the jump check

    def state_dict(self) -> dict:
        """Plain floats/lists/ints (JSON-serialisable)."""
        arrays = ("cnt", "m", "v", "nv", "rho", "zprev", "sp", "sn", "last_z")
        out = {a: getattr(self, a).tolist() for a in arrays}
        out.update(
            t=self.t,
            state=self.state,
            alarm_start=self.alarm_start,
            absorbed_step=self.absorbed_step,
            buf=[b.tolist() for b in self.buf],
        )
        return out

    def load_state_dict(self, sd: dict) -> None:
        for a in ("cnt", "m", "v", "nv", "rho", "zprev", "sp", "sn", "last_z"):
            setattr(self, a, np.asarray(sd[a], dtype=np.float64))
        self.t, self.state = int(sd["t"]), int(sd["state"])
        self.alarm_start, self.absorbed_step = int(sd["alarm_start"]), int(sd["absorbed_step"])
        self.buf = deque((np.asarray(b) for b in sd["buf"]), maxlen=self.absorb_after)

    @property
    def calibrating(self) -> bool:
        """True until every stream has ``trusted_after`` accepted values."""
        return bool(self.cnt.min() < self.trusted_after)

    # -- the per-evaluation call ---------------------------------------------------------------
    def update(self, x) -> tuple[int, float, tuple[int, ...], int]:
        """Score one evaluation's stream values.

        Returns ``(state, statistic, streams, direction)``: the state code, the largest
        per-stream statistic (CUSUM or jump check; inf on a non-finite value), the indices of
        the streams over ``h_watch`` (largest first; the non-finite ones when those fired) and
        +1 / -1 / 0 for the direction of the largest statistic.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.n,):
            raise ValueError(f"x must have shape ({self.n},), got {x.shape}")
        t = self.t
        self.t += 1
        capped = self.calibration_cap and self.calibrating  # counts before this call
        bad = ~np.isfinite(x)
        if bad.any():  # absolute check: non-finite is COLLAPSE, nothing enters a baseline
            self.jumped = False
            self._enter_alarm(t, COLLAPSE)
            return COLLAPSE, math.inf, tuple(np.flatnonzero(bad).tolist()), 0
        seen = ~np.isnan(self.m)
        if not seen.all():  # first value of a stream: it is its own baseline
            self.m[~seen] = x[~seen]
        dev = x - self.m
        n_mean = np.minimum(np.maximum(self.cnt, 1.0), 2.0 * self.mean_window - 1.0)
        sd = np.sqrt(np.maximum(self.v, self.min_std**2) * (1.0 + 1.0 / n_mean))
        big = np.abs(dev) > self.jump
        jumped = (self.cnt >= self.jump_after) & big & (np.abs(dev) > self.jump_sd * sd)
        z = self._residual(dev)
        live = self.cnt >= self.min_history
        zl = np.where(live, np.clip(z, -self.z_cap, self.z_cap), 0.0)
        self.sp = np.where(live, np.maximum(0.0, self.sp + zl - self.k), 0.0)
        self.sn = np.where(live, np.maximum(0.0, self.sn - zl - self.k), 0.0)
        s = np.maximum(self.sp, self.sn)
        # the jump check's statistic: h_watch at a move of `jump`, h_collapse at twice that
        hw, hc = self.h_watch, self.h_collapse
        js = np.where(jumped, hw + (hc - hw) * (np.abs(dev) / self.jump - 1.0), 0.0)
        key = np.maximum(s, js)
        self.key = key
        stat = float(key.max())
        top = int(np.argmax(key))
        if stat == 0:
            direction = 0
        elif js[top] > s[top]:
            direction = 1 if dev[top] > 0 else -1
        else:
            direction = 1 if self.sp[top] >= self.sn[top] else -1
        self.jumped = bool(js[top] > s[top])
        # state
        if stat >= self.h_collapse:
            level = COLLAPSE
            if capped and not js.max() >= self.h_collapse:  # the CUSUM alone, calibrating
                level = WATCH
        elif stat >= self.h_watch:
            level = WATCH
        else:
            level = HEALTHY
        if level:
            self._enter_alarm(t, level)
        elif self.state and stat < self.clear_below * self.h_watch:
            self.state, self.alarm_start = HEALTHY, -1
            self.buf.clear()
            self.sp[:] = 0.0  # restart after an alarm (so episodes are not clustered)
            self.sn[:] = 0.0
        if self.state:
            self.buf.append(x.copy())
            age = t - self.alarm_start + 1
            if age >= self.absorb_after and len(self.buf) >= 4 and self._held():
                self._absorb()
                self.jumped = False
                return HEALTHY, 0.0, (), 0
            if age >= self.escalate_after and not capped:
                self.state = COLLAPSE
        # baseline hygiene: accept only outside alarms and below half the threshold
        if not self.state:
            accept = s <= self.pending * self.h_watch
            self._accept(x, dev, z, accept)
        over = np.flatnonzero(key >= self.h_watch)
        streams = tuple(over[np.argsort(-key[over], kind="stable")].tolist())
        return self.state, stat, streams, direction

    # -- pieces --------------------------------------------------------------------------------
    def _residual(self, dev: np.ndarray) -> np.ndarray:
        nv = self.nv
        n_mean = np.minimum(np.maximum(self.cnt, 1.0), 2.0 * self.mean_window - 1.0)
        sd = np.sqrt(np.maximum(self.v, self.min_std**2) * (1.0 + 1.0 / n_mean))
        tt = dev / sd
        z = t_to_z(tt, np.maximum(np.minimum(nv, self._scale_w(nv)) - 1.0, 1.0))
        z = np.where(nv >= 2, z, 0.0)
        self.z_raw = z
        if self.autocorr:
            r = np.clip(self.rho, 0.0, 0.95)
            z = z / np.sqrt((1.0 + r) / (1.0 - r))
        self.last_z = z
        return z

    def _scale_w(self, nv: np.ndarray) -> np.ndarray:
        """Memory of the error variance: cumulative for 10 errors, then half the errors seen
        (so the early-training transient is forgotten), at most ``scale_window``."""
        return np.clip(np.maximum(nv, 1.0), 1.0, np.clip(nv / 2.0, 10.0, self.scale_window))

    def _accept(self, x: np.ndarray, dev: np.ndarray, z: np.ndarray, accept: np.ndarray) -> None:
        cnt = np.where(accept, self.cnt + 1, self.cnt)
        live = self.cnt >= self.min_history
        sd = np.sqrt(np.maximum(self.v, self.min_std**2))
        c = self.winsor
        r = np.where(live, np.clip(dev, -c * sd, c * sd), dev)
        am = np.maximum(1.0 / cnt, 1.0 / self.mean_window)
        nv = np.where(accept, self.nv + 1, self.nv)
        av = 1.0 / self._scale_w(nv)
        upd = accept
        self.m = np.where(upd, self.m + am * r, self.m)
        self.v = np.where(upd, self.v + av * (r * r - self.v), self.v)
        zc = np.clip(self.z_raw, -4.0, 4.0)
        ok = upd & (nv >= 3)
        ar = np.maximum(1.0 / np.maximum(nv - 2, 1), 1.0 / self.scale_window)
        self.rho = np.where(ok, self.rho + ar * (zc * self.zprev - self.rho), self.rho)
        self.zprev = np.where(upd, zc, self.zprev)
        self.cnt, self.nv = cnt, nv

    def _enter_alarm(self, t: int, level: int) -> None:
        if not self.state:
            self.alarm_start = t
            self.buf.clear()
        self.state = max(self.state, level)

    def _held(self) -> bool:
        """Is every stream's level the same in both halves of the alarm buffer?"""
        b = np.asarray(self.buf)
        h = len(b) // 2
        a, c = b[:h], b[h:]
        se = np.sqrt(a.var(0, ddof=1) / len(a) + c.var(0, ddof=1) / len(c))
        se = np.maximum(se, self.min_std)
        return bool(np.all(np.abs(c.mean(0) - a.mean(0)) <= self.hold_z * se))

    def _absorb(self) -> None:
        b = np.asarray(self.buf)
        c = b[len(b) // 2 :]
        self.m = c.mean(0)
        self.v = np.maximum(self.v, c.var(0, ddof=1))
        self.sp[:] = 0.0
        self.sn[:] = 0.0
        self.absorbed_step = self.alarm_start
        self.state, self.alarm_start = HEALTHY, -1
        self.buf.clear()
