"""betti_profile and DepthProfile: Omega, theta, Rips path, state, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from ripser import ripser

from streamtopo import DepthProfile, InputError, InputTypeError, StreamtopoError, betti_profile
from streamtopo.topology import betti0_at, h0_total


def _minima_maps(m: int, n: int = 3) -> np.ndarray:
    """n samples of one 9x9 map with m isolated (non-8-adjacent) minima on a flat background."""
    spots = [(0, 0), (0, 3), (0, 6), (3, 0), (3, 3), (3, 6), (6, 0), (6, 3), (6, 6)]
    x = np.full((n, 1, 9, 9), 2.0)
    for y, c in spots[:m]:
        x[:, 0, y, c] = -1.0
    return x


def test_omega_of_isolated_minima_is_their_count():
    # after per-map min-max scaling the minima sit at 0, the rest at 1: beta0 = m on [0, 1)
    for m in (1, 4, 9):
        p = betti_profile(_minima_maps(m))
        assert p.omega == pytest.approx(m)
        assert p.betti1 is not None and np.all(p.betti1 == 0)
        assert p.area.shape == (3,)


def test_theta_known_slope_and_r2():
    names = ["a", "b", "c", "d"]
    dp = DepthProfile(names)
    for k, name in enumerate(names):
        dp.add(name, _minima_maps(2 ** (3 - k)))  # Omega = 8, 4, 2, 1
    om = dp.omega()
    assert om["omega"].to_list() == pytest.approx([8, 4, 2, 1])
    assert om["depth"].to_list() == pytest.approx([0, 1 / 3, 2 / 3, 1])
    th = dp.theta()
    assert th["theta"][0] == pytest.approx(-3 * math.log(2))
    assert th["intercept"][0] == pytest.approx(3 * math.log(2))
    assert th["r2"][0] == pytest.approx(1.0)
    assert th["n_layers"][0] == 4


def test_theta_matches_polyfit_on_noisy_profile():
    rng = np.random.default_rng(1)
    names = [f"l{i}" for i in range(5)]
    dp = DepthProfile(names, thresholds=32)
    for name in names[::2] + names[1::2]:  # add out of order: depth comes from layer_names
        dp.add(name, rng.normal(size=(3, 2, 10, 10)).cumsum(-1) * rng.uniform(0.5, 2))
    om = dp.omega()
    x, y = om["depth"].to_numpy(), np.log(om["omega"].to_numpy())
    slope, intercept = np.polyfit(x, y, 1)
    r2 = np.corrcoef(x, y)[0, 1] ** 2
    th = dp.theta()
    assert th["theta"][0] == pytest.approx(slope)
    assert th["intercept"][0] == pytest.approx(intercept)
    assert th["r2"][0] == pytest.approx(r2)
    assert om["layer"].to_list() == names


def test_scale_invariance_with_map_normalisation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 8, 8))
    a = betti_profile(x)
    b = betti_profile(1000.0 * x + 7.0)
    np.testing.assert_allclose(a.area, b.area, rtol=1e-12)
    np.testing.assert_array_equal(a.betti0, b.betti0)


def test_extreme_ranges():
    x = np.zeros((1, 4, 4))
    x[0, 0, 0] = -1e300
    x[0, 3, 3] = 1e-300
    p = betti_profile(x, thresholds=[0.0, 0.5, 1.0])  # representable: scaled exactly
    assert p.betti0[0].tolist() == [1.0, 1.0, 1.0]
    x[0, 0, 0], x[0, 3, 3] = -1.7e308, 1.7e308
    with pytest.raises(InputError, match="overflows float64"):
        betti_profile(x)


def test_constant_maps_give_beta0_one():
    p = betti_profile(np.full((2, 3, 5, 5), 4.0), thresholds=8)
    assert np.all(p.betti0 == 1) and np.all(p.betti1 == 0)
    assert p.omega == pytest.approx(1.0)


def test_volume_mode_counts_3d_components():
    x = np.ones((1, 4, 4, 4))
    x[0, 0, 0, 0] = x[0, 3, 3, 3] = 0.0
    p = betti_profile(x, volume=True, thresholds=[0.0, 1.0], connectivity=26)
    assert p.betti0.tolist() == [[2.0, 1.0]]
    assert p.betti1.tolist() == [[0.0, 0.0]] and p.betti2.tolist() == [[0.0, 0.0]]
    shell = np.zeros((2, 3, 3, 3))
    shell[:, 1, 1, 1] = 1.0  # a hollow cube (one void) until the centre enters
    p = betti_profile(shell, volume=True, thresholds=[0.0, 0.5, 1.0])
    assert p.betti2.tolist() == [[1.0, 1.0, 0.0]] * 2
    assert p.omega == pytest.approx(2.0)  # beta0 = 1 and beta2 = 1 on [0, 1)


def test_rips_path_agrees_with_h0_core():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 5))
    t = np.linspace(0.0, 3.0, 13)
    p = betti_profile(X, kind="rips", thresholds=t, normalize="none")
    assert p.betti0[0].tolist() == [betti0_at(X, s) for s in t]
    assert p.total_persistence[0] == pytest.approx(h0_total(X), rel=1e-12)
    # window [0, hi] past every death: area = finite deaths + the essential bar's hi
    q = betti_profile(X, kind="rips", thresholds=20, normalize="none")
    assert q.area[0] == pytest.approx(h0_total(X) + q.thresholds[-1], rel=1e-12)
    # (N, C, H, W) activations are flattened per sample
    A = rng.normal(size=(30, 2, 3, 3))
    r = betti_profile(A, kind="rips", thresholds=t, normalize="none")
    assert r.betti0[0].tolist() == [betti0_at(A.reshape(30, -1), s) for s in t]


def test_rips_h1_on_a_circle():
    theta = np.linspace(0, 2 * np.pi, 30, endpoint=False)
    X = np.c_[np.cos(theta), np.sin(theta)]
    t = np.linspace(0.0, 2.0, 41)
    p = betti_profile(X, kind="rips", thresholds=t, normalize="none", dims=(0, 1))
    bars = ripser(X, maxdim=1)["dgms"][1]
    ref = [np.sum((bars[:, 0] <= s) & (s < bars[:, 1])) for s in t]
    assert p.betti1[0].tolist() == ref
    assert max(ref) == 1
    # wide embeddings (more features than samples) are the normal case: no ripser warning
    wide = np.c_[X, np.zeros((30, 40))]
    assert betti_profile(wide, kind="rips", thresholds=t, dims=(0, 1)).betti1.max() == 1


def test_add_twice_unknown_layer_and_state_unchanged():
    dp = DepthProfile(["a", "b"], thresholds=8)
    dp.add("a", np.zeros((2, 4, 4)))
    before = dp.omega()
    with pytest.raises(InputError, match="already added"):
        dp.add("a", np.zeros((2, 4, 4)))
    with pytest.raises(InputError, match="layer must be one of"):
        dp.add("zzz", np.zeros((2, 4, 4)))
    bad = np.zeros((2, 4, 4))
    bad[0, 1, 1] = np.nan
    with pytest.raises(InputError, match="1 NaN/inf value"):
        dp.add("b", bad)
    with pytest.raises(InputError, match=r"\(N, H, W\) or \(N, C, H, W\)"):
        dp.add("b", np.zeros((2, 3, 4, 4, 4)))
    with pytest.raises(InputError, match="must not be empty"):
        dp.add("b", np.zeros((0, 4, 4)))
    assert dp.omega().equals(before) and dp.step_ == 1
    with pytest.raises(InputError, match="at least 2 added layers, got 1"):
        dp.theta()


def test_bad_arguments():
    with pytest.raises(InputError, match="kind must be one of"):
        betti_profile(np.zeros((1, 3, 3)), kind="alpha")
    with pytest.raises(InputError, match="normalize must be one of"):
        betti_profile(np.zeros((1, 3, 3)), normalize="zscore")
    with pytest.raises(InputError, match="dims must be a non-empty subset"):
        betti_profile(np.zeros((1, 3, 3)), dims=(2,))
    with pytest.raises(InputError, match="dims must be a non-empty subset"):
        betti_profile(np.zeros((1, 3, 3, 3)), volume=True, dims=(3,))
    with pytest.raises(InputError, match=r"apply to kind=.cubical. only"):
        betti_profile(np.zeros((3, 2)), kind="rips", connectivity=8)
    with pytest.raises(InputTypeError, match="activations must be an array of real numbers"):
        betti_profile("abc")
    with pytest.raises(InputTypeError, match="array of real numbers"):
        betti_profile(np.array([["a"]]))
    with pytest.raises(InputError, match="layer_names must be unique"):
        DepthProfile(["a", "a"])
    with pytest.raises(InputError, match="layer_names must be a non-empty"):
        DepthProfile([])
    with pytest.raises(InputTypeError, match="unknown betti_profile argument"):
        DepthProfile(["a"], treshold=3)
    with pytest.raises(InputError, match="connectivity must be 4 or 8"):
        DepthProfile(["a"], connectivity=26)
    with pytest.raises(InputError, match="thresholds must be an integer >= 2"):
        DepthProfile(["a"], thresholds=1)


def test_theta_needs_positive_omega():
    dp = DepthProfile(["a", "b"], normalize="none", thresholds=[-3.0, -2.0])
    dp.add("a", np.zeros((1, 3, 3)))  # nothing is below -2: Omega = 0
    dp.add("b", np.zeros((1, 3, 3)))
    with pytest.raises(StreamtopoError, match="omega <= 0"):
        dp.theta()


def test_state_dict_round_trip_continues_identically():
    rng = np.random.default_rng(4)
    names = ["a", "b", "c"]
    acts = {n: rng.normal(size=(2, 2, 8, 8)).cumsum(-1) for n in names}
    rows = []
    dp = DepthProfile(names, thresholds=[0.0, 0.25, 0.5, 1.0], writer=rows.append)
    dp.add("a", acts["a"])
    dp.add("b", acts["b"])
    state = dp.state_dict()
    arrays = {k: v for k, v in state["layers"].items()}
    json.dumps({k: v for k, v in state.items() if k != "layers"})  # the rest is plain JSON
    assert all(
        isinstance(a, np.ndarray)
        for d in arrays.values()
        for a in d.values()
        if not isinstance(a, str)
    )
    fresh = DepthProfile(names, thresholds=[0.0, 0.25, 0.5, 1.0])
    fresh.load_state_dict(state)
    for m in (dp, fresh):
        m.add("c", acts["c"])
    assert fresh.omega().equals(dp.omega())
    assert fresh.theta().equals(dp.theta())
    assert fresh.step_ == dp.step_ == 3
    assert [r["layer"] for r in rows] == ["a", "b", "c"]
    assert rows[-1]["monitor"] == "depth" and rows[-1]["depth"] == 1.0
    json.dumps(rows[-1])
    with pytest.raises(InputError, match="layer_names"):
        DepthProfile(["x", "y"]).load_state_dict(state)
    broken = dp.state_dict()
    broken["layers"]["a"]["area"] = broken["layers"]["a"]["area"][:1]
    before = fresh.omega()
    with pytest.raises(InputError, match="inconsistent shapes"):
        fresh.load_state_dict(broken)
    assert fresh.omega().equals(before)
    dp.reset()
    assert dp.omega().height == 0 and dp.step_ == 0


def test_plot_returns_figure():
    pytest.importorskip("matplotlib")
    dp = DepthProfile(["a", "b"], thresholds=8)
    dp.add("a", _minima_maps(4))
    dp.add("b", _minima_maps(2))
    fig = dp.plot()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "normalised depth"
    assert len(ax.lines) == 2  # data and fit


def test_cubical_profile_is_channel_mean_of_betti_curves():
    from streamtopo.topology.cubical import betti_curves

    rng = np.random.default_rng(6)
    x = rng.integers(0, 5, size=(3, 4, 6, 7)).astype(float)  # ties and a constant-free mix
    x[1, 2] = 3.0  # one constant channel
    t = np.linspace(0.0, 1.0, 9)
    p = betti_profile(x, thresholds=t, connectivity=4)
    lo = x.min(axis=(2, 3), keepdims=True)
    span = x.max(axis=(2, 3), keepdims=True) - lo
    norm = (x - lo) / np.where(span > 0, span, 1.0)
    c = betti_curves(norm, t, 4)
    np.testing.assert_allclose(p.area, (c.area0 + c.area1).reshape(3, 4).mean(axis=1))
    np.testing.assert_allclose(p.betti0, c.betti0.reshape(3, 4, -1).mean(axis=1))
    np.testing.assert_allclose(p.betti1, c.betti1.reshape(3, 4, -1).mean(axis=1))
    only0 = betti_profile(x, thresholds=t, connectivity=4, dims=(0,))
    np.testing.assert_allclose(only0.area, c.area0.reshape(3, 4).mean(axis=1))
    assert only0.betti1 is None


def test_rips_normalised_and_cosine():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(25, 4))
    raw = betti_profile(X, kind="rips", thresholds=11, normalize="none")
    norm = betti_profile(3.0 * X, kind="rips", thresholds=11)  # scale-free by construction
    assert norm.thresholds[-1] == 1.0
    np.testing.assert_array_equal(raw.betti0, norm.betti0)
    assert norm.area[0] == pytest.approx(raw.area[0] / raw.thresholds[-1])
    t = np.linspace(0.0, 1.0, 7)
    cos = betti_profile(X, kind="rips", thresholds=t, normalize="none", metric="cosine")
    assert cos.betti0[0].tolist() == [betti0_at(X, s, metric="cosine") for s in t]
    sub = betti_profile(X, kind="rips", thresholds=t, max_points=10, seed=1)
    assert sub.betti0[0, 0] == 10
    with pytest.raises(InputError, match="metric must be one of"):
        betti_profile(X, kind="rips", metric="precomputed")
    with pytest.raises(InputError, match="needs metric='euclidean'"):
        betti_profile(X, kind="rips", metric="cosine", dims=(0, 1))
    with pytest.raises(InputError, match="for kind='rips'"):
        betti_profile(np.zeros(5), kind="rips")
