"""The streak rule's jump (``jump=30``; off by default): once its baseline is full, a layer
moving by more than x30 against its baseline (and beyond ``layer_z``) raises WATCH at that
evaluation, not ``raise_after`` evaluations later; smaller moves keep the debounce."""

from __future__ import annotations

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import InputError, InputTypeError

NAMES = [f"fc{i}" for i in range(8)]


def stream(factor: float, at: int = 300, T: int = 330, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(size=8) + 0.05 * rng.normal(size=(T, 8)))
    x[at:, 3] *= factor
    return x


def first_alarm(x, jump=30.0, **kw):
    mon = LayerMonitor(8, layer_names=NAMES, keep_detector=False, jump=jump, **kw)
    got = [mon.check(v) for v in x]
    t = next(t for t, s in enumerate(got) if s.state.value != "HEALTHY")
    return t, got[t]


def test_a_x100_jump_fires_at_once_and_the_debounce_waits_without_it():
    t, s = first_alarm(stream(100.0))
    assert t == 300 and s.state.value == "WATCH" and s.culprits[0] == "fc3"
    assert s.reason.startswith("layer: fc3 z=+") and "(jump x" in s.reason and "> x30)" in s.reason
    t0, s0 = first_alarm(stream(100.0), jump=0)
    assert t0 == 300 + 7  # raise_after = 8 evaluations over the threshold
    assert "jump" not in s0.reason


def test_a_x5_move_keeps_the_debounce():
    t, s = first_alarm(stream(5.0))
    assert t == 307 and "jump" not in s.reason


def test_run_equals_check_with_a_jump():
    x = stream(100.0, T=360)
    live = LayerMonitor(8, layer_names=NAMES, keep_detector=False, jump=30)
    want = [live.check(v) for v in x]
    assert "(jump x" in want[300].reason
    got = LayerMonitor(8, layer_names=NAMES, keep_detector=False, jump=30).run(x)
    assert got["reason"].to_list() == [s.reason for s in want]
    assert got["state"].to_list() == [s.state.value for s in want]


def test_bad_jump_is_refused_and_defaults_follow_the_rule():
    with pytest.raises(InputError, match="jump must be 0"):
        LayerMonitor(8, jump=1.0)
    with pytest.raises(InputError, match="jump must be 0"):
        LayerMonitor(8, rule="cusum", jump=30.0)
    with pytest.raises(InputTypeError, match="jump must be a number"):
        LayerMonitor(8, jump="30")
    assert LayerMonitor(8).jump == 0.0 and LayerMonitor(8, jump=30).jump == 30.0


def test_a_state_saved_before_the_jump_existed_loads_without_it():
    old_mon = LayerMonitor(8, layer_names=NAMES, keep_detector=False, jump=0)
    for v in stream(1.0, T=20):
        old_mon.check(v)
    old = old_mon.state_dict()
    del old["config"]["jump"]
    LayerMonitor(8, layer_names=NAMES, keep_detector=False).load_state_dict(old)
    with pytest.raises(InputError, match=r"differs .* in \['jump'\]"):
        LayerMonitor(8, layer_names=NAMES, keep_detector=False, jump=30).load_state_dict(old)


@pytest.mark.parametrize("rule", ["streak", "cusum", "peak"])
def test_a_non_finite_collapse_names_the_layer(rule):
    x = stream(1.0, T=40)
    x[20, 1] = np.nan
    mon = LayerMonitor(8, layer_names=NAMES, rule=rule)
    got = [mon.check(v) for v in x]
    assert got[20].state.value == "COLLAPSE" and got[20].culprits == ("fc1",)
    assert LayerMonitor(8, layer_names=NAMES, rule=rule).run(x)["culprits"][20].to_list() == ["fc1"]
