"""The change detector (``streamtopo.alarms.ChangeDetector``) against its pure-numpy reference,
and its behaviour on the cases it exists for: jumps, drifts, held shifts, noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import poisson

from streamtopo.alarms import ChangeDetector
from streamtopo.errors import InputError, InputTypeError
from streamtopo.io import replay
from streamtopo.monitors.layer import LayerMonitor

from .naive_changepoint import ChangeDetector as NaiveDetector
from .test_replay import bits, live_run
from .test_replay import stream as replay_stream

CODES = {0: "HEALTHY", 1: "WATCH", 2: "COLLAPSE"}


def random_stream(rng, T, N):
    """Gaussian noise with per-stream levels and scales, plus jumps, drifts, held shifts,
    spikes and a few NaN/inf values at random places."""
    x = rng.normal(size=(T, N)) * rng.uniform(0.01, 1.0, size=N) + rng.normal(size=N)
    for _ in range(rng.integers(1, 6)):
        j, t0 = rng.integers(N), rng.integers(T)
        kind = rng.integers(4)
        if kind == 0:  # held level shift
            x[t0:, j] += rng.choice([-1, 1]) * rng.uniform(0.5, 8.0)
        elif kind == 1:  # linear drift
            x[t0:, j] += rng.uniform(-0.2, 0.2) * np.arange(T - t0)
        elif kind == 2:  # short spike
            x[t0 : t0 + rng.integers(1, 5), j] += rng.uniform(-50, 50)
        else:  # non-finite
            x[t0, j] = rng.choice([np.nan, np.inf, -np.inf])
    return x


def lockstep(x, ours_kw=None, ref_kw=None, check_stat=True):
    N = x.shape[1]
    kw = dict(ours_kw or {})
    ours = ChangeDetector(N, **kw)
    ref = NaiveDetector(N, **(ref_kw if ref_kw is not None else kw))
    assert ours.h_watch_ == ref.h_watch and ours.h_collapse_ == ref.h_collapse
    seen = set()
    for t in range(len(x)):
        before = ref.absorbed_step
        state, stat, streams, direction = ours.update(x[t])
        rstate, rstat, rstreams, rdir = ref.update(x[t])
        assert state == CODES[rstate], t
        assert direction == rdir, t
        if check_stat:
            assert stat == pytest.approx(rstat, rel=1e-9, abs=1e-12), t
        assert sorted(streams) == sorted(rstreams), t
        if len(streams) > 1:  # both ordered by statistic, largest first
            key = [ours.stream_stat(j) for j in streams]
            assert np.isinf(stat) or key == sorted(key, reverse=True), t
        assert ours.calibrating == ref.calibrating, t
        assert ours.absorbed == (ref.absorbed_step != before), t
        if ours.absorbed:
            assert ours.absorbed_start == ref.absorbed_step
        seen.add(state)
        if ours.absorbed:
            seen.add("absorbed")
    return seen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.kernel
def test_lockstep_with_the_reference_on_random_streams(seed):
    rng = np.random.default_rng(seed)
    x = random_stream(rng, 400, int(rng.integers(1, 12)))
    lockstep(x)


@pytest.mark.kernel
def test_lockstep_covers_every_branch():
    """Streams built to reach every state, absorption, escalation and the non-finite path,
    under several parameter sets (Gaussian thresholds, autocorrelation, a z cap, short
    windows)."""
    rng = np.random.default_rng(42)
    T, N = 600, 5
    x = rng.normal(size=(T, N)) * 0.1
    x[100:, 0] += 3.0  # held shift: absorbed
    x[250:, 1] += 0.01 * np.arange(T - 250)  # drift: escalates
    x[400, 2] = np.nan
    x[450:455, 3] += 40.0  # spike
    kws = [
        {},
        {"tail": None, "k": 1.0, "fa_per_1k": 1.0},
        {"autocorr": True, "z_cap": 8.0, "mean_window": 5, "scale_window": 30},
        {"min_history": 3, "trusted_after": 10, "absorb_after": 6, "escalate_after": 20},
        {"pending": 0.2, "winsor": 2.0, "clear_below": 0.9, "hold_z": 1.0, "jump": 1.0},
        {"trusted_after": 500},  # every alarm starts while calibrating: the cap
        {"trusted_after": 500, "calibration_cap": False},
    ]
    seen = set()
    for kw in kws:
        seen |= lockstep(x, kw)
    assert seen == {"HEALTHY", "WATCH", "COLLAPSE", "absorbed"}


@pytest.mark.kernel
def test_state_dict_continues_bit_identically():
    torch = pytest.importorskip("torch")
    import io

    rng = np.random.default_rng(3)
    x = random_stream(rng, 300, 7)
    a = ChangeDetector(7)
    for t in range(150):
        a.update(x[t])
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = ChangeDetector(7)
    b.load_state_dict(torch.load(buf, weights_only=True))
    for t in range(150, 300):
        ra, rb = a.update(x[t]), b.update(x[t])
        assert ra[0] == rb[0] and ra[2:] == rb[2:]
        assert np.float64(ra[1]).view(np.int64) == np.float64(rb[1]).view(np.int64)
    assert np.array_equal(a._f.view(np.int64), b._f.view(np.int64))


@pytest.mark.kernel
def test_bad_state_and_input_leave_the_detector_unchanged():
    d = ChangeDetector(3)
    d.update([1.0, 2.0, 3.0])
    before = d.state_dict()
    bad = dict(before, f=[[0.0] * 2])
    with pytest.raises(InputError, match=r"state\['f'\] must have shape"):
        d.load_state_dict(bad)
    with pytest.raises(InputError, match="buffer position"):
        d.load_state_dict(dict(before, ist=[0, 0, -1, -1, 0, 99, -1, -1]))
    with pytest.raises(InputError, match="missing 'buf'"):
        d.load_state_dict({k: v for k, v in before.items() if k != "buf"})
    with pytest.raises(InputError, match=r"x must have shape \(3,\)"):
        d.update([1.0, 2.0])
    with pytest.raises(InputTypeError, match="x must be"):
        d.update("abc")
    after = d.state_dict()
    assert after.keys() == before.keys()
    for key in before:  # NaN marks skipped residuals: compare bit patterns
        assert np.array_equal(np.asarray(after[key]), np.asarray(before[key]), equal_nan=True)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"fa_per_1k": 0.0}, "fa_per_1k must be > 0"),
        ({"fa_per_1k": "1"}, "fa_per_1k must be a number"),
        ({"absorb_after": 3}, "absorb_after must be an integer >= 4"),
        ({"clear_below": 1.5}, "clear_below must be"),
        ({"autocorr": 1}, "autocorr must be True or False"),
        ({"tail": -1.0}, "tail must be > 0"),
    ],
)
@pytest.mark.kernel
def test_knobs_are_validated(kw, match):
    with pytest.raises((InputError, InputTypeError), match=match):
        ChangeDetector(4, **kw)


# -- behaviour -------------------------------------------------------------------------------------
def healthy(rng, T, N, scale=0.05):
    return rng.normal(size=N) + scale * rng.normal(size=(T, N))


@pytest.mark.parametrize("t_jump", [25, 60, 150])
@pytest.mark.kernel
def test_a_x100_jump_fires_within_two_evaluations(t_jump):
    rng = np.random.default_rng(t_jump)
    x = healthy(rng, t_jump + 5, 9)
    x[t_jump:, 4] += math.log(100.0)
    d = ChangeDetector(9)
    states = [d.update(v)[0] for v in x]
    assert all(s == "HEALTHY" for s in states[:t_jump])
    first = next(t for t in range(t_jump, len(x)) if states[t] != "HEALTHY")
    assert first <= t_jump + 1
    assert d.streams()[0] == 4 and d.direction == 1


@pytest.mark.parametrize("t_jump", [5, 12, 19])
@pytest.mark.kernel
def test_a_x100_jump_fires_in_the_first_twenty_evaluations(t_jump):
    """Before ``min_history`` (40) no CUSUM runs: once a stream has ``jump_after`` (5) values, the
    absolute check (a move of more than log 30 against its own first values) fires at once:
    WATCH with a finite statistic, between the two thresholds for a x100 move."""
    rng = np.random.default_rng(t_jump)
    x = healthy(rng, 25, 4)
    x[t_jump:, 2] -= math.log(100.0)
    d = ChangeDetector(4)
    states = [d.update(v)[0] for v in x[: t_jump + 1]]
    assert all(s == "HEALTHY" for s in states[:t_jump])
    assert states[t_jump] == "WATCH" and d.calibrating and d.jumped
    assert d.streams() == (2,) and d.direction == -1
    assert d.h_watch_ < d.stat < d.h_collapse_
    assert d.stream_move(2) == pytest.approx(-math.log(100.0), abs=0.2)


@pytest.mark.parametrize("t_jump", [1, 2, 3, 4])
@pytest.mark.kernel
def test_the_first_steps_can_move_by_orders_of_magnitude(t_jump):
    """The first optimizer steps of a healthy run can move a layer x300 from its value at
    initialisation; before a stream has ``jump_after`` values that is not an alarm."""
    rng = np.random.default_rng(t_jump)
    x = healthy(rng, 30, 6)
    x[t_jump:, 5] += math.log(300.0)
    d = ChangeDetector(6)
    assert all(d.update(v)[0] == "HEALTHY" for v in x)


@pytest.mark.kernel
def test_a_x1000_jump_reaches_the_collapse_threshold_and_a_x30_one_watch():
    """The jump check's statistic is h_watch at a move of ``jump`` (x30) and h_collapse at
    twice that (x900): a x1000 move is COLLAPSE by the threshold, not by an infinite value."""
    rng = np.random.default_rng(3)
    for factor, state in ((1000.0, "COLLAPSE"), (40.0, "WATCH")):
        x = healthy(rng, 12, 3)
        x[10:, 1] += math.log(factor)
        d = ChangeDetector(3, min_history=50)  # the CUSUM is not live yet
        states = [d.update(v)[0] for v in x]
        assert states[:10] == ["HEALTHY"] * 10 and states[10] == state
        assert d.jumped and math.isfinite(d.stat)
        lo, hi = d.h_watch_, d.h_collapse_
        assert d.stat == pytest.approx(lo + (hi - lo) * (abs(d.stream_move(1)) / d.jump - 1.0))


@pytest.mark.kernel
def test_while_calibrating_the_cusum_alone_raises_watch_not_collapse():
    """A shift of 40 noise sd after the CUSUM is live (evaluation 60) but before the baseline
    is trusted (100): its CUSUM passes h_collapse within a few evaluations, which is WATCH
    while calibrating (and no escalation by age); without the cap it is COLLAPSE. A x1000 jump
    and a non-finite value are COLLAPSE while calibrating all the same."""
    rng = np.random.default_rng(5)
    x = healthy(rng, 130, 4)
    x[60:, 2] += 2.0  # 40 sd: grows the CUSUM by ~8 per evaluation, not a x30 jump
    capped, free = ChangeDetector(4), ChangeDetector(4, calibration_cap=False)
    s_cap, stat_cap = zip(*[capped.update(v)[:2] for v in x], strict=True)
    s_free = [free.update(v)[0] for v in x]
    assert s_cap[:60] == ("HEALTHY",) * 60 and s_free[:60] == ["HEALTHY"] * 60
    assert s_free[62:64] == ["WATCH", "COLLAPSE"] and "COLLAPSE" not in s_cap
    assert s_cap[62:64] == ("WATCH", "WATCH") and stat_cap[63] > capped.h_collapse_
    assert any(s == "HEALTHY" for s in s_cap[60:])  # the held shift is absorbed, not escalated
    for bad, factor in ((False, 1000.0), (True, 1.0)):
        d = ChangeDetector(4)
        y = healthy(rng, 50, 4)
        y[45:, 1] += math.log(factor)
        if bad:
            y[45, 1] = np.nan
        states = [d.update(v)[0] for v in y]
        assert d.calibrating and states[44] == "HEALTHY" and states[45] == "COLLAPSE"


@pytest.mark.kernel
def test_a_pure_linear_drift_fires():
    """A rolling z-score of a linear trend converges to about sqrt(3) and never fires; the
    CUSUM accumulates the drift's steady positive residuals."""
    rng = np.random.default_rng(7)
    T, t0 = 600, 300
    x = healthy(rng, T, 6)
    x[t0:, 1] += 0.02 * np.arange(T - t0)  # 0.4 noise-sd per evaluation
    d = ChangeDetector(6)
    states = [d.update(v)[0] for v in x]
    assert all(s == "HEALTHY" for s in states[:t0])
    fired = [t for t in range(t0, T) if states[t] != "HEALTHY"]
    assert fired and fired[0] < t0 + 100
    assert d.streams()[:1] == (1,) or states[-1] != "HEALTHY"


