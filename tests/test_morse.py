"""MorseMonitor: the incremental repair equals a from-scratch H0 exactly, after every edit.

References: ``h0.mst_unsorted`` on the same points (exact equality of the deaths multiset,
the from-scratch path), the naive Kruskal twin and ripser (float tolerance: ripser works in
float32), persim's bottleneck distance, naive edge counts and an independent elder-rule pairing.
"""

from __future__ import annotations

import copy
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamtopo.errors import InputError, InputTypeError, StreamtopoError
from streamtopo.monitors.morse import MorseMonitor
from streamtopo.topology import h0
from tests import naive, naive_morse

pytestmark = pytest.mark.kernel

PURE_PYTHON = os.environ.get("NUMBA_DISABLE_JIT") == "1"
N_MAX = 24 if PURE_PYTHON else 300
D_MAX = 4 if PURE_PYTHON else 32
N_SEQUENCES = 40 if PURE_PYTHON else 2000


def scratch_deaths(X, metric="euclidean"):
    P = h0.prepare_points(X, metric)
    return np.sort(h0.mst_unsorted(P, metric)[2])


def make_points(rng, n, d, style):
    if style == "grid":  # many exact ties and duplicates
        return rng.integers(-2, 3, size=(n, d)).astype(np.float64)
    if style == "dup":
        base = rng.normal(size=(max(1, n // 3), d))
        return base[rng.integers(0, base.shape[0], size=n)]
    if style == "scaled":  # far from 1: exercises the power-of-two scaling
        return rng.normal(size=(n, d)) * 10.0 ** rng.integers(-6, 7)
    return rng.normal(size=(n, d))


def edit(rng, X, k, style):
    n, d = X.shape
    Y = X.copy()
    rows = rng.choice(n, size=k, replace=False)
    kind = rng.integers(0, 4)
    if kind == 0:  # random-walk step
        step = rng.normal(size=(k, d)) * 0.1 * (np.abs(X).max() + 1e-300)
        Y[rows] += np.round(step) if style == "grid" else step
    elif kind == 1:  # onto another point: duplicates and ties
        Y[rows] = X[rng.integers(0, n, size=k)]
    elif kind == 2:  # jump far: splits the tree
        Y[rows] = make_points(rng, k, d, style) * 3.0
    else:  # swap rows: same point set, different identities
        Y[rows] = X[rng.permutation(rows)]
    return Y


def fix_cosine(X):
    X = X.copy()
    X[np.all(X == 0, axis=1)] = 1.0
    return X


def assert_exact(mon, X, metric):
    expected = scratch_deaths(X, metric)
    got = mon.deaths_
    assert np.array_equal(got, expected), (mon.stats_, np.max(np.abs(got - expected)))
    assert mon.betti0_ == h0.betti0_at(X, mon.scale_, metric)
    dgm = mon.diagram_
    assert dgm.shape == (X.shape[0], 2) and np.all(dgm[:, 0] == 0) and np.isinf(dgm[-1, 1])


def test_fuzz_updates_equal_from_scratch_exactly():
    rng = np.random.default_rng(20261123)
    counts = {"incremental": 0, "pairs": 0, "work": 0, "scale": 0, "updates": 0, "still": 0}
    for _ in range(N_SEQUENCES):
        n = int(rng.integers(2, N_MAX + 1))
        d = int(rng.integers(1, D_MAX + 1))
        style = ("normal", "grid", "dup", "scaled")[rng.integers(0, 4)]
        metric = "cosine" if rng.random() < 0.2 else "euclidean"
        X = make_points(rng, n, d, style)
        if metric == "cosine":
            X = fix_cosine(X)
        # Half the sequences never fall back on work, so large edits exercise the repair too.
        frac = math.inf if rng.random() < 0.5 else 0.5
        mon = MorseMonitor(scale=float(rng.choice([0.5, 1.0, 2.0])), metric=metric,
                           rebuild_fraction=frac).initialize(X)  # fmt: skip
        for _ in range(int(rng.integers(1, 3))):
            if rng.random() < 0.7:
                k = int(rng.integers(1, max(1, n // 8) + 1))
            else:
                k = int(rng.integers(1, n + 1))
            X = edit(rng, X, k, style)
            if metric == "cosine":
                X = fix_cosine(X)
            mon.update(X)
            assert_exact(mon, X, metric)
            if n <= 60 and counts["updates"] % 10 == 0:
                # and, independently of the library's own rebuild, the naive Kruskal twin
                np.testing.assert_allclose(
                    mon.deaths_, naive.kruskal_deaths(X, metric), rtol=1e-9, atol=1e-300
                )
            s = mon.stats_
            counts["updates"] += 1
            counts["still"] += s["moved_rows"] == 0
            counts["incremental"] += not s["fell_back"] and s["moved_rows"] > 0
            counts["pairs"] += s["piece_pairs"] > 0
            counts[s["reason"]] = counts.get(s["reason"], 0) + 1
    # The test must exercise every path, not only the fallback.
    moving = counts["updates"] - counts["still"]
    assert counts["incremental"] > 0.3 * moving
    assert counts["pairs"] > 0.05 * moving
    assert counts["work"] > 0 and counts["scale"] > 0


def test_matches_naive_twin_and_ripser():
    from ripser import ripser

    rng = np.random.default_rng(7)
    for case in range(8 if PURE_PYTHON else 30):
        n = int(rng.integers(2, 20 if PURE_PYTHON else 120))
        d = int(rng.integers(1, 6))
        n += n == d  # ripser warns on square input (it may be a distance matrix)
        X = make_points(rng, n, d, ("normal", "grid", "dup")[case % 3])
        mon = MorseMonitor(scale=1.0).initialize(X)
        for _ in range(3):
            X = edit(rng, X, int(rng.integers(1, n + 1)), "normal")
            mon.update(X)
        deaths = mon.deaths_
        np.testing.assert_allclose(deaths, naive.kruskal_deaths(X), rtol=1e-12, atol=0)
        ref = ripser(X, maxdim=0)["dgms"][0]
        assert np.isinf(ref[-1, 1])
        # ripser computes distances in float32 (duplicates come out ~1e-8 or as no bar at all)
        theirs = np.sort(ref[:-1, 1])
        np.testing.assert_allclose(deaths[deaths > 1e-6], theirs[theirs > 1e-6], rtol=2e-6)


@settings(max_examples=25 if PURE_PYTHON else 150, deadline=None)
@given(
    pts=st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3)), min_size=2, max_size=25),
    moves=st.lists(
        st.tuples(st.integers(0, 24), st.integers(-3, 3), st.integers(-3, 3)),
        min_size=1,
        max_size=10,
    ),
)
def test_property_grid_points_with_ties(pts, moves):
    X = np.array(pts, dtype=np.float64)
    mon = MorseMonitor(scale=1.0, rebuild_fraction=math.inf).initialize(X)
    for row, a, b in moves:
        X = X.copy()
        X[row % X.shape[0]] = (a, b)
        mon.update(X)
        assert_exact(mon, X, "euclidean")
        assert sorted(mon.pairs_.vertex.tolist()) == list(range(1, X.shape[0]))


def test_add_and_remove_points_fuzz():
    rng = np.random.default_rng(3)
    for _ in range(30 if PURE_PYTHON else 300):
        n = int(rng.integers(1, 20 if PURE_PYTHON else 150))
        d = int(rng.integers(1, 6))
        style = ("normal", "grid", "dup")[rng.integers(0, 3)]
        metric = "cosine" if rng.random() < 0.2 else "euclidean"
        X = make_points(rng, n, d, style)
        X = fix_cosine(X) if metric == "cosine" else X
        mon = MorseMonitor(scale=1.0, metric=metric, rebuild_fraction=math.inf).initialize(X)
        assert mon.critical_edges_ >= 0  # reading it starts the incremental edge count
        for _ in range(3):
            if rng.random() < 0.5 or X.shape[0] == 1:
                A = make_points(rng, int(rng.integers(1, 6)), d, style)
                A = fix_cosine(A) if metric == "cosine" else A
                X = np.vstack([X, A])
                mon.add_points(A)
            else:
                idx = rng.choice(X.shape[0], size=int(rng.integers(1, X.shape[0])), replace=False)
                X = np.delete(X, idx, axis=0)
                mon.remove_points(idx)
            assert_exact(mon, X, metric)
            if X.shape[0] > 40:
                continue  # the naive edge count is O(n^2) Python
            D = naive.pairwise(X, metric)
            assert mon.critical_edges_ == naive_morse.edges_within(D, 1.0) - (
                X.shape[0] - naive.betti0(X, 1.0, metric)
            )


def test_remove_points_accepts_negative_indices_and_rejects_bad_ones():
    X = np.arange(12.0).reshape(6, 2)
    mon = MorseMonitor(scale=1.0).initialize(X)
    before = mon.state_dict()
    for bad, exc in [([6], InputError), ([-7], InputError), ([0.5], InputTypeError),
                     (list(range(6)), InputError)]:  # fmt: skip
        with pytest.raises(exc, match="indices"):
            mon.remove_points(bad)
        assert_same_state(before, mon.state_dict())
    mon.remove_points([-1, 0])
    assert_exact(mon, X[1:5], "euclidean")


def test_critical_edges_and_betti0_against_naive_while_rows_move():
    rng = np.random.default_rng(11)
    n = 15 if PURE_PYTHON else 60
    X = rng.normal(size=(n, 3))
    mon = MorseMonitor(scale=1.2).initialize(X)
    for t in range(6):
        D = naive.pairwise(X)
        assert mon.betti0_ == naive.betti0(X, 1.2)
        assert mon.critical_edges_ == naive_morse.edges_within(D, 1.2) - (n - mon.betti0_)
        k = 1 + t % 3 if t < 5 else n // 2  # the last edit is too large for the incremental count
        X = edit(rng, X, k, "normal")
        mon.update(X)


def test_pairs_are_the_elder_rule_gradient_pairing():
    rng = np.random.default_rng(5)
    X = make_points(rng, 40, 3, "grid")
    mon = MorseMonitor(scale=1.0).initialize(X)
    for _ in range(3):
        X = edit(rng, X, 5, "grid")
        mon.update(X)
        p = mon.pairs_
        assert p.vertex.tolist() == naive_morse.elder_pairs(40, p.i.tolist(), p.j.tolist())
        assert np.array_equal(p.death, mon.deaths_)
        direct = np.sqrt(((X[p.i] - X[p.j]) ** 2).sum(axis=1))
        np.testing.assert_allclose(p.death, direct, rtol=1e-13)


def test_tolerance_bound_bottleneck_at_most_two_delta():
    import persim

    rng = np.random.default_rng(17)
    skipped = 0
    for case in range(20 if PURE_PYTHON else 120):
        metric = "cosine" if case % 4 == 3 else "euclidean"
        n = int(rng.integers(2, 20 if PURE_PYTHON else 100))
        d = int(rng.integers(1, 5))
        delta = float(rng.choice([0.01, 0.05, 0.2]))
        X = fix_cosine(rng.normal(size=(n, d)))
        mon = MorseMonitor(scale=1.0, tolerance=delta, metric=metric).initialize(X)
        for _ in range(5):
            X = fix_cosine(X + rng.normal(size=X.shape) * delta * rng.choice([0.1, 0.5, 2.0]))
            mon.update(X)
            exact = scratch_deaths(X, metric)
            assert naive_morse.sorted_matching_distance(mon.deaths_, exact) <= 2 * delta
            skipped += mon.stats_["moved_rows"] < n
        if case % 10 == 0:
            a = mon.diagram_[:-1]
            b = np.column_stack([np.zeros_like(exact), exact])
            assert persim.bottleneck(a, b) <= 2 * delta + 1e-12
    assert skipped > 50 if not PURE_PYTHON else skipped > 5


def test_tolerance_bound_is_tight():
    # Two rows each drift by just under delta, away from each other: the reported death stays 1,
    # the exact one is 1 + 2 delta' -> the bound 2 delta is attained in the limit.
    delta = 0.1
    mon = MorseMonitor(scale=0.5, tolerance=delta).initialize([[0.0], [1.0]])
    mon.update([[-0.0999], [1.0999]])
    assert mon.stats_["moved_rows"] == 0
    gap = abs(mon.deaths_[0] - scratch_deaths(np.array([[-0.0999], [1.0999]]))[0])
    assert 0.199 < gap <= 2 * delta


def test_tolerance_zero_detects_every_bitwise_change():
    X = np.random.default_rng(0).normal(size=(50, 4))
    mon = MorseMonitor(scale=1.0).initialize(X)
    Y = X.copy()
    Y[7, 2] = np.nextafter(Y[7, 2], np.inf)
    mon.update(Y)
    assert mon.stats_["moved_rows"] == 1
    assert_exact(mon, Y, "euclidean")


def test_fallback_rules_are_reported_and_exact():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 16))
    mon = MorseMonitor(scale=1.0, rebuild_fraction=1e-6).initialize(X)
    X[3] += 0.01
    mon.update(X)
    assert mon.stats_["fell_back"] and mon.stats_["reason"] == "work"
    assert_exact(mon, X, "euclidean")
    mon = MorseMonitor(scale=1.0).initialize(X)
    X[5] = 100.0  # the largest |coordinate| crosses a power of two
    mon.update(X)
    assert mon.stats_["reason"] == "scale"
    assert_exact(mon, X, "euclidean")
    X[6] += 1e-3
    mon.update(X)
    assert not mon.stats_["fell_back"] and mon.stats_["edges_examined"] < 300 * 299 / 2


def test_one_and_two_points_and_no_move():
    mon = MorseMonitor(scale=1.0).initialize([[1.0, 2.0]])
    assert mon.diagram_.tolist() == [[0.0, math.inf]] and mon.betti0_ == 1
    mon.update([[3.0, 2.0]])
    assert mon.critical_edges_ == 0
    mon.add_points([[3.0, 2.5]])
    assert mon.deaths_.tolist() == [0.5] and mon.betti0_ == 1
    mon.update([[3.0, 2.0], [3.0, 2.5]])
    assert mon.stats_["moved_rows"] == 0 and not mon.changed_


def test_changed_flag_follows_change_threshold():
    X = np.array([[0.0], [1.0], [3.0]])
    mon = MorseMonitor(scale=1.5, change_threshold=0.1).initialize(X)
    mon.update([[0.0], [1.05], [3.0]])
    assert not mon.changed_  # deaths moved by 0.05 and beta0 kept
    mon.update([[0.0], [1.5], [3.0]])
    assert mon.changed_


def test_default_scale_is_median_pairwise_distance():
    from scipy.spatial.distance import pdist

    X = np.random.default_rng(1).normal(size=(30, 3))
    mon = MorseMonitor().initialize(X)
    assert mon.scale_ == pytest.approx(float(np.median(pdist(X))), rel=1e-15)
    assert mon.state_dict()["state"]["scale_"] == mon.scale_


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], np.ndarray):
            assert np.array_equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_bad_input_raises_and_leaves_state_unchanged():
    X = np.random.default_rng(0).normal(size=(10, 3))
    mon = MorseMonitor(scale=1.0, metric="cosine").initialize(X)
    before = mon.state_dict()
    bad_nan = X.copy()
    bad_nan[2, 1] = np.nan
    bad_zero = X.copy()
    bad_zero[4] = 0.0
    cases = [
        (X[:9], "X_new has 9 rows, expected n=10"),
        (X[:, :2], "X_new has 2 columns, expected d=3"),
        (bad_nan, "X_new must be finite"),
        (bad_zero, "all-zero row"),
        ("abc", "X_new must be a 2-D array"),
    ]
    for bad, msg in cases:
        with pytest.raises((InputError, InputTypeError), match=msg):
            mon.update(bad)
        assert_same_state(before, mon.state_dict())
    with pytest.raises(InputError, match="X_add has 2 columns, expected d=3"):
        mon.add_points(X[:2, :2])
    with pytest.raises(InputError, match="X_add must be finite"):
        mon.add_points(bad_nan[:3])
    assert_same_state(before, mon.state_dict())
    with pytest.raises(StreamtopoError, match="initialize"):
        MorseMonitor().update(X)
    bad = copy.deepcopy(before)
    src = bad["state"]["_tree_state"]["src"]
    src["data"], src["shape"] = src["data"][:-1], [len(src["data"]) - 1]
    other = MorseMonitor(scale=1.0, metric="cosine")
    with pytest.raises(InputError, match="state tree arrays"):
        other.load_state_dict(bad)
    assert_same_state(MorseMonitor(scale=1.0, metric="cosine").state_dict(), other.state_dict())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scale": -1.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"tolerance": -0.1}, "tolerance"),
        ({"change_threshold": "x"}, "change_threshold"),
        ({"metric": "precomputed"}, "metric"),
        ({"rebuild_fraction": 0.0}, "rebuild_fraction"),
        ({"writer": 3}, "writer"),
    ],
)
def test_constructor_validates(kwargs, match):
    with pytest.raises((InputError, InputTypeError), match=match):
        MorseMonitor(**kwargs)


def test_writer_rows_are_plain_scalars():
    rows = []
    mon = MorseMonitor(scale=1.0, writer=rows.append).initialize([[0.0], [2.0]])
    mon.update([[0.0], [0.5]])
    assert [r["step"] for r in rows] == [0, 1]
    last = rows[-1]
    assert last["monitor"] == "morse" and last["betti0"] == 1 and last["h0"] == 0.5
    for key, value in last.items():
        if key != "config":
            assert isinstance(value, (int, float, str, bool)), key
    json.dumps(last["config"])
