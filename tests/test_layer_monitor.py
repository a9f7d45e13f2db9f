"""LayerMonitor against its naive twin, the DESIGN.md behaviours, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from streamtopo import LayerMonitor, State
from streamtopo.monitors.layer import status_frame

from .naive_monitor import NaiveLayerMonitor

pytestmark = pytest.mark.kernel

SMALL = {"baseline": 20, "raise_after": 3, "escalate_after": 15, "clear_after": 3, "layer_z": 3.0}


def lognormal_stream(rng, steps, n_layers, n_signals=1, sigma=0.05, levels=None):
    """Layers at fixed log-levels with i.i.d. multiplicative noise, shape (T, S, L)."""
    if levels is None:
        levels = rng.normal(0.0, 1.0, size=(n_signals, n_layers))
    noise = rng.normal(0.0, sigma, size=(steps, n_signals, n_layers))
    return np.exp(levels[None] + noise)


def with_events(rng, x):
    """Inject divergences (one layer x e^k), convergence (all layers to one value), zeros."""
    x = x.copy()
    T, _, L = x.shape
    for _ in range(3):
        t0 = int(rng.integers(T // 4, T - 10))
        i = int(rng.integers(L))
        x[t0 : t0 + int(rng.integers(3, 30)), :, i] *= math.exp(rng.normal(0, 3))
    t0 = int(rng.integers(T // 2, T - 5))
    x[t0 : t0 + 8] = x[t0 : t0 + 8].mean(axis=2, keepdims=True)
    x[int(rng.integers(T)), 0, int(rng.integers(L))] = 0.0
    return x


def same(a, b):
    return (a == b) or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def status_key(st):
    return repr((st.step, st.h0, st.z, st.ratio, st.peak, str(st.state), st.direction,
                 st.culprits, st.reason, st.nonfinite, st.layer_z, st.evaluated))  # fmt: skip


# -- lockstep with the naive twin -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("seed", "L", "S", "W", "transform", "rule"),
    [
        (0, 8, 1, 4, "log", "zscore"),
        (1, 12, 2, 3, "log", "zscore"),
        (2, 6, 3, 1, "log", "zscore"),
        (3, 9, 1, 1, "none", "peak"),
        (4, 7, 2, 5, "none", "zscore"),
        (5, 10, 1, 6, "log", "peak"),
    ],
)
def test_lockstep_with_naive_twin(seed, L, S, W, transform, rule):
    rng = np.random.default_rng(seed)
    x = with_events(rng, lognormal_stream(rng, 260, L, S, sigma=0.1))
    if transform == "none":
        x = np.log(x + 1e-3) * 3.0  # signed values
    nan_step = 150
    x[nan_step, 0, 1] = np.nan
    x[nan_step + 40, S - 1, 2] = np.inf
    kw = {**SMALL, "window": W, "transform": transform, "rule": rule, "warmup": 5}
    jump = 30.0 if rule == "zscore" else 0.0  # the streak rule's jump (off by default)
    mon = LayerMonitor(
        L, [f"s{k}" for k in range(S)], refresh_every=37, jump=jump, keep_detector=False, **kw
    )
    twin = NaiveLayerMonitor(L, S, layer_rule=rule == "zscore", jump=jump, **kw)
    states = set()
    for t in range(x.shape[0]):
        st = mon.check(x[t])
        ref = twin.check(x[t])
        assert st.h0 == pytest.approx(ref["h0"], rel=1e-9, abs=1e-12), t
        # |layer_z|: with an even L the two middle layers can tie with opposite signs
        for got, want in ((st.z, ref["z"]), (abs(st.layer_z), abs(ref["layer_z"]))):
            if math.isnan(want):
                assert math.isnan(got), t
            else:
                assert got == pytest.approx(want, rel=1e-7, abs=1e-7), t
        assert st.state == ref["state"], (t, st.reason)
        assert st.peak == pytest.approx(ref["peak"], rel=1e-9), t
        assert mon.should_stop == ref["should_stop"], t
        states.add(st.state)
    assert len(states) >= 2  # the stream exercised the alarm


def test_h0_with_ties_duplicates_and_extremes_matches_naive():
    rng = np.random.default_rng(7)
    L = 9
    rows = [
        np.ones(L),  # all equal: h0 = 0
        np.array([1, 1, 2, 2, 3, 3, 4, 4, 5.0]),  # ties
        np.array([0, 0, 1e-30, 1, 1e30, 1e30, 0, 5, 5.0]),  # zeros and extremes
        rng.lognormal(0, 5, L),
    ]
    for W in (1, 3):
        mon = LayerMonitor(L, window=W)
        twin = NaiveLayerMonitor(L, window=W)
        for r in rows * 3:
            assert mon.check(r).h0 == pytest.approx(twin.check(r)["h0"], rel=1e-9, abs=1e-12)


# -- DESIGN.md behaviours -------------------------------------------------------------------------
def test_compat_mode_is_max_minus_min():
    rng = np.random.default_rng(1)
    mon = LayerMonitor(32, transform="none", window=1, rule="peak")
    for _ in range(200):
        v = (rng.normal(size=32) * 10.0 ** rng.integers(-5, 6)).astype(np.float32)
        v[rng.integers(32, size=4)] = v[0]  # ties
        expected = float(np.float64(v.max()) - np.float64(v.min()))
        assert mon.check(v).h0 == expected
    # a list of Python floats is recorded as float32, like every stored value
    vals = [0.1, 0.7, 0.30000001, 2.5]
    m2 = LayerMonitor(4, transform="none", window=1, rule="peak")
    f32 = np.asarray(vals, dtype=np.float32).astype(np.float64)
    assert m2.check(vals).h0 == f32.max() - f32.min()


def test_scale_invariance_in_log_mode():
    rng = np.random.default_rng(2)
    x = lognormal_stream(rng, 150, 16, 2, sigma=0.2).astype(np.float32)
    x[:, :, 3] = 0.0  # zero layer: the relative floor keeps it invariant too
    a = LayerMonitor(16, ("g", "a"))
    b = LayerMonitor(16, ("g", "a"))
    c = LayerMonitor(16, ("g", "a"))
    for t in range(x.shape[0]):
        ha = a.check(x[t]).h0
        # exact powers of two: float32 values scale exactly, h0 agrees to rounding of the log
        hb = b.check(x[t] * np.float32(2.0 ** rng.integers(-40, 40))).h0
        # any factor, changing per step: only the float32 rounding of the inputs differs
        hc = c.check(x[t].astype(np.float64) * 10.0 ** rng.uniform(-12, 12)).h0
        assert hb == pytest.approx(ha, rel=1e-12)
        assert hc == pytest.approx(ha, rel=1e-5)


def test_converging_layers_peak_rule_goes_watch_then_collapse_and_stops_after_patience():
    L, patience = 8, 3
    spread = np.concatenate([np.ones(40), np.linspace(1.0, 0.0, 80), np.zeros(20)])
    mon = LayerMonitor(L, rule="peak", patience=patience, window=4)
    states, stops = [], []
    for a in spread:
        states.append(mon.check(np.exp(a * np.arange(L))).state)
        stops.append(mon.should_stop)
    order = [State.HEALTHY, State.WATCH, State.COLLAPSE]
    runs = [s for k, s in enumerate(states) if k == 0 or s != states[k - 1]]
    assert runs == order
    first_collapse = states.index(State.COLLAPSE)
    assert not any(stops[: first_collapse + patience - 1])
    assert all(stops[first_collapse + patience - 1 :])
    s = mon.summary()
    assert s["h0_trend"] == "decreasing" and s["collapse_events"] == 1
    assert s["first_collapse_step"] == first_collapse and s["final_status"] == "COLLAPSE"


def test_isolated_collapse_steps_do_not_stop():
    mon = LayerMonitor(4, transform="none", window=1, rule="peak", warmup=0, patience=3)
    healthy, collapsed = [0.0, 1, 2, 10], [0.0, 0.1, 0.2, 0.3]
    seq = [healthy, collapsed, healthy, collapsed, collapsed, healthy, collapsed, collapsed]
    for v in seq:
        mon.check(v)
        assert not mon.should_stop
    mon.check(collapsed)
    assert mon.should_stop
    assert mon.summary()["collapse_events"] == 3


def test_one_layer_diverging_raises_names_it_and_clears():
    rng = np.random.default_rng(3)
    L, onset, length = 16, 300, 50
    x = lognormal_stream(rng, 500, L, sigma=0.1)
    x[onset : onset + length, 0, 5] *= 100.0
    names = [f"block{i}" for i in range(L)]
    mon = LayerMonitor(L, layer_names=names)
    statuses = [mon.check(x[t]) for t in range(x.shape[0])]
    assert all(s.state is State.HEALTHY for s in statuses[:onset])
    raised = next(t for t in range(onset, 500) if statuses[t].state is not State.HEALTHY)
    assert raised == onset  # the change detector: a x100 jump at once
    during = statuses[raised : onset + length]
    assert all(s.state is not State.HEALTHY for s in during)
    assert all(s.culprits and s.culprits[0] == "block5" for s in during)
    first = statuses[raised]
    assert first.reason.startswith("cusum: block5") and "jump x" in first.reason
    assert first.stat == first.stat and first.direction == "rising"
    # the streak rule alone (the detector off after the warm-up) waits for its debounce
    alone = LayerMonitor(L, layer_names=names, keep_detector=False)
    late = next(s for s in (alone.check(v) for v in x) if s.state is not State.HEALTHY)
    assert onset < late.step < onset + 10 and "layer" in late.reason and "block5" in late.reason
    # after the event, once its values left the window, the alarm clears and stays clear
    flushed = onset + length + mon.window
    cleared = next(t for t in range(flushed, 500) if statuses[t].state is State.HEALTHY)
    assert cleared - flushed < 4 * mon.clear_after
    assert all(s.state is State.HEALTHY for s in statuses[cleared:])


def test_cosine_lr_decay_raises_nothing():
    rng = np.random.default_rng(4)
    L, T = 16, 1000
    x = lognormal_stream(rng, T, L, 2, sigma=0.1)
    lr = 1e-3 + 0.5 * (1 - 1e-3) * (1 + np.cos(np.pi * np.arange(T) / T))
    decayed = LayerMonitor(L, ("grad_norm", "act_norm"))
    steady = LayerMonitor(L, ("grad_norm", "act_norm"))
    for t in range(T):
        a = decayed.check({"grad_norm": x[t, 0] * lr[t], "act_norm": x[t, 1] * lr[t]})
        b = steady.check(x[t])
        # the decay changes nothing but float32 rounding of the inputs
        assert a.h0 == pytest.approx(b.h0, rel=1e-5)
        assert (a.state, a.culprits) == (b.state, b.culprits), t
        assert a.state is State.HEALTHY, (t, a.reason)
    assert lr[-1] < 1.01e-3 and decayed.summary()["watch_steps"] == 0


def test_run_equals_live_checks_bit_for_bit():
    rng = np.random.default_rng(6)
    x = with_events(rng, lognormal_stream(rng, 300, 12, 2, sigma=0.1))
    live = LayerMonitor(12, ("g", "a"), **SMALL)
    statuses = [live.check({"g": x[t, 0], "a": x[t, 1]}) for t in range(300)]
    df = LayerMonitor(12, ("g", "a"), **SMALL).run(x.astype(np.float32))
    expected = status_frame(statuses)
    assert df.equals(expected)
    assert (df["state"] != "HEALTHY").any()


def test_check_every_records_every_step_and_evaluates_every_kth():
    rng = np.random.default_rng(8)
    x = lognormal_stream(rng, 60, 6, sigma=0.3)
    every = LayerMonitor(6, window=4)
    sparse = LayerMonitor(6, window=4, check_every=3)
    for t in range(60):
        a, b = every.check(x[t]), sparse.check(x[t])
        assert b.evaluated == (t % 3 == 0)
        if b.evaluated:
            assert b.h0 == a.h0
        else:
            assert b.h0 == sparse.last_status_.h0 and b.step == t
    assert len(sparse.ring_) == 60


@pytest.mark.parametrize("policy", ["collapse", "flag"])
def test_nonfinite_is_recorded_excluded_and_named(policy):
    rng = np.random.default_rng(9)
    x = lognormal_stream(rng, 40, 5, sigma=0.1)[:, 0]
    mon = LayerMonitor(5, window=3, nonfinite=policy, layer_names=list("abcde"))
    for t in range(30):
        mon.check(x[t])
    bad = x[30].copy()
    bad[2] = np.nan
    st = mon.check(bad)
    assert st.nonfinite == (2,) and "c" in st.reason
    assert np.isnan(mon.ring_.window(1)[0, 0, 2])  # recorded as is
    assert st.state is (State.COLLAPSE if policy == "collapse" else State.HEALTHY)
    # h0 of the other layers only, for as long as the NaN is in the window
    keep = [0, 1, 3, 4]
    ref = NaiveLayerMonitor(4, window=3)
    for t in range(28, 31):
        expected = ref.check(bad[keep] if t == 30 else x[t, keep])["h0"]
    assert st.h0 == pytest.approx(expected, rel=1e-9)
    for t in range(31, 34):
        st = mon.check(x[t])
        assert st.nonfinite == () and st.z != st.z  # degraded: no z against the baseline
    st = mon.check(x[34])
    assert st.z == st.z or mon.step < mon.baseline  # back to normal once the NaN left


def test_nonfinite_raise_changes_nothing():
    mon = LayerMonitor(4, nonfinite="raise")
    mon.check([1.0, 2, 3, 4])
    before = mon.state_dict()
    with pytest.raises(ValueError, match="NaN/inf"):
        mon.check([1.0, np.inf, 3, 4])
    assert_state_equal(before, mon.state_dict())


def test_writer_gets_contract_rows():
    rows = []
    mon = LayerMonitor(3, ("g", "a"), writer=rows.append, layer_names=["x", "y", "z"])
    v = {"g": [1.0, 2.0, 3.0], "a": np.array([0.5, 0.25, 1.0])}
    st = mon.check(v)
    mon.check(v)
    assert len(rows) == 2
    row = rows[0]
    assert set(row) == {"monitor", "step", "wall_time", "signals", "layer_names", "values",
                        "h0", "state", "reason", "config", "z", "stat", "culprits", "direction",
                        "calibrating"}  # fmt: skip
    assert row["calibrating"] is True and row["culprits"] == () and np.isnan(row["stat"])
    assert row["monitor"] == "layer" and row["step"] == 0 and row["h0"] == st.h0
    assert row["signals"] == ("g", "a") and row["layer_names"] == ("x", "y", "z")
    assert row["values"].dtype == np.float32 and row["values"].shape == (2, 3)
    np.testing.assert_array_equal(row["values"], np.array([v["g"], v["a"]], dtype=np.float32))
    assert row["values"] is not rows[1]["values"]
    assert row["state"] == "HEALTHY" and isinstance(row["reason"], str)
    json.dumps(row["config"])


def test_inputs_all_forms_agree():
    v = np.array([0.3, 1.0, 2.0, 0.01, 5.0])
    forms = [
        v,
        v.astype(np.float32),
        list(v),
        tuple(float(a) for a in v),
        [np.float64(a) for a in v],
    ]
    h = {LayerMonitor(5).check(f).h0 for f in forms}
    assert len(h) == 1
    torch = pytest.importorskip("torch")
    t = torch.tensor(v, requires_grad=True) * 1.0
    assert LayerMonitor(5).check(t).h0 in h
    assert LayerMonitor(5).check([a for a in t]).h0 in h  # list of 0-d tensors: one transfer
    assert LayerMonitor(5).check(t[None, :]).h0 in h  # a (1, L) tensor for one signal
    two = LayerMonitor(5, ("g", "a")).check(np.stack([v, v / 3])).h0
    assert LayerMonitor(5, ("g", "a")).check(torch.stack([t, t / 3])).h0 == pytest.approx(two)
    assert LayerMonitor(5, ("g", "a")).check({"g": t, "a": v / 3}).h0 == pytest.approx(two)
    assert LayerMonitor(5, ("g", "a")).check({"g": t, "a": t / 3}).h0 == pytest.approx(two)
    with pytest.raises(ValueError, match=r"values\['a'\] has 4 values, expected n_layers=5"):
        LayerMonitor(5, ("g", "a")).check({"g": t, "a": t[:4]})


def test_acknowledge_rebaselines():
    rng = np.random.default_rng(10)
    x = lognormal_stream(rng, 400, 8, sigma=0.1)
    x[200:, 0, 3] *= 50.0  # a permanent shift: stays in alarm until acknowledged
    mon = LayerMonitor(8, window=4, baseline=100, raise_after=5)
    for t in range(260):
        st = mon.check(x[t])
    assert st.state is not State.HEALTHY
    mon.acknowledge()
    states = [mon.check(x[t]).state for t in range(260, 400)]
    assert all(s is State.HEALTHY for s in states)
    assert mon.check(x[399]).reason == "ok"


def test_negative_values_rejected_by_log_transform():
    mon = LayerMonitor(3, layer_names=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"negative value -1\.0 at layer 'b'.*transform='none'"):
        mon.check([1.0, -1.0, 2.0])
    assert mon.step == 0
    assert LayerMonitor(3, transform="none").check([1.0, -1.0, 2.0]).h0 > 0


def test_signal_name_alias_and_status_compat():
    mon = LayerMonitor(n_layers=4, signal_name="grad_norm")
    st = mon.check([1.0, 2.0, 3.0, 4.0])
    assert mon.signals == ("grad_norm",)
    assert st.status == "HEALTHY" and not st.alert and st.reason.startswith("ok, calibrating")
    with pytest.raises(AttributeError):
        st.h0 = 1.0  # frozen


# -- bad input ------------------------------------------------------------------------------------
def assert_state_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            np.testing.assert_array_equal(a[k], b[k])
            assert a[k].dtype == b[k].dtype
        else:
            assert json.dumps(a[k]) == json.dumps(b[k]), k


BAD_CHECKS = [
    ([1.0, 2.0, 3.0], ValueError, r"has 3 values, expected n_layers=4"),
    ([1.0] * 5, ValueError, r"has 5 values, expected n_layers=4"),
    (np.ones((2, 4)), ValueError, r"1-D .*got shape \(2, 4\)"),
    ("1234", TypeError, r"values must be 4 numbers.*'1234'"),
    (["a", "b", "c", "d"], TypeError, r"real numbers"),
    ([[1.0, 2.0], [3.0]], ValueError, r"values must be 4 numbers"),
    (np.ones(4) * 1j, TypeError, r"real numbers"),
    (None, TypeError, r"real numbers"),
    ({"x": [1.0] * 4}, ValueError, r"exactly the keys \['g'\].*unexpected \['x'\]"),
    ([{"g": 1.0}] * 4, TypeError, r"real numbers"),
    ([1.0, 2.0, -3.0, 4.0], ValueError, r"negative value"),
]
BAD_DICT_CHECKS = [
    ({"g": [1.0] * 4}, ValueError, r"exactly the keys \['g', 'a'\].*missing \['a'\]"),
    ({"g": [1.0] * 4, "a": [1.0] * 4, "x": [1.0] * 4}, ValueError, r"unexpected \['x'\]"),
    ({"g": [1.0] * 4, "a": [1.0] * 3}, ValueError, r"values\['a'\] has 3 values"),
    (np.ones((3, 4)), ValueError, r"shape \(2, 4\), got shape \(3, 4\)"),
    (np.ones(4), ValueError, r"dict \{signal: vector\} or an array of shape \(2, 4\)"),
]


@pytest.mark.parametrize(("signals", "bad", "exc", "match"),
    [(("g",), *c) for c in BAD_CHECKS] + [(("g", "a"), *c) for c in BAD_DICT_CHECKS])  # fmt: skip
def test_bad_input_raises_and_changes_nothing(signals, bad, exc, match):
    rng = np.random.default_rng(11)
    mon = LayerMonitor(4, signals, window=3, **SMALL)
    for _ in range(30):
        mon.check({s: rng.lognormal(size=4) for s in signals})
    before = mon.state_dict()
    with pytest.raises(exc, match=match):
        mon.check(bad)
    assert_state_equal(before, mon.state_dict())
    mon.check({s: np.ones(4) for s in signals})  # still usable


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"n_layers": 1}, ValueError, r"n_layers must be an integer >= 2, got 1"),
        ({"n_layers": 4.0}, TypeError, r"n_layers must be an integer"),
        ({"window": 0}, ValueError, r"window must be an integer >= 1, got 0"),
        ({"watch_z": 6.0, "collapse_z": 6.0}, ValueError, r"collapse_z must be greater"),
        ({"watch_ratio": 0.3, "collapse_ratio": 0.3}, ValueError, r"collapse_ratio < watch_ratio"),
        ({"transform": "sqrt"}, ValueError, r"transform must be one of \('log', 'none'\)"),
        ({"rule": "ratio"}, ValueError, r"rule must be one of"),
        ({"nonfinite": "ignore"}, ValueError, r"nonfinite must be one of"),
        ({"signals": "grad_norm"}, TypeError, r"signals must be a sequence of str"),
        ({"signals": ("g", "g")}, ValueError, r"unique"),
        ({"layer_names": ["a"]}, ValueError, r"layer_names has 1 names, expected n_layers=4"),
        ({"capacity": 8, "window": 16}, ValueError, r"capacity must be >= window=16, got 8"),
        ({"writer": 3}, TypeError, r"writer must be callable"),
        ({"min_std": 0.0}, ValueError, r"min_std must be > 0"),
    ],
)
def test_bad_config(kwargs, exc, match):
    kwargs = {"n_layers": 4, **kwargs}
    with pytest.raises(exc, match=match):
        LayerMonitor(**kwargs)


def test_default_layer_threshold_is_sidak_corrected():
    from scipy.stats import norm

    p = 2 * norm.sf(3.0)
    for L, S in [(2, 1), (16, 1), (64, 3)]:
        mon = LayerMonitor(L, [f"s{k}" for k in range(S)])
        assert mon.layer_z_ == pytest.approx(norm.isf((1 - (1 - p) ** (1 / (L * S))) / 2))
    assert LayerMonitor(2, layer_z=3.0).layer_z_ == 3.0
    assert LayerMonitor(2, ("a",)).layer_z_ > 3.0  # two z-scores, corrected


def test_median_quickselect_matches_numpy():
    from streamtopo._kernels.layer import median_inplace

    rng = np.random.default_rng(12)
    for m in [*range(1, 20), 63, 64, 128]:
        for _ in range(20):
            a = (
                rng.integers(0, 4, size=m).astype(float)
                if rng.random() < 0.5
                else rng.normal(size=m)
            )
            work = np.concatenate([a, rng.normal(size=3)])  # only the first m count
            assert median_inplace(work, m) == np.median(a)
    assert median_inplace(np.zeros(3), 0) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    data=hst.data(),
    L=hst.integers(2, 9),
    S=hst.integers(1, 2),
    W=hst.integers(1, 4),
    T=hst.integers(1, 12),
)
def test_property_h0_naive_and_layer_permutation(data, L, S, W, T):
    elems = hst.sampled_from([0.0, 1e-30, 1e-3, 0.5, 1.0, 1.0, 2.0, 3.5, 1e6, 1e30])
    x = np.array(data.draw(hst.lists(elems, min_size=T * S * L, max_size=T * S * L)))
    x = x.reshape(T, S, L)
    perm = np.array(data.draw(hst.permutations(range(L))))
    names = [f"s{k}" for k in range(S)]
    a, b = LayerMonitor(L, names, window=W), LayerMonitor(L, names, window=W)
    twin = NaiveLayerMonitor(L, S, window=W)
    for t in range(T):
        ha, hb = a.check(x[t]).h0, b.check(x[t][:, perm]).h0
        href = twin.check(x[t])["h0"]
        assert ha == pytest.approx(href, rel=1e-9, abs=1e-12)
        assert hb == pytest.approx(ha, rel=1e-9, abs=1e-12)


def test_config_rebuilds_an_identical_monitor():
    mon = LayerMonitor(5, ("g", "a"), window=3, layer_names=list("abcde"), check_every=2)
    twin = LayerMonitor(**json.loads(json.dumps(mon.config)))
    assert twin.config == mon.config and twin.layer_z_ == mon.layer_z_
    rng = np.random.default_rng(13)
    x = lognormal_stream(rng, 30, 5, 2)
    assert mon.run(x).equals(twin.run(x))


def test_running_sums_stay_close_to_exact_over_a_long_stream():
    rng = np.random.default_rng(14)
    L, S, W, T = 12, 2, 8, 3000
    x = np.exp(rng.normal(0, 4, size=(T, S, L)))  # values over ~10 decades
    mon = LayerMonitor(L, ("g", "a"), window=W, refresh_every=10**9, baseline=50, layer_rule=False)
    for t in range(T):
        mon.check(x[t])
    mon.state_dict()  # completes a baseline push the next check would do
    P = mon._P  # the window by layer; D must be its pairwise squared distances
    exact = ((P[:, None, :] - P[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(mon._D, exact, rtol=1e-9, atol=1e-9 * exact.max())
    B = mon._B[: mon._bn]
    mean = mon._ref + mon._s1 / mon._bn
    var = mon._s2 / mon._bn - (mon._s1 / mon._bn) ** 2
    np.testing.assert_allclose(mean, B.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, B.var(axis=0), rtol=1e-9, atol=1e-12)


def test_converging_layers_zscore_rule_says_falling_and_why():
    rng = np.random.default_rng(15)
    L, T = 10, 400
    levels = np.linspace(-2.0, 2.0, L)
    spread = np.concatenate([np.ones(200), np.linspace(1.0, 0.05, 100), np.full(100, 0.05)])
    x = np.exp(spread[:, None] * levels[None] + 0.02 * rng.normal(size=(T, L)))
    mon = LayerMonitor(L, keep_detector=False)  # the streak rule's topology reason
    statuses = [mon.check(x[t]) for t in range(T)]
    assert all(s.state is State.HEALTHY for s in statuses[:200])
    alarmed = [s for s in statuses[200:] if s.state is not State.HEALTHY]
    assert alarmed and alarmed[0].step < 240
    first = alarmed[0]
    assert first.direction == "falling" and first.z < -3
    assert first.reason.startswith("topology") and "layers converging" in first.reason
    assert mon.summary()["h0_trend"] == "decreasing"


def test_memory_does_not_grow_with_steps():
    import tracemalloc

    rng = np.random.default_rng(16)
    x = lognormal_stream(rng, 700, 16, 2)
    mon = LayerMonitor(16, ("g", "a"), capacity=64)
    for t in range(300):
        mon.check(x[t])
    held = mon.nbytes
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for t in range(300, 700):
        mon.check(x[t])
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert grown < 20_000  # one Status and a few temporaries, not per-step buffers
    assert mon.nbytes == held


def test_failed_calls_mid_stream_leave_no_trace():
    """Bad input between good steps (no state_dict in between) changes no later status."""
    rng = np.random.default_rng(17)
    x = with_events(rng, lognormal_stream(rng, 300, 6, 2, sigma=0.1))
    a, b = LayerMonitor(6, ("g", "a"), **SMALL), LayerMonitor(6, ("g", "a"), **SMALL)
    bad_inputs = [np.ones(5), {"g": np.ones(6)}, -np.ones((2, 6)), "x"]
    for t in range(300):
        if t % 7 == 3:
            with pytest.raises((ValueError, TypeError)):
                b.check(bad_inputs[t % len(bad_inputs)])
        assert status_key(a.check(x[t])) == status_key(b.check(x[t])), t
    assert_state_equal(a.state_dict(), b.state_dict())


def test_run_rejects_bad_streams():
    mon = LayerMonitor(4, ("g", "a"))
    with pytest.raises(ValueError, match=r"shape \(T, 2, 4\) \(steps, signals, layers\)"):
        mon.run(np.ones((10, 4)))
    with pytest.raises(ValueError, match=r"exactly the keys \['g', 'a'\]"):
        mon.run({"g": np.ones((10, 4))})
    df = mon.run({"g": np.ones((3, 4)), "a": np.full((3, 4), 2.0)})
    assert df["step"].to_list() == [0, 1, 2] and mon.step == 3
    assert LayerMonitor(4).run(np.ones((2, 4))).height == 2  # (T, L) for one signal


def test_jump_of_one_layer_keeps_its_z_until_the_alarm_names_it():
    # the first outliers of an event must not enter the per-layer baselines before the alarm
    # fires (raise_after steps), or the jumping layer's z collapses and another layer is named
    rng = np.random.default_rng(0)
    mon = LayerMonitor(n_layers=6, signals=("act_norm",), keep_detector=False)
    statuses = []
    for t in range(300):
        v = np.exp(rng.normal(0, 0.05, 6)) * np.arange(1, 7)
        if t >= 250:
            v[2] *= 100.0
        statuses.append(mon.check(v))
    first = next(s for s in statuses if s.state is not State.HEALTHY)
    assert 250 <= first.step <= 250 + mon.raise_after
    assert first.culprits[0] == "2" and first.layer_z > 50
    assert "2 z=" in first.reason


def test_a_one_step_spike_names_the_spiked_layer():
    """A x100 spike of one layer at one step leaves this step's values at once but stays in
    the 16-step window: the topology rule fires on it, and the culprit is the layer most
    isolated in the window, not the largest |z| of the current (normal) values."""
    rng = np.random.default_rng(0)
    levels = rng.normal(size=(2, 12))
    mon = LayerMonitor(12, ("act_norm", "grad_norm"), keep_detector=False)  # the streak rule
    default = LayerMonitor(12, ("act_norm", "grad_norm"))
    alarms, first = [], []
    for step in range(330):
        x = np.exp(levels + 0.05 * rng.normal(size=(2, 12)))
        if step == 300:
            x[:, 2] *= 100.0
        st = mon.check({"act_norm": x[0], "grad_norm": x[1]})
        if st.state is not State.HEALTHY:
            alarms.append(st)
        st = default.check({"act_norm": x[0], "grad_norm": x[1]})
        if st.state is not State.HEALTHY:
            first.append(st)
    # by default the change detector names the spiked layer at the spike; a WATCH that ends
    assert first[0].step == 300 and first[0].culprits[0] == "2"
    assert {s.state for s in first} == {State.WATCH} and default.last_status_.state is State.HEALTHY
    assert alarms and 300 < alarms[0].step < 300 + mon.window
    assert all(s.step <= 300 + mon.window + 2 * mon.clear_after for s in alarms)  # it ends
    inside = [s for s in alarms if s.step < 300 + mon.window]  # the spike still in the window
    assert inside and all(s.reason.startswith("topology:") for s in inside)
    assert all(s.direction == "rising" and s.culprits[0] == "2" for s in inside)