@pytest.mark.kernel
def test_a_held_shift_is_absorbed_and_a_later_failure_still_fires():
    rng = np.random.default_rng(11)
    T = 500
    x = healthy(rng, T, 5)
    x[200:, 3] += 1.0  # a legitimate level shift (20 noise sd) that then holds
    x[400:, 0] += math.log(100.0)  # a real failure later
    d = ChangeDetector(5)
    states, absorbed_at, named = [], [], {}
    for t, v in enumerate(x):
        states.append(d.update(v, label=10 * t)[0])
        named[t] = d.streams()
        if d.absorbed:
            absorbed_at.append((t, d.absorbed_start))
    first = next(t for t in range(200, T) if states[t] != "HEALTHY")
    assert all(s == "HEALTHY" for s in states[:200]) and first <= 205  # fires on the shift
    assert len(absorbed_at) >= 1
    t_abs, start = absorbed_at[0]
    assert t_abs == first + 29 and start == 10 * first  # the label of the alarm's first step
    assert all(s == "HEALTHY" for s in states[t_abs:400])  # the alarm ended, nothing stale
    assert states[400] != "HEALTHY" and named[400] == (0,)


@pytest.mark.parametrize("fa_per_1k", [1.0, 5.0])
@pytest.mark.kernel
def test_false_alarm_rate_on_gaussian_noise_is_within_the_knob(fa_per_1k):
    """Alarm episodes on i.i.d. Gaussian streams after calibration: the union-bound thresholds
    are conservative, so the count must not exceed a Poisson 99.9% upper quantile of the rate
    the knob promises."""
    rng = np.random.default_rng(int(fa_per_1k * 10))
    T, N, runs = 3000, 8, 4
    episodes, evals = 0, 0
    for _ in range(runs):
        x = healthy(rng, T, N, scale=0.1)
        d = ChangeDetector(N, fa_per_1k=fa_per_1k)
        prev = "HEALTHY"
        for t in range(T):
            s = d.update(x[t])[0]
            if t >= 100:
                episodes += prev == "HEALTHY" and s != "HEALTHY"
                evals += 1
            prev = s
    expected = fa_per_1k * evals / 1000.0
    assert episodes <= poisson.ppf(0.999, expected), (episodes, expected)


