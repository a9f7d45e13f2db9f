"""Detectors, each a function ``RunRecord -> bool array (T,)`` of per-step alarm states.

Baselines (no topology) and streamtopo's monitors are run over the same recorded signals.
Every threshold here was fixed before the evaluation was run (the values the issue and
DESIGN.md describe); nothing is tuned on the results.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .scenarios import RunRecord

K = 100  # baseline length (steps)
Z = 3.0  # |z| threshold
RUN = 5  # consecutive steps


def rolling_z_alarm(x: np.ndarray, k: int = K, z: float = Z, run: int = RUN) -> np.ndarray:
    """Two-sided rolling z-score alarm over a scalar series (or the max |z| over columns).

    The baseline is the previous k values that were not seen during an alarm; alarm when
    |z| > z for ``run`` consecutive steps; non-finite values count as |z| = inf.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    T = x.shape[0]
    alarm = np.zeros(T, dtype=bool)
    hist: list[np.ndarray] = []
    streak = 0
    for t in range(T):
        v = x[t]
        if len(hist) >= k:
            base = np.asarray(hist[-k:])
            mu, sd = base.mean(0), base.std(0) + 1e-12
            zt = np.where(np.isfinite(v), np.abs((v - mu) / sd), np.inf).max()
            streak = streak + 1 if zt > z else 0
            alarm[t] = streak >= run
        if not alarm[t] and np.isfinite(v).all():
            hist.append(v)
            if len(hist) > k:
                hist.pop(0)
    return alarm


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.maximum(x, 1e-30))


def loss_spike(rec: RunRecord) -> np.ndarray:
    """Rolling z-score of the training loss (K=100, |z|>3 for 5 steps)."""
    return rolling_z_alarm(rec.loss)


def loss_rise(rec: RunRecord) -> np.ndarray:
    """Loss above 1.1 x its 100-step EMA for 5 consecutive steps."""
    alpha = 2.0 / (100 + 1)
    alarm = np.zeros(len(rec.loss), dtype=bool)
    ema = None
    streak = 0
    for t, v in enumerate(rec.loss):
        if ema is not None and t >= 100:
            streak = streak + 1 if (not np.isfinite(v) or v > 1.1 * ema) else 0
            alarm[t] = streak >= 5
        if np.isfinite(v):
            ema = v if ema is None else alpha * v + (1 - alpha) * ema
    return alarm


def max_layer_z(rec: RunRecord) -> np.ndarray:
    """Largest per-layer |z| of log activation norm against each layer's own baseline."""
    return rolling_z_alarm(_log(rec.act_norm))


def std_log_norms(rec: RunRecord) -> np.ndarray:
    """Std of log activation norms across layers, rolling z-scored."""
    return rolling_z_alarm(np.std(_log(rec.act_norm), axis=1))


def grad_norm_z(rec: RunRecord) -> np.ndarray:
    """Rolling z-score of the log total gradient norm."""
    return rolling_z_alarm(0.5 * _log(np.sum(rec.grad_norm**2, axis=1)))


def _eval_to_steps(rec: RunRecord, flags: np.ndarray) -> np.ndarray:
    """Hold each evaluation's alarm until the next evaluation."""
    out = np.zeros(len(rec.loss), dtype=bool)
    for e, step in enumerate(rec.eval_steps):
        end = rec.eval_steps[e + 1] if e + 1 < len(rec.eval_steps) else len(rec.loss)
        out[step:end] = flags[e]
    return out


def rankme(feats: np.ndarray) -> float:
    s = np.linalg.svd(feats - feats.mean(0), compute_uv=False)
    p = s / max(s.sum(), 1e-30) + 1e-12
    return float(np.exp(-np.sum(p * np.log(p))))


def rankme_z(rec: RunRecord) -> np.ndarray:
    """RankMe of the probe features per evaluation; |z| > 3 against the first 8 evaluations
    (std floored at 5% of the mean) for 2 consecutive evaluations."""
    r = np.array([rankme(f) for f in rec.features_train])
    flags = np.zeros(len(r), dtype=bool)
    streak = 0
    for e in range(8, len(r)):
        base = r[:8]
        sd = max(base.std(), 0.05 * abs(base.mean()))
        streak = streak + 1 if abs(r[e] - base.mean()) / sd > 3 else 0
        flags[e] = streak >= 2
    return _eval_to_steps(rec, flags)


def val_loss_patience(rec: RunRecord, patience: int = 5) -> np.ndarray:
    """Early-stopping patience on the held-out loss: no new minimum for 5 evaluations."""
    flags = np.zeros(len(rec.test_loss), dtype=bool)
    best, since = np.inf, 0
    for e, v in enumerate(rec.test_loss):
        if v < best:
            best, since = v, 0
        else:
            since += 1
        flags[e] = since >= patience
    return _eval_to_steps(rec, flags)


BASELINES: dict[str, Callable[[RunRecord], np.ndarray]] = {
    "loss_spike_z": loss_spike,
    "loss_rise": loss_rise,
    "max_layer_z": max_layer_z,
    "std_log_norms": std_log_norms,
    "grad_norm_z": grad_norm_z,
    "rankme_z": rankme_z,
    "val_loss_patience": val_loss_patience,
}
