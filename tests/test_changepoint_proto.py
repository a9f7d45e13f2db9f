"""The change-point prototype (benchmarks/evaluation/changepoint.py) on synthetic streams."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import poisson

from benchmarks.evaluation.changepoint import (
    COLLAPSE,
    HEALTHY,
    ChangeDetector,
    lundberg_theta,
    threshold_for,
)

N = 9  # streams: log h0 + 8 layers


def _run(X: np.ndarray, **kw) -> tuple[np.ndarray, ChangeDetector]:
    d = ChangeDetector(X.shape[1], **kw)
    return np.array([d.update(x)[0] for x in X]), d


def _episodes(states: np.ndarray) -> int:
    a = states != HEALTHY
    return int(a[0]) + int(np.count_nonzero(a[1:] & ~a[:-1]))


def _noise(T: int, seed: int, sd: float = 0.05) -> np.ndarray:
    return sd * np.random.default_rng(seed).normal(size=(T, N))


@pytest.mark.parametrize("at", [5, 25, 300])
def test_x100_jump_fires_within_two_evaluations(at):
    X = _noise(at + 20, 0)
    X[at:, 3] += math.log(100.0)
    states, _ = _run(X)
    assert not (states[:at] != HEALTHY).any()
    assert (states[at : at + 2] != HEALTHY).any()


def test_jump_names_stream_and_direction():
    X = _noise(301, 1)
    X[300, 4] -= math.log(1000.0)
    d = ChangeDetector(N)
    for x in X[:300]:
        d.update(x)
    state, stat, streams, direction = d.update(X[300])
    assert state == COLLAPSE and math.isfinite(stat) and stat >= d.h_collapse
    assert streams[0] == 4 and direction == -1


def test_nonfinite_is_collapse_from_step_zero():
    d = ChangeDetector(N)
    x = np.zeros(N)
    x[2] = np.nan
    assert d.update(x)[0] == COLLAPSE


@pytest.mark.parametrize("slope", [0.02, 0.05])  # 0.4 and 1 noise sd per evaluation
def test_pure_drift_fires(slope):
    X = _noise(700, 2)
    X[300:, 2] += slope * np.arange(400)
    states, _ = _run(X)
    assert not (states[:300] != HEALTHY).any()
    first = np.flatnonzero(states[300:] != HEALTHY)
    assert first.size and first[0] < 60


def test_held_shift_is_absorbed_and_a_later_failure_still_fires():
    X = _noise(800, 3)
    X[300:, 2] += 1.0  # 20 sd, then held
    X[600:, 5] += math.log(100.0)
    states, d = _run(X)
    assert (states[300:303] != HEALTHY).any()
    calm = np.flatnonzero(states[300:600] == HEALTHY)
    assert calm.size and calm[calm > 5][0] <= d.absorb_after + 5  # absorbed, not stale
    assert d.absorbed_step in range(300, 303) or (states[560:600] == HEALTHY).all()
    assert (states[600:602] != HEALTHY).any()


def test_growing_shift_is_not_absorbed_and_escalates():
    X = _noise(500, 4)
    X[300:, 2] += 0.05 * np.arange(200)  # keeps growing
    states, d = _run(X)
    assert (states[300 + d.escalate_after + 20 :] == COLLAPSE).all()


def test_gaussian_false_alarm_rate_matches_the_knob():
    """Gaussian mapping (tail=None): episodes per 1k evaluations within a Poisson bound of the
    knob; the default heavy-tail mapping is conservative on Gaussian noise."""
    T, knob = 20_000, 1.0
    X = _noise(T, 5)
    states, _ = _run(X, fa_per_1k=knob, tail=None)
    expected = knob * T / 1000
    ep = _episodes(states)
    assert poisson.ppf(0.0005, expected) <= ep <= poisson.ppf(0.9995, expected)
    states, _ = _run(X, fa_per_1k=knob)
    assert _episodes(states) <= poisson.ppf(0.9995, expected)


def test_state_dict_round_trip_continues_identically():
    X = _noise(400, 6)
    X[250:, 1] += 0.5
    a = ChangeDetector(N)
    for x in X[:260]:
        a.update(x)
    b = ChangeDetector(N)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for x in X[260:]:
        ra, rb = a.update(x), b.update(x)
        assert ra == rb


def test_calibrating_flag_and_thresholds():
    d = ChangeDetector(N, trusted_after=50)
    for x in _noise(49, 7):
        d.update(x)
    assert d.calibrating
    d.update(np.zeros(N))
    assert not d.calibrating
    assert lundberg_theta(2.0, None) == 4.0
    h = [threshold_for(f, 2.0, N, tail=1.6) for f in (0.01, 0.1, 1.0)]
    assert h[0] > h[1] > h[2] > 0