# -- LayerMonitor(rule="cusum") -------------------------------------------------------------------
def layer_values(rng, T, S, L, scale=0.05):
    levels = rng.normal(size=(S, L))
    return np.exp(levels + scale * rng.normal(size=(T, S, L))).astype(np.float32)


def median_relative(v):
    """(T, S*L): log value (zeros floored at 1e-8 x the step's largest) minus the step's median
    over layers, computed independently of the library (as the detect branch's evaluation)."""
    v = v.astype(np.float64)
    top = v.max(axis=2, keepdims=True)
    y = np.log(np.maximum(v, 1e-8 * top))
    return (y - np.median(y, axis=2, keepdims=True)).reshape(len(v), -1)


def test_cusum_monitor_matches_the_reference_fed_the_same_streams():
    rng = np.random.default_rng(5)
    T, S, L = 400, 2, 6
    v = layer_values(rng, T, S, L)
    v[150:, :, 2] *= 3.0  # a held shift (absorbed)
    v[300:, 1, 4] *= np.exp(0.05 * np.arange(T - 300))[:, None].T[0]  # a drift
    signals = ("a", "b")
    mon = LayerMonitor(L, signals, rule="cusum")
    statuses = [mon.check(v[t]) for t in range(T)]
    logh0 = np.log([s.h0 for s in statuses])
    x = np.column_stack([logh0, median_relative(v)])
    ref = NaiveDetector(x.shape[1])
    seen = set()
    for t in range(T):
        rstate, rstat, _, rdir = ref.update(x[t])
        s = statuses[t]
        assert str(s.state) == CODES[rstate], t
        assert s.calibrating == ref.calibrating, t
        assert s.stat == pytest.approx(rstat, rel=1e-9, abs=1e-9), t
        if rstate:
            assert s.direction == ("rising" if rdir > 0 else "falling"), t
        seen.add(str(s.state))
        seen.add("absorbed" if "absorbed" in s.reason else "")
    assert {"HEALTHY", "WATCH", "COLLAPSE", "absorbed"} <= seen


