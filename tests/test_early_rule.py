"""The streak rule's early change detector (``early_rule="cusum"``, the default): while the
streak rule's ``log h0`` baseline fills, the change detector decides; values seen during its
alarms stay out of the streak baselines; WATCH at most unless a value is non-finite; once the
baseline is full the streak rule takes over; runs recorded before it replay without it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamtopo import LayerMonitor, RunWriter, replay
from streamtopo.errors import InputError

NAMES = [f"fc{i}" for i in range(8)]


def values(T: int, seed: int = 0, jump_at: int | None = None, factor: float = 100.0):
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(size=8) + 0.05 * rng.normal(size=(T, 8)))
    if jump_at is not None:
        x[jump_at:, 3] *= factor
    return x


def states(mon: LayerMonitor, x: np.ndarray) -> list:
    return [mon.check(v) for v in x]


def test_a_jump_in_the_warm_up_is_seen_at_once_and_the_old_rule_is_blind():
    x = values(150, jump_at=60)
    early = states(LayerMonitor(8, layer_names=NAMES), x)
    blind = states(LayerMonitor(8, layer_names=NAMES, early_rule="none"), x)
    assert [s.state.value for s in early[58:61]] == ["HEALTHY", "HEALTHY", "WATCH"]
    s = early[60]
    assert s.calibrating and s.culprits[0] == "fc3" and s.direction == "rising"
    assert s.reason.startswith("cusum: fc3 [grad_norm] rising, jump x")
    assert all(b.state.value == "HEALTHY" for b in blind)  # the streak rule alone: warm-up
    assert blind[60].reason == "warmup (60/200 baseline values)"
    assert early[10].reason == "ok, calibrating (10/200 baseline values, change detector on)"


def test_alarm_values_stay_out_of_the_streak_baseline():
    mon = LayerMonitor(8, layer_names=NAMES)
    for v in values(80, jump_at=60):
        st = mon.check(v)
    assert st.state.value == "WATCH"
    # 60 accepted values before the jump, none during the alarm
    assert mon._h0_base.count == 60 and mon._bn == 60


def test_early_alarms_are_watch_unless_a_value_is_non_finite():
    x = values(80, jump_at=60, factor=1e6)  # x1e6: over the x900 COLLAPSE jump
    got = states(LayerMonitor(8, layer_names=NAMES), x)
    assert {s.state.value for s in got[60:]} == {"WATCH"}
    assert "WATCH while calibrating (60/200 baseline values)" in got[60].reason
    y = values(30)
    y[20, 2] = np.nan
    st = states(LayerMonitor(8, layer_names=NAMES), y)[20]
    assert st.state.value == "COLLAPSE" and st.nonfinite == (2,)


def test_the_streak_rule_takes_over_once_the_baseline_is_full():
    mon = LayerMonitor(8, layer_names=NAMES, baseline=50, keep_detector=False)
    got = states(mon, values(120, seed=2))
    assert got[49].calibrating and not got[50].calibrating
    assert got[50].reason == "ok" and np.isnan(got[50].stat)
    assert all(s.state.value == "HEALTHY" for s in got)
    # a jump after the warm-up goes to the streak rule (z-scores), not the change detector
    mon2 = LayerMonitor(8, layer_names=NAMES, baseline=50, keep_detector=False)
    late = states(mon2, values(120, seed=2, jump_at=100))
    alarms = [s for s in late if s.state.value != "HEALTHY"]
    assert alarms and all(not s.reason.startswith("cusum") for s in alarms)
    assert alarms[0].step == 107  # raise_after=8 consecutive evaluations from step 100


def test_state_round_trip_in_the_warm_up_continues_bit_identically():
    x = values(160, seed=4, jump_at=90)
    live = LayerMonitor(8, layer_names=NAMES)
    want = [s.reason for s in states(live, x)]
    a = LayerMonitor(8, layer_names=NAMES)
    first = [s.reason for s in states(a, x[:70])]
    b = LayerMonitor(8, layer_names=NAMES)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert first + [s.reason for s in states(b, x[70:])] == want


def test_a_state_saved_before_the_early_rule_needs_early_rule_none():
    old_mon = LayerMonitor(8, layer_names=NAMES, early_rule="none")
    states(old_mon, values(20))
    old = old_mon.state_dict()
    del old["config"]["early_rule"]  # as written before the parameters existed
    del old["config"]["keep_detector"]
    old["config"]["min_history"] = 40  # its old default
    with pytest.raises(
        InputError,
        match=r"differs .* in \['early_rule', 'keep_detector', 'min_history', 'raise_after'\]",
    ):
        LayerMonitor(8, layer_names=NAMES).load_state_dict(old)
    LayerMonitor(8, layer_names=NAMES, early_rule="none", min_history=40).load_state_dict(old)
    # a rule="cusum" state from then loads as it is (early_rule "none", min_history 40)
    c = LayerMonitor(8, layer_names=NAMES, rule="cusum")
    states(c, values(20))
    saved = c.state_dict()
    for key in ("early_rule", "min_history"):
        del saved["config"][key]
    LayerMonitor(8, layer_names=NAMES, rule="cusum").load_state_dict(saved)


def test_bad_early_rule_is_refused():
    with pytest.raises(InputError, match="early_rule must be one of"):
        LayerMonitor(8, early_rule="loud")
    with pytest.raises(InputError, match=r"early_rule='cusum' needs rule='streak'"):
        LayerMonitor(8, rule="cusum", early_rule="cusum")
    assert LayerMonitor(8, rule="peak").early_rule == "none"
    assert LayerMonitor(8, rule="cusum").min_history == 40
    assert LayerMonitor(8).min_history == 100


def test_a_recorded_run_replays_with_its_early_rule_and_an_old_one_without(tmp_path):
    x = values(120, seed=5, jump_at=60)
    with RunWriter(tmp_path, run_id="new") as w:
        mon = LayerMonitor(8, layer_names=NAMES, writer=w)
        live = states(mon, x)
    out = replay(w.run_dir)
    assert out["reason"].to_list() == [s.reason for s in live]
    assert out["state"][60] == "WATCH"
    # an override of the rule derives the early rule anew (cusum has none)
    assert replay(w.run_dir, rule="cusum")["state"][60] == "WATCH"
    # a run written before the parameter existed ran without it
    meta_path = w.run_dir / "_meta.json"
    meta = json.loads(meta_path.read_text())
    for cfg in (meta["tables"]["layer"]["config"], meta.get("monitor_config", {})):
        cfg.pop("early_rule", None)
        cfg.pop("keep_detector", None)
    meta_path.write_text(json.dumps(meta))
    assert set(replay(w.run_dir)["state"].to_list()) == {"HEALTHY"}
