"""Per-run scores of one detector: detection, lead time, false-alarm episodes."""

from __future__ import annotations

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