@pytest.mark.parametrize("t_jump", [5, 8, 19, 30, 120])
def test_cusum_monitor_fires_on_a_x100_layer_within_two_evaluations(t_jump):
    """From the 6th evaluation (the absolute check, before the CUSUM is live at 40) and
    after, a layer moving x100 fires within two evaluations and is named. The check sees the
    median-relative value: one layer of 8 moving x100 also moves the median, so its
    median-relative move is about x46, over the check's x30."""
    rng = np.random.default_rng(t_jump)
    v = layer_values(rng, t_jump + 3, 1, 8)
    v[t_jump:, 0, 5] *= 100.0
    names = [f"fc{i}" for i in range(8)]
    mon = LayerMonitor(8, rule="cusum", layer_names=names)
    statuses = [mon.check(v[t, 0]) for t in range(len(v))]
    assert all(s.state == "HEALTHY" for s in statuses[:t_jump])
    assert all(s.calibrating for s in statuses[: min(t_jump, 90)])
    first = next(s for s in statuses[t_jump:] if s.state != "HEALTHY")
    assert first.step <= t_jump + 1
    assert first.culprits[0] == "fc5" and first.direction == "rising"
    assert first.reason.startswith("cusum: ") and "fc5 [grad_norm]" in first.reason
    # how long the alarm has run, in evaluations (a TrainingMonitor's steps are not the
    # monitor's, so no step number)
    k = first.step
    assert first.reason.endswith("(for 1 evaluation)")
    if statuses[k + 1].state != "HEALTHY":
        assert statuses[k + 1].reason.endswith("(for 2 evaluations)")
    longest = max(
        (s for s in statuses if s.state != "HEALTHY"), key=lambda s: s.step
    )  # the last alarm row, counted from its episode's first
    start = longest.step
    while statuses[start - 1].state != "HEALTHY":
        start -= 1
    assert longest.reason.endswith(f"(for {longest.step - start + 1} evaluations)") or (
        longest.step == start and longest.reason.endswith("(for 1 evaluation)")
    )


