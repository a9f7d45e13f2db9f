"""The default LayerMonitor keeps its change detector after the streak rule's warm-up
(``keep_detector=True``): the state is the more severe of the detector's (each layer's
median-relative value, no ``log h0`` stream) and the streak rule's (debounce ``window + 4``);
after the warm-up a detector COLLAPSE needs a move beyond x30; runs recorded before it replay
without it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamtopo import LayerMonitor, RunWriter, State, replay
from streamtopo.errors import InputError, InputTypeError

NAMES = [f"fc{i}" for i in range(8)]


def stream(T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(size=8) + 0.05 * rng.normal(size=(T, 8)))


def test_settings_resolve_and_bad_ones_are_refused():
    m = LayerMonitor(8)
    assert m.keep_detector and m.raise_after == 20  # window 16 + 4
    assert LayerMonitor(8, window=32).raise_after == 36
    assert LayerMonitor(8, keep_detector=False).raise_after == 8
    assert LayerMonitor(8, raise_after=5).raise_after == 5
    assert not LayerMonitor(8, early_rule="none").keep_detector
    assert not LayerMonitor(8, rule="cusum").keep_detector
    assert m.config["keep_detector"] is True and m.config["raise_after"] == 20
    with pytest.raises(InputTypeError, match="keep_detector must be True, False or None"):
        LayerMonitor(8, keep_detector="yes")
    with pytest.raises(InputError, match=r"keep_detector=True .* needs early_rule=.cusum."):
        LayerMonitor(8, early_rule="none", keep_detector=True)


def test_an_abrupt_jump_after_the_warmup_is_seen_at_once_the_streak_rule_alone_waits():
    x = stream(400)
    x[300:, 5] *= 8.0  # x8: under the jump check's x30, over the CUSUM's evidence at once
    mon = LayerMonitor(8, layer_names=NAMES)
    kept = [mon.check(v) for v in x]
    alone = LayerMonitor(8, layer_names=NAMES, keep_detector=False).run(x)
    first = next(s for s in kept if s.state is not State.HEALTHY)
    late = next(i for i, s in enumerate(alone["state"].to_list()) if s != "HEALTHY")
    assert 300 <= first.step <= 302 < late
    assert first.reason.startswith("cusum: fc5 [grad_norm] rising") and first.culprits == ("fc5",)
    assert first.direction == "rising" and first.stat == first.stat and not first.calibrating
    # the detector's alarm stays WATCH (its CUSUM is over its COLLAPSE threshold at once);
    # COLLAPSE comes from the streak rule (topology |z| > 6 for 8 evaluations, its old timing)
    collapse = next(s for s in kept if s.state is State.COLLAPSE)
    assert all(s.state is State.WATCH for s in kept[first.step : collapse.step])
    assert 305 <= collapse.step <= 310 and collapse.reason.startswith("topology")
    old = LayerMonitor(8, layer_names=NAMES, keep_detector=False).run(x)["state"].to_list()
    assert old.index("COLLAPSE") == collapse.step  # the same step as the streak rule alone
    assert "; cusum: fc5 [grad_norm] rising" in collapse.reason


def test_a_held_x100_move_collapses_and_a_one_step_spike_is_one_short_watch():
    x = stream(400)
    x[300:, 2] *= 100.0
    mon = LayerMonitor(8, layer_names=NAMES)
    got = [mon.check(v) for v in x]
    assert got[300].state is State.WATCH and "jump x" in got[300].reason
    assert any(s.state is State.COLLAPSE for s in got[300:310]) and mon.should_stop
    y = stream(400, seed=1)
    y[300, 2] *= 100.0  # one step only
    mon = LayerMonitor(8, layer_names=NAMES)
    got = [mon.check(v) for v in y]
    alarmed = [s for s in got if s.state is not State.HEALTHY]
    assert alarmed and alarmed[0].step == 300 and alarmed[0].culprits == ("fc2",)
    assert all(s.state is State.WATCH for s in alarmed) and alarmed[-1].step < 310
    assert not mon.should_stop


def test_values_during_a_detector_alarm_stay_out_of_the_streak_baselines():
    x = stream(330)
    x[300:310, 4] *= 8.0
    mon = LayerMonitor(8, layer_names=NAMES)
    for v in x[:300]:
        mon.check(v)
    n = mon._bpushes  # per-layer values accepted
    got = [mon.check(v) for v in x[300:310]]
    assert all(s.state is not State.HEALTHY for s in got[2:])
    mon.state_dict()  # settles the pending push
    assert mon._bpushes == n  # none of the shifted values entered the per-layer baseline


def test_run_equals_check_and_state_round_trips():
    x = stream(420, seed=3)
    x[250:, 1] *= 5.0
    x[350, 6] = np.nan
    live = LayerMonitor(8, layer_names=NAMES)
    want = [live.check(v) for v in x]
    got = LayerMonitor(8, layer_names=NAMES).run(x)
    assert got["state"].to_list() == [str(s.state) for s in want]
    assert got["reason"].to_list() == [s.reason for s in want]
    a = LayerMonitor(8, layer_names=NAMES)
    first = [a.check(v) for v in x[:280]]
    b = LayerMonitor(8, layer_names=NAMES)
    b.load_state_dict(a.state_dict())
    assert [s.reason for s in first + [b.check(v) for v in x[280:]]] == [s.reason for s in want]


def test_a_run_recorded_before_the_kept_detector_replays_without_it(tmp_path):
    x = stream(400, seed=4)
    x[300:, 5] *= 8.0
    with RunWriter(tmp_path, run_id="old") as w:
        mon = LayerMonitor(8, layer_names=NAMES, keep_detector=False, writer=w)
        live = [mon.check(v) for v in x]
    meta_path = w.run_dir / "_meta.json"
    meta = json.loads(meta_path.read_text())
    for cfg in (meta["tables"]["layer"]["config"], meta.get("monitor_config", {})):
        cfg.pop("keep_detector", None)  # as written before the parameter existed
    meta_path.write_text(json.dumps(meta))
    out = replay(w.run_dir)
    assert out["reason"].to_list() == [s.reason for s in live]
    # a state saved then loads into a monitor built with the old settings
    state = mon.state_dict()
    del state["config"]["keep_detector"]
    LayerMonitor(8, layer_names=NAMES, keep_detector=False).load_state_dict(state)
    with pytest.raises(InputError, match=r"differs .* in \['keep_detector', 'raise_after'\]"):
        LayerMonitor(8, layer_names=NAMES).load_state_dict(state)


def test_dead_layers_are_not_forgotten_when_the_detector_restarts():
    """A held move beyond x30 (a layer's signal x1e-4): the detector WATCH at once, the
    topology rule's COLLAPSE 7-8 evaluations later; when the detector absorbs its own held
    shift the streak rule keeps its memory, so the COLLAPSE (and should_stop) remain."""
    x = stream(500)
    x[300:, 2] *= 1e-4
    mon = LayerMonitor(8, layer_names=NAMES)
    got = [mon.check(v) for v in x]
    assert got[300].state is State.WATCH and "jump x" in got[300].reason
    first_collapse = next(s.step for s in got if s.state is State.COLLAPSE)
    assert 305 <= first_collapse <= 310
    restarted = [s for s in got if "change detector: shift absorbed (held " in s.reason]
    # held from step 300 (the jump) to the evaluation that absorbed it
    assert restarted[0].reason.endswith(f"(held {restarted[0].step - 300 + 1} evaluations)")
    assert restarted and all(s.state is State.COLLAPSE for s in got[first_collapse:])
    assert mon.should_stop


def test_a_small_held_shift_is_one_episode_that_is_absorbed():
    """One layer x1.15 and held (under the detector's evidence threshold): one WATCH episode,
    the streak rule's, absorbed after 30 evaluations with the baselines restarted. (A held
    shift that the detector itself absorbs: ``test_training_wire``'s attention drift.)"""
    x = stream(520)
    x[300:, 6] *= 1.15
    mon = LayerMonitor(8, layer_names=NAMES)
    got = [mon.check(v) for v in x]
    states = [s.state for s in got]
    starts = [
        t for t in range(1, len(x)) if states[t] is not State.HEALTHY and not states[t - 1].severity
    ]
    assert len(starts) == 1 and 300 <= starts[0] <= 325
    assert State.COLLAPSE not in states and states[-1] is State.HEALTHY
    done = [s for s in got if s.reason.startswith("shift absorbed (held ")]
    assert len(done) == 1
    assert done[0].reason.startswith(f"shift absorbed (held {done[0].step - starts[0] + 1} ")
    assert mon.last_status_.calibrating  # the baselines restarted at the absorption
