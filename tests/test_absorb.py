"""The streak rule's held-shift absorption (``absorb_after``, default 30): a WATCH whose
values hold one level for 30 evaluations ends ("shift absorbed (held 30 evaluations)") and the
monitor re-calibrates; a growing shift, a COLLAPSE and a move of orders of magnitude are not
absorbed; a later failure raises a new alarm; live, run() and a restored state agree bit for
bit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import InputError
from streamtopo.monitors._held import HeldShift
from streamtopo.monitors._records import status_frame

from .test_fused_replay import same

NAMES = [f"b{i}" for i in range(6)]


def stream(T: int = 900, seed: int = 0, shift: float = -0.5, at: int = 300, drift: float = 0.0):
    """Six layers near 2.5 (as attention entropies); from ``at`` layer 2 moves by ``shift``,
    then keeps moving by ``drift`` log units per step (0: it holds)."""
    rng = np.random.default_rng(seed)
    x = 2.5 + 0.1 * rng.normal(size=(T, 6))
    t = np.arange(T)
    x[at:, 2] += shift
    x[at:, 2] *= np.exp(drift * (t[at:] - at))
    return x


def run_states(x, **kw):
    mon = LayerMonitor(6, layer_names=NAMES, keep_detector=False, escalate_after=10**6, **kw)
    return mon, [mon.check(v) for v in x]


def test_a_held_shift_is_absorbed_and_a_later_failure_raises_a_new_alarm():
    x = stream()
    x[700:, 4] *= 30.0  # a second, later failure of another layer
    _, got = run_states(x)
    states = [s.state.value for s in got]
    start = states.index("WATCH")
    end = states.index("HEALTHY", start)
    assert 300 <= start < 320 and 29 <= end - start <= 40  # the 30th evaluation
    r = got[end].reason
    # held from the first WATCH evaluation to this one, said in evaluations (not steps: a
    # TrainingMonitor's steps are not the monitor's)
    assert end - start + 1 == 30
    assert r.startswith("shift absorbed (held 30 evaluations); ok, calibrating")
    assert got[end].calibrating and got[end].state.value == "HEALTHY"
    # a later failure raises a new alarm
    second = next(t for t in range(end, len(x)) if states[t] != "HEALTHY")
    assert 700 <= second < 710 and "b4" in got[second].culprits
    _, old = run_states(x, absorb_after=0)
    assert all(s.state.value == "WATCH" for s in old[start:700])  # never ends without it


def test_a_growing_shift_is_not_absorbed():
    _, got = run_states(stream(shift=-0.3, drift=-0.01))  # 0.25 noise sd per step
    states = [s.state.value for s in got]
    start = states.index("WATCH")
    assert "HEALTHY" not in states[start:]  # the alarm holds to the end (it escalates)
    assert not any("absorbed" in s.reason for s in got)


def test_moves_of_orders_of_magnitude_and_collapse_are_not_absorbed():
    x = stream()
    x[300:, 2] *= 100.0  # x100, held
    _, got = run_states(x)
    states = [s.state.value for s in got]
    assert "WATCH" in states and not any("absorbed" in s.reason for s in got)
    assert states[-1] != "HEALTHY"
    # the default escalation turns a long WATCH into COLLAPSE, which is never absorbed
    mon = LayerMonitor(
        6, layer_names=NAMES, keep_detector=False, escalate_after=20, absorb_after=30
    )
    states = [mon.check(v).state.value for v in stream()]
    assert "COLLAPSE" in states and states[-1] == "COLLAPSE"


def test_run_and_a_restored_state_equal_live_checks():
    x = stream(seed=2)
    live = LayerMonitor(6, layer_names=NAMES, keep_detector=False, escalate_after=10**6)
    want = status_frame([live.check(v) for v in x])
    assert any(r.startswith("shift absorbed (held") for r in want["reason"].to_list())
    mon = LayerMonitor(6, layer_names=NAMES, keep_detector=False, escalate_after=10**6)
    same(mon.run(x), want)
    # restored in the middle of the alarm (the held buffer travels with the state)
    a = LayerMonitor(6, layer_names=NAMES, keep_detector=False, escalate_after=10**6)
    first = a.run(x[:320])
    assert first["state"][-1] == "WATCH"
    b = LayerMonitor(6, layer_names=NAMES, keep_detector=False, escalate_after=10**6)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    import polars as pl

    same(pl.concat([first, b.run(x[320:])]), want)


def test_a_state_saved_before_absorption_existed_loads():
    mon = LayerMonitor(6, layer_names=NAMES, absorb_after=0)
    x = stream(T=50)
    for v in x[:25]:
        mon.check(v)
    old = mon.state_dict()
    del old["state"]["_held"]
    del old["config"]["absorb_after"]
    LayerMonitor(6, layer_names=NAMES, absorb_after=0).load_state_dict(old)
    with pytest.raises(InputError, match=r"differs .* in \['absorb_after'\]"):
        LayerMonitor(6, layer_names=NAMES).load_state_dict(old)


def test_bad_absorb_after_is_refused():
    for bad, match in ((3, "absorb_after must be 0"), (-1, "absorb_after"), (2.5, "absorb_after")):
        with pytest.raises((InputError, TypeError), match=match):
            LayerMonitor(6, absorb_after=bad)
    with pytest.raises(InputError, match="absorb_after must be 0"):
        LayerMonitor(6, rule="cusum", absorb_after=30)
    assert LayerMonitor(6, rule="cusum").absorb_after == 0
    assert LayerMonitor(6).absorb_after == 30


def test_held_shift_matches_a_naive_two_half_test():
    rng = np.random.default_rng(9)
    for trial in range(200):
        A, n = int(rng.integers(4, 12)), int(rng.integers(1, 5))
        h = HeldShift(A, n, hold_z=4.0, min_std=1e-3)
        rows = rng.normal(size=(A + int(rng.integers(0, 8)), n))
        rows[:, 0] += rng.choice([0.0, 3.0]) * (np.arange(len(rows)) >= len(rows) - A // 2)
        for i, r in enumerate(rows):
            h.push(r, step=i)
        last = rows[-A:]
        a, c = last[: A // 2], last[A // 2 :]
        se = np.sqrt(a.var(axis=0, ddof=1) / len(a) + c.var(axis=0, ddof=1) / len(c))
        want = all(abs(c[:, j].mean() - a[:, j].mean()) <= 4.0 * max(se[j], 1e-3) for j in range(n))
        assert h.held() == want, trial
        assert np.allclose(h.level(), c.mean(axis=0))