def test_cusum_monitor_absorbs_a_held_shift_and_says_so():
    rng = np.random.default_rng(9)
    T = 420
    v = layer_values(rng, T, 1, 6)
    v[200:, 0, 1] *= 2.0  # a legitimate shift of one layer (log 2 = 14 noise sd)
    v[380:, 0, 4] *= 50.0  # a real failure later
    mon = LayerMonitor(6, rule="cusum", check_every=2)
    statuses = [mon.check(v[t, 0]) for t in range(T)]
    fired = next(s for s in statuses[200:] if s.state != "HEALTHY")
    absorbed = [s for s in statuses if "absorbed" in s.reason]
    assert len(absorbed) == 1 and absorbed[0].state == "HEALTHY"
    # held from the first alarm to the absorbing evaluation (check_every=2: steps / 2)
    held = (absorbed[0].step - fired.step) // 2 + 1
    assert absorbed[0].reason.endswith(f"shift absorbed (held {held} evaluations)")
    assert all(s.state == "HEALTHY" for s in statuses[absorbed[0].step : 380])
    late = next(s for s in statuses[380:] if s.state != "HEALTHY")
    assert late.step <= 382 and late.culprits[0] == "4"


def test_cusum_monitor_min_history_delays_the_cusum_not_the_jump_check():
    """``min_history`` (TrainingMonitor's attention monitor: 100) is when a stream's CUSUM
    runs; a x2 shift (14 noise sd) at evaluation 60 fires with the default 40, not with 100, and
    a x100 jump fires with either."""
    rng = np.random.default_rng(2)
    v = layer_values(rng, 90, 1, 6)
    v[60:, 0, 3] *= 2.0
    early = LayerMonitor(6, rule="cusum")
    late = LayerMonitor(6, rule="cusum", min_history=100)
    assert early.config["min_history"] == 40 and late.config["min_history"] == 100
    assert any(early.check(v[t, 0]).state != "HEALTHY" for t in range(90))
    assert all(late.check(v[t, 0]).state == "HEALTHY" for t in range(90))
    jump = v.copy()
    jump[70:, 0, 1] *= 100.0
    mon = LayerMonitor(6, rule="cusum", min_history=100)
    states = [mon.check(jump[t, 0]).state for t in range(72)]
    assert states[69:71] == ["HEALTHY", "WATCH"]
    with pytest.raises(InputError, match="min_history"):
        LayerMonitor(6, rule="cusum", min_history=0)


