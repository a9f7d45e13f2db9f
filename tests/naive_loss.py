"""Naive twin of the loss-rise rule: recompute the EMA from scratch at every step."""

from __future__ import annotations

import math


def loss_rise_states(losses, span=100, factor=1.1, patience=5, warmup=25):
    """States ('HEALTHY'/'WATCH'/'COLLAPSE') of the rule, recomputing the EMA of the finite
    losses before each step from the whole history."""
    alpha = 2.0 / (span + 1.0)
    out, streak = [], 0
    for t, x in enumerate(losses):
        past = [v for v in losses[:t] if math.isfinite(v)]
        if not math.isfinite(x):
            streak = 0
            out.append("COLLAPSE")
            continue
        ema = math.nan
        for k, v in enumerate(past):
            ema = v if k == 0 else (1 - alpha) * ema + alpha * v
        rising = len(past) >= warmup and x - ema > (factor - 1) * abs(ema)
        streak = streak + 1 if rising else 0
        out.append("WATCH" if streak >= patience else "HEALTHY")
    return out
