"""LossRiseDetector against its naive twin; state round trips; bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from streamtopo.errors import InputError, InputTypeError
from streamtopo.monitors.loss import LossRiseDetector

from .naive_loss import loss_rise_states


def streams():
    rng = np.random.default_rng(0)
    healthy = list(2.0 * np.exp(-np.arange(300) / 100) + 0.05 * rng.random(300))
    spike = healthy[:150] + [h * 3.0 for h in healthy[150:170]] + healthy[170:]
    flat_then_rise = [1.0] * 60 + [1.0 + 0.02 * k for k in range(60)]
    negative = list(-1.0 - rng.random(80)) + [-0.5] * 10  # ELBO-like: rises towards 0
    nonfinite = healthy[:50] + [math.nan, math.inf] + healthy[50:80] + [math.nan] * 4
    ties = [1.0] * 40 + [1.1] * 10 + [1.1000001] * 10
    return {
        "healthy": healthy,
        "spike": spike,
        "rise": flat_then_rise,
        "negative": negative,
        "nonfinite": nonfinite,
        "ties": ties,
    }


@pytest.mark.parametrize("name", list(streams()))
@pytest.mark.parametrize("span, patience, warmup", [(100, 5, 25), (10, 2, 3), (5, 1, 0)])
def test_matches_naive_twin(name, span, patience, warmup):
    losses = streams()[name]
    det = LossRiseDetector(span=span, patience=patience, warmup=warmup)
    got = [det.check(x).state.value for x in losses]
    assert got == loss_rise_states(losses, span, 1.1, patience, warmup)


def test_spike_fires_and_says_why():
    det = LossRiseDetector()
    states = [det.check(x) for x in streams()["spike"]]
    first = next(s for s in states if s.alarm)
    assert 150 + 4 <= first.step <= 150 + 6
    assert "> 1.1 x EMA" in first.reason and "for 5 steps" in first.reason
    assert not any(s.alarm for s in states[:150])
    assert not states[-1].alarm


def test_healthy_decay_never_fires():
    det = LossRiseDetector()
    assert not any(det.check(x).alarm for x in streams()["healthy"])


def test_nonfinite_collapses_and_stops_after_patience():
    det = LossRiseDetector(stop_patience=3)
    for x in [1.0] * 10:
        det.check(x)
    det.check(float("nan"))
    det.check(float("inf"))
    assert det.status_.state == "COLLAPSE" and not det.should_stop
    assert det.ema_ == 1.0  # non-finite values never enter the EMA
    det.check(float("nan"))
    assert det.should_stop
    det.check(1.0)
    assert not det.should_stop


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"span": 0}, InputError, "span"),
        ({"factor": 1.0}, InputError, "factor must be a number > 1"),
        ({"factor": "1.2"}, InputError, "factor"),
        ({"patience": 1.5}, InputTypeError, "patience"),
    ],
)
def test_bad_config(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        LossRiseDetector(**kwargs)


@pytest.mark.parametrize("bad", ["1.0", None, [1.0, 2.0], True])
def test_bad_loss_leaves_state_unchanged(bad):
    det = LossRiseDetector()
    for x in [1.0, 2.0, 3.0]:
        det.check(x)
    before = det.state_dict()
    with pytest.raises(InputTypeError, match="loss must be a real number"):
        det.check(bad)
    assert det.state_dict() == before


def test_writer_rows():
    rows = []
    det = LossRiseDetector(writer=rows.append)
    det.check(2.0)
    det.check(np.float32(1.5))
    assert [r["monitor"] for r in rows] == ["loss", "loss"]
    assert rows[1]["step"] == 1 and rows[1]["loss"] == 1.5 and rows[1]["ema"] == 2.0
    assert json.dumps(rows[1]["config"])