def test_a_state_saved_before_a_parameter_existed_loads_when_it_is_at_its_default():
    rng = np.random.default_rng(3)
    v = layer_values(rng, 60, 1, 5)
    a = LayerMonitor(5, rule="cusum")
    for t in range(30):
        a.check(v[t, 0])
    old = a.state_dict()
    del old["config"]["min_history"]  # as written before min_history was a parameter
    b = LayerMonitor(5, rule="cusum")
    b.load_state_dict(old)
    assert all(a.check(v[t, 0]) == b.check(v[t, 0]) for t in range(30, 60))
    with pytest.raises(InputError, match=r"differs .* in \['min_history'\]"):
        LayerMonitor(5, rule="cusum", min_history=100).load_state_dict(old)


def test_a_run_recorded_without_a_rule_replays_under_streak(tmp_path):
    """A layer config without a ``rule`` key (written before rules were named) was recorded
    under the streak rule and replays under it, bit-identically, whatever the default is."""
    import json

    from streamtopo import RunWriter, replay

    rng = np.random.default_rng(6)
    v = layer_values(rng, 40, 1, 5, scale=0.3)
    with RunWriter(tmp_path, run_id="old") as w:
        mon = LayerMonitor(5, rule="streak", early_rule="none", baseline=20, writer=w)
        live = [mon.check(v[t, 0]) for t in range(40)]
    meta_path = w.run_dir / "_meta.json"
    meta = json.loads(meta_path.read_text())
    for cfg in (meta["tables"]["layer"]["config"], meta.get("monitor_config", {})):
        cfg.pop("rule", None)
        cfg.pop("early_rule", None)  # nor an early rule (added later still)
    meta_path.write_text(json.dumps(meta))
    out = replay(w.run_dir)
    assert out["state"].to_list() == [s.state.value for s in live]
    assert out["reason"].to_list() == [s.reason for s in live]
    assert out["reason"][0].startswith("warmup (")  # the streak rule's words
    assert replay(w.run_dir, rule="cusum")["reason"][0].startswith("ok, calibrating")


def test_zscore_is_the_old_name_of_streak():
    rng = np.random.default_rng(1)
    v = layer_values(rng, 260, 1, 5, scale=0.3)
    a = LayerMonitor(5, rule="zscore", baseline=50)
    b = LayerMonitor(5, rule="streak", baseline=50)
    assert a.config == b.config and a.config["rule"] == "streak"
    for t in range(len(v)):
        sa, sb = a.check(v[t, 0]), b.check(v[t, 0])
        assert sa == sb or (math.isnan(sa.z) and sa.reason == sb.reason)
    with pytest.raises(InputError, match="rule"):
        LayerMonitor(5, rule="cusm")


def test_cusum_monitor_state_dict_continues_bit_identically_through_torch():
    torch = pytest.importorskip("torch")
    import io

    rng = np.random.default_rng(4)
    v = layer_values(rng, 300, 3, 7)
    v[200:, 2, 3] *= 1.5
    signals = ("a", "b", "c")
    a = LayerMonitor(7, signals, rule="cusum")
    for t in range(150):
        a.check(v[t])
    blob = io.BytesIO()
    torch.save(a.state_dict(), blob)
    blob.seek(0)
    b = LayerMonitor(7, signals, rule="cusum")
    b.load_state_dict(torch.load(blob, weights_only=True))
    for t in range(150, 300):
        sa, sb = a.check(v[t]), b.check(v[t])
        assert (sa.state, sa.reason, sa.culprits, sa.calibrating) == (
            sb.state, sb.reason, sb.culprits, sb.calibrating,
        )  # fmt: skip
        assert np.array_equal(bits([sa.h0, sa.stat]), bits([sb.h0, sb.stat]))


def test_cusum_replay_is_bit_identical_to_the_live_run(tmp_path):
    values = replay_stream(400)
    run_dir, live = live_run(tmp_path, values, rule="cusum")
    assert {"HEALTHY", "COLLAPSE"} <= {str(s.state) for s in live}
    out = replay(run_dir)
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
    assert np.array_equal(bits(out["stat"]), bits([s.stat for s in live]))
    assert out["state"].to_list() == [str(s.state) for s in live]
    assert out["reason"].to_list() == [s.reason for s in live]
    assert out["calibrating"].to_list() == [s.calibrating for s in live]
