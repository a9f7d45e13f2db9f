"""The alarm machinery shared by monitors: RollingBaseline, ZScoreAlarm, PeakRule, Patience."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamtopo.alarms import Patience, PeakRule, RollingBaseline, State, ZScoreAlarm
from streamtopo.monitors import LayerStatus


def test_rolling_baseline_matches_numpy_over_refreshes():
    rng = np.random.default_rng(0)
    b = RollingBaseline(size=7, min_std=1e-3)
    xs = list(1e6 + rng.normal(size=200))  # a large offset: cancellation would show
    for k, x in enumerate(xs):
        b.push(x)
        held = np.array(xs[max(0, k - 6) : k + 1])
        assert b.count == len(held)
        assert b.mean == pytest.approx(held.mean(), rel=1e-15, abs=1e-9)
        assert b.std == pytest.approx(max(held.std(), 1e-3), rel=1e-7)
        want = (5.0 - held.mean()) / max(held.std(), 1e-3) if len(held) == 7 else math.nan
        got = b.zscore(5.0)
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-7)
    c = RollingBaseline(size=7, min_std=1e-3)
    c.load_state_dict(b.state_dict())
    for x in (1.0, 2.0, 3.0):
        b.push(x)
        c.push(x)
    assert (b.mean, b.std) == (c.mean, c.std)


def test_constant_baseline_needs_min_std():
    b = RollingBaseline(size=3)
    for _ in range(3):
        b.push(2.0)
    assert b.zscore(2.0) == 0.0 and b.zscore(3.0) == math.inf and b.zscore(1.0) == -math.inf


def run(alarm, zs):
    return [str(alarm.update(z if isinstance(z, tuple) else (z,)))[0] for z in zs]


def test_zscore_alarm_raise_collapse_clear():
    a = ZScoreAlarm(("t",), raise_after=3, clear_after=2, escalate_after=50)
    # WATCH after 3 steps over 3; a calm step resets the count before that
    assert "".join(run(a, [4, 4, 0, 4, 4, 4, 4])) == "HHHHHWW"
    # two calm steps clear it
    assert "".join(run(a, [0, 0, 0])) == "WHH"
    # COLLAPSE after 3 steps over 6, two-sided
    assert "".join(run(a, [-7, -7, -7, -4, 0, 0])) == "HHCCCH"


def test_zscore_alarm_escalates_and_nan_holds():
    a = ZScoreAlarm(("t", "layer"), collapse_z=(6.0, math.inf), raise_after=2,
                    escalate_after=4, clear_after=1)  # fmt: skip
    states = run(a, [(0.0, 10.0)] * 2 + [(0.0, 10.0)] * 3 + [(math.nan, math.nan)] + [(0.0, 10.0)])
    assert "".join(states) == "HWWWWCC"  # layer only raises WATCH; 4 WATCH steps escalate
    assert a.raised_by == ("layer",) and a.over_steps == 6
    b = ZScoreAlarm(("t",), raise_after=2, clear_after=1)
    assert (
        "".join(run(b, [4, math.nan, 4, math.nan, 0])) == "HHWWH"
    )  # NaN neither counts nor resets
    b.update((4.0,))
    b.update((4.0,))
    b.acknowledge()
    assert b.state is State.HEALTHY and not b.active


def test_zscore_alarm_validates():
    with pytest.raises(ValueError, match="watch_z < collapse_z"):
        ZScoreAlarm(("t",), watch_z=3, collapse_z=2)
    with pytest.raises(ValueError, match="one value per detector"):
        ZScoreAlarm(("t", "l"), watch_z=(3.0,))


def test_peak_rule_and_patience():
    rule = PeakRule(warmup=2)
    states = [rule.update(h) for h in [0.1, 0.1, 1.0, 0.59, 0.29, math.nan, 0.61]]
    assert [str(s)[0] for s in states] == list("HHHWCHH")
    assert rule.peak == 1.0
    with pytest.raises(ValueError, match="collapse_ratio < watch_ratio"):
        PeakRule(watch_ratio=0.3, collapse_ratio=0.3)
    p = Patience(3)
    seq = ["COLLAPSE", "COLLAPSE", "HEALTHY", "COLLAPSE", "COLLAPSE", "COLLAPSE"]
    assert [p.update(s) for s in seq] == [False, False, False, False, False, True]
    p2 = Patience(3)
    assert [p2.update(s) for s in ["COLLAPSE"] * 3] == [False, False, True]


def test_status_is_frozen_with_slots():
    st = LayerStatus(0, State.WATCH, "why", h0=1.0, culprits=("a",))
    assert st.alert and st.alarm and st.status == "WATCH" and not hasattr(st, "__dict__")
    with pytest.raises(AttributeError):
        st.state = State.HEALTHY


def test_status_alias_still_imports():
    import streamtopo
    from streamtopo.status import Status

    assert Status is LayerStatus and streamtopo.Status is LayerStatus
