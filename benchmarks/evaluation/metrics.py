"""Per-run scores of one detector (detection, lead time, false-alarm episodes) and their
aggregates over runs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def poisson_upper(k: int, conf: float = 0.95) -> float:
    """Exact one-sided upper confidence bound of a Poisson mean with k observed events."""
    from scipy.stats import chi2

    return float(chi2.ppf(conf, 2 * (k + 1)) / 2)


def episodes(alarm: np.ndarray) -> int:
    """Number of alarm episodes (rising edges)."""
    a = np.asarray(alarm, dtype=bool)
    return int(a[0]) + int(np.count_nonzero(a[1:] & ~a[:-1])) if a.size else 0


def score(alarm: np.ndarray, t0: int | None, onset: int | None, fault: str = "") -> dict:
    """Scores of one alarm track.

    Healthy steps are the whole run for healthy runs, the steps before t0 for runs with an
    injection step, and none for label-noise runs (they overfit from the start, so no step of
    theirs is known to be healthy); false alarms are the alarm episodes that start on healthy
    steps. A fault is detected when an
    alarm is on at some step >= t0; lead = onset - first such step (positive = earlier than the
    loss/accuracy showed it).
    """
    T = len(alarm)
    healthy_end = t0 if t0 is not None else (0 if fault == "label_noise" else T)
    fa = episodes(alarm[:healthy_end])
    out = {"healthy_steps": healthy_end, "false_alarms": fa, "first_alarm": None, "lead": None}
    start = t0 if t0 is not None else 0
    if onset is not None or t0 is not None:
        hits = np.flatnonzero(alarm[start:])
        if hits.size:
            out["first_alarm"] = int(start + hits[0])
            if onset is not None:
                out["lead"] = int(onset - out["first_alarm"])
    return out


def alarm_rates(scores: Sequence[dict], healthy_run: Sequence[bool]) -> dict:
    """False-alarm rate and alarm share of one detector over its scored runs.

    ``scores`` are per-run dicts with ``healthy_steps``, ``fa`` (false-alarm episodes) and
    ``in_alarm`` (healthy steps in alarm); ``healthy_run`` says which runs are healthy ones.
    Rates are per 1k healthy steps with the exact 95% Poisson upper bound, shares are fractions
    of the healthy steps; the ``healthy_runs_`` keys count the healthy runs only.
    """
    hs = sum(s["healthy_steps"] for s in scores)
    fa = sum(s["fa"] for s in scores)
    hr = [s for s, h in zip(scores, healthy_run, strict=True) if h]
    hs_h = sum(s["healthy_steps"] for s in hr)
    fa_h = sum(s["fa"] for s in hr)
    return {
        "healthy_steps": hs,
        "fa": fa,
        "fa_per_1k": 1000 * fa / max(hs, 1),
        "fa_upper": 1000 * poisson_upper(fa) / max(hs, 1),
        "in_alarm": sum(s["in_alarm"] for s in scores) / max(hs, 1),
        "healthy_runs_steps": hs_h,
        "healthy_runs_fa": fa_h,
        "healthy_runs_fa_per_1k": 1000 * fa_h / max(hs_h, 1),
        "healthy_runs_fa_upper": 1000 * poisson_upper(fa_h) / max(hs_h, 1),
        "healthy_runs_in_alarm": sum(s["in_alarm"] for s in hr) / max(hs_h, 1),
    }


def rate_cells(rates: dict, digits: int) -> str:
    """The three table cells of :func:`alarm_rates`: FA / 1k (95% upper), healthy steps in
    alarm, and both for the healthy runs only (rates with ``digits`` decimals)."""
    d, r = digits, rates
    return (
        f"{r['fa_per_1k']:.{d}f} ({r['fa_upper']:.{d}f}) | {100 * r['in_alarm']:.2f}% | "
        f"{r['healthy_runs_fa_per_1k']:.{d}f} ({r['healthy_runs_fa_upper']:.{d}f}), "
        f"{100 * r['healthy_runs_in_alarm']:.2f}%"
    )
