"""Failure onset, fixed before any detector was looked at.

- Faults with an injection step t0: let s be the EMA (alpha = 0.1) of the training loss and
  ref the median of s over [t0 - 100, t0). Onset is the first step t >= t0 where s_t > 1.5 x ref,
  or the first evaluation step >= t0 whose test accuracy is more than 5 points below the best
  test accuracy seen before t0 — whichever comes first. A run where neither happens has no
  onset: the injected fault did not show in loss or accuracy, and the run is reported as
  "no visible failure" instead of being counted as a detection or a miss.
- ``label_noise``: onset is the first evaluation step whose test loss exceeds 1.1 x the lowest
  test loss seen so far (the point where overfitting shows in the held-out loss).
- ``healthy``: no onset.
"""

from __future__ import annotations

import numpy as np

from .scenarios import RunRecord


def ema(x: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(x, dtype=np.float64)
    acc = float(x[0])
    for t, v in enumerate(x):
        acc = alpha * float(v) + (1 - alpha) * acc if np.isfinite(v) else acc
        out[t] = acc
    return out


def failure_onset(rec: RunRecord) -> int | None:
    cfg = rec.config
    if cfg.fault == "healthy":
        return None
    if cfg.fault == "label_noise":
        best = np.inf
        for step, tl in zip(rec.eval_steps, rec.test_loss, strict=True):
            if tl > 1.1 * best:
                return int(step)
            best = min(best, tl)
        return None
    t0 = cfg.t0
    loss = np.where(np.isfinite(rec.loss), rec.loss, 1e6)
    s = ema(loss, 0.1)
    ref = float(np.median(s[max(t0 - 100, 0) : t0]))
    above = np.flatnonzero(s[t0:] > 1.5 * ref)
    onset_loss = int(t0 + above[0]) if above.size else None
    before = rec.eval_steps < t0
    best_acc = float(rec.test_acc[before].max()) if before.any() else 0.0
    after = np.flatnonzero((rec.eval_steps >= t0) & (rec.test_acc < best_acc - 0.05))
    onset_acc = int(rec.eval_steps[after[0]]) if after.size else None
    cands = [o for o in (onset_loss, onset_acc) if o is not None]
    return min(cands) if cands else None
