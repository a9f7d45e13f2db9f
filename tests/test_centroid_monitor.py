"""CentroidMonitor against its naive twin (tests/naive_centroid.py) and its contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.cluster.hierarchy as sch

from streamtopo.errors import InputError, InputTypeError
from streamtopo.monitors.centroid import CentroidMonitor, GapStatus, difficulty
from streamtopo.status import State
from tests import naive_centroid as nc

# The fractional group coefficient of size matching is ill-conditioned when it is close to 1
# (n_eff(phi) is flat there), so both the monitor and the twin carry ~1e-8 relative error in
# matched quantities; unmatched ones agree to 1e-12.
RTOL_MATCHED = 1e-8


def _blobs(rng, K, d, n, spread=1.0, means=None):
    M = rng.normal(size=(K, d)) if means is None else means
    y = rng.integers(0, K, n)
    return M[y] + spread * rng.normal(size=(n, d)), y, M


def _feed(mon, X, y, split, batch):
    for s in range(0, len(y), batch):
        mon.update(X[s : s + batch], y[s : s + batch], split=split)


def _same_status(a, b):
    """Field-by-field equality of two GapStatus with NaN == NaN."""
    for f in GapStatus.__slots__:
        va, vb = getattr(a, f), getattr(b, f)
        if isinstance(va, float) and math.isnan(va):
            assert isinstance(vb, float) and math.isnan(vb), f
        else:
            assert va == vb, f
    return True


def _state_equal(a, b):
    assert a.keys() == b.keys()
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, dict):
            _state_equal(va, vb)
        elif isinstance(va, (np.ndarray, list)) and k != "log":
            np.testing.assert_array_equal(
                np.asarray(va, dtype=object), np.asarray(vb, dtype=object)
            )
        else:
            assert va == vb or (va != va and vb != vb), k


# ---------------------------------------------------------------- against the naive twin
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("matched", ["min", None, 40])
def test_matches_naive_twin(seed, matched):
    rng = np.random.default_rng(seed)
    K, d = 7, 6
    Xtr, ytr, M = _blobs(rng, K, d, 900, spread=1.5)
    Xte, yte, _ = _blobs(rng, K, d, 220, spread=1.5, means=M)
    mon = CentroidMonitor(K, matched_size=matched, seed=seed)
    _feed(mon, Xtr, ytr, "train", 97)
    _feed(mon, Xte, yte, "test", 64)
    st = mon.check()
    ref = nc.monitor_check(Xtr, ytr, Xte, yte, R=8, seed=seed, matched=matched)
    rtol = 1e-12 if matched is None else RTOL_MATCHED
    for key in ("h0_train", "h0_test", "n_train"):
        assert getattr(st, key) == pytest.approx(ref[key], rel=rtol), key
    assert st.h0_gap == pytest.approx(ref["h0_gap"], abs=rtol * ref["h0_train"])
    assert st.gap_noise == pytest.approx(ref["gap_noise"], rel=1e-8)
    assert st.h0_train_full == pytest.approx(ref["h0_train_full"], rel=1e-12)
    deaths = np.sort([w for _, _, w in mon.confusion_pairs("train")])
    np.testing.assert_allclose(deaths, ref["deaths_train_full"], rtol=1e-9)
    assert st.size_matched == (matched is not None)


def test_nan_and_zero_rows_dropped_and_counted_like_the_twin():
    rng = np.random.default_rng(5)
    Xtr, ytr, M = _blobs(rng, 4, 3, 300)
    Xte, yte, _ = _blobs(rng, 4, 3, 90, means=M)
    Xtr[[3, 17]] = np.nan
    Xtr[40] = np.inf
    Xte[5] = 0.0
    mon = CentroidMonitor(4)
    assert mon.update(Xtr, ytr) == 297
    mon.update(Xte, yte, split="test")
    st = mon.check()
    ref = nc.monitor_check(Xtr, ytr, Xte, yte)
    assert st.dropped_rows == 4 and "4 row(s)" in st.reason
    assert st.h0_test == pytest.approx(ref["h0_test"], rel=RTOL_MATCHED)
    assert mon.check(Xtr[:30], ytr[:30], Xte[10:60], yte[10:60]).dropped_rows == 2  # per check


def test_huge_and_tiny_rows_normalise_exactly():
    rng = np.random.default_rng(2)
    X, y, _ = _blobs(rng, 3, 4, 120)
    scale = np.where(rng.random(120) < 0.5, 1e-300, 1e300)[:, None]
    a, b = CentroidMonitor(3), CentroidMonitor(3)
    sa = a.check(X, y, X, y)
    sb = b.check(X * scale, y, X * scale, y)
    assert sb.h0_train == pytest.approx(sa.h0_train, rel=1e-12)


# ---------------------------------------------------------------- streaming, invariances
def test_streaming_equals_one_shot_on_the_concatenation():
    rng = np.random.default_rng(3)
    Xtr, ytr, M = _blobs(rng, 5, 8, 600)
    Xte, yte, _ = _blobs(rng, 5, 8, 150, means=M)
    a, b = CentroidMonitor(5), CentroidMonitor(5)
    for _ in range(3):
        _feed(a, Xtr, ytr, "train", 33)
        _feed(a, Xte, yte, "test", 7)
        sa = a.check(test_loss=1.0)
        sb = b.check(Xtr, ytr, Xte, yte, test_loss=1.0)
        for f in GapStatus.__slots__:
            va, vb = getattr(sa, f), getattr(sb, f)
            if isinstance(va, float):
                assert va == pytest.approx(vb, rel=1e-12, nan_ok=True), f
            else:
                assert va == vb, f
    for pa, pb in zip(a.confusion_pairs(), b.confusion_pairs(), strict=True):
        assert pa[:2] == pb[:2] and pa[2] == pytest.approx(pb[2], rel=1e-12)


def test_class_permutation_permutes_confusion_pairs():
    rng = np.random.default_rng(4)
    K = 6
    Xtr, ytr, M = _blobs(rng, K, 5, 500)
    Xte, yte, _ = _blobs(rng, K, 5, 200, means=M)
    names = [f"c{i}" for i in range(K)]
    perm = rng.permutation(K)  # class c is called perm[c] in the second monitor
    inv_names = [None] * K
    for c in range(K):
        inv_names[perm[c]] = names[c]
    a = CentroidMonitor(K, class_names=names)
    b = CentroidMonitor(K, class_names=inv_names)
    sa = a.check(Xtr, ytr, Xte, yte)
    sb = b.check(Xtr, perm[ytr], Xte, perm[yte])
    assert sa.h0_gap == pytest.approx(sb.h0_gap, rel=1e-9, abs=1e-12)
    pa = [(frozenset((x, y)), w) for x, y, w in a.confusion_pairs("test")]
    pb = [(frozenset((x, y)), w) for x, y, w in b.confusion_pairs("test")]
    assert [p for p, _ in pa] == [p for p, _ in pb]
    np.testing.assert_allclose([w for _, w in pa], [w for _, w in pb], rtol=1e-12)


def test_two_identical_classes_merge_first_at_distance_zero():
    rng = np.random.default_rng(6)
    X, y, _ = _blobs(rng, 5, 4, 400, spread=0.2)
    twin = X[y == 1]
    X2 = np.vstack([X[y != 3], twin])
    y2 = np.concatenate([y[y != 3], np.full(len(twin), 3)])
    mon = CentroidMonitor(5, class_names=list("abcde"))
    mon.check(X2, y2, X2, y2)
    a, b, w = mon.confusion_pairs(k=1)[0]
    assert {a, b} == {"b", "d"} and w == pytest.approx(0.0, abs=1e-15)
    assert mon.dendrogram_text().splitlines()[0] == "d=0.0000 -> [b, d]"


def test_linkage_is_valid_scipy_and_heights_are_the_deaths():
    X, y = _blobs(np.random.default_rng(7), 8, 5, 400)[:2]
    mon = CentroidMonitor(8)
    mon.check(X, y, X, y)
    Z = mon.linkage("train")
    assert sch.is_valid_linkage(Z)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    deaths = nc.h0_and_deaths(np.stack([U[y == c].sum(0) for c in range(8)]))[1]
    np.testing.assert_allclose(Z[:, 2], deaths, rtol=1e-9)
    leaves = sch.dendrogram(Z, no_plot=True, labels=list(mon.linkage_classes_))["ivl"]
    assert sorted(leaves) == [str(c) for c in range(8)]


# ---------------------------------------------------------------- rules
def _shifted(rng, M, n, spread, pull=0.0):
    """Rows around the means M; ``pull`` adds a shared offset that narrows the angles between
    the classes (pull > 0: centroid directions closer together, smaller H0)."""
    y = rng.integers(0, M.shape[0], n)
    common = pull * np.linalg.norm(M, axis=1).mean() * np.ones(M.shape[1]) / np.sqrt(M.shape[1])
    return M[y] + common + spread * rng.normal(size=(n, M.shape[1])), y


def test_gap_sign_follows_which_split_is_more_separated():
    rng = np.random.default_rng(8)
    M = rng.normal(size=(6, 10))
    Xtr, ytr = _shifted(rng, M, 3000, 1.0)
    Xte, yte = _shifted(rng, M, 3000, 1.0, pull=1.0)  # test centroids closer together
    st = CentroidMonitor(6).check(Xtr, ytr, Xte, yte)
    assert st.h0_gap > 5 * st.gap_noise > 0
    st2 = CentroidMonitor(6).check(Xte, yte, Xtr, ytr)
    assert st2.h0_gap < -5 * st2.gap_noise


def test_seed_rule_alerts_one_sided_and_stops_after_truly_consecutive_alerts():
    rng = np.random.default_rng(9)
    M = rng.normal(size=(5, 10))
    mon = CentroidMonitor(5, rule="seed", matched_size=None)
    sts = []
    for pull in (0.0, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0, 0.0):
        # pull < 0: train classes pulled together, a large negative gap, never an alert
        Xtr, ytr = _shifted(rng, M, 1500, 1.0, pull=max(-pull, 0.0))
        Xte, yte = _shifted(rng, M, 1500, 1.0, pull=max(pull, 0.0))
        st = mon.check(Xtr, ytr, Xte, yte)
        assert st.alert == (st.h0_gap > 0.08) and st.reason.startswith("gap ")
        sts.append(st)
    assert [s.alert for s in sts] == [False, True, True, False, True, True, True, False]
    assert sts[3].h0_gap < -0.08
    assert [s.alert_streak for s in sts] == [0, 1, 2, 0, 1, 2, 3, 0]
    assert [s.should_stop for s in sts] == [False] * 6 + [True, False]
    assert sts[6].state == State.COLLAPSE and "3 consecutive alerts" in sts[6].reason
    assert mon.summary()["alerts"] == 5 and mon.summary()["first_alert_step"] == 2


def test_baseline_rule_is_two_sided_with_warmup_baseline_and_patience():
    rng = np.random.default_rng(10)
    M = rng.normal(size=(6, 12))
    mon = CentroidMonitor(6, warmup=1, baseline_checks=2, patience=2)
    # +: test pulled together (gap rises); -: train pulled together (gap falls)
    seq = [0, 0, 0, 0, -1, -1, 0, 1, 1]
    out = []
    for p in seq:
        Xtr, ytr = _shifted(rng, M, 2000, 1.0, pull=max(-p, 0))
        Xte, yte = _shifted(rng, M, 2000, 1.0, pull=max(p, 0))
        out.append(mon.check(Xtr, ytr, Xte, yte))
    assert [s.reason.split(" ")[0] for s in out[:3]] == ["warmup", "baseline", "baseline"]
    assert not any(s.alert for s in out[:4]) and out[3].state == State.HEALTHY
    assert out[4].alert and out[4].direction == "falling" and out[4].state == State.WATCH
    assert out[5].alert and out[5].should_stop and out[5].state == State.COLLAPSE
    assert not out[6].alert and out[6].alert_streak == 0 and not out[6].should_stop
    assert out[7].alert and out[7].direction == "rising" and out[7].alert_streak == 1
    assert out[8].should_stop and "consecutive" in out[8].reason
    assert all(math.isfinite(s.deviation) for s in out[3:])


def test_no_false_alarms_on_one_distribution_with_unequal_split_sizes():
    """Same distribution on both splits, 10x more train rows: the size-matched, noise-aware
    rule stays quiet and the matched gap is unbiased, while the unmatched gap is biased on
    this geometry (h0 of centroids from fewer rows is larger: the reason matching exists)."""
    K, d, n_runs, n_checks = 8, 12, 30, 6
    M = 0.35 * np.random.default_rng(0).normal(size=(K, d))
    alerts = 0
    raw_gaps, matched_gaps, noises = [], [], []
    ytr, yte = np.repeat(np.arange(K), 200), np.repeat(np.arange(K), 20)
    for seed in range(n_runs):
        rng = np.random.default_rng(100 + seed)
        mon = CentroidMonitor(K, warmup=0, baseline_checks=2, seed=seed)
        raw = CentroidMonitor(K, matched_size=None, seed=seed)
        for _ in range(n_checks):
            Xtr = M[ytr] + rng.normal(size=(ytr.size, d))
            Xte = M[yte] + rng.normal(size=(yte.size, d))
            st = mon.check(Xtr, ytr, Xte, yte)
            alerts += st.alert
            matched_gaps.append(st.h0_gap)
            noises.append(st.gap_noise)
            raw_gaps.append(raw.check(Xtr, ytr, Xte, yte).h0_gap)
    assert alerts / (n_runs * (n_checks - 2)) <= 0.05, alerts
    raw_gaps, matched_gaps = np.array(raw_gaps), np.array(matched_gaps)

    def se(g):
        return g.std() / math.sqrt(g.size)

    assert raw_gaps.mean() < -6 * se(raw_gaps)
    assert abs(matched_gaps.mean()) < 3 * se(matched_gaps)
    # the delta-method noise is of the size of the real spread of the gap (measured: 1.46x)
    ratio = np.median(noises) / matched_gaps.std()
    assert 0.5 < ratio < 2.0, ratio


def test_test_loss_patience_beside_the_gap():
    X, y = _blobs(np.random.default_rng(11), 4, 5, 400)[:2]
    mon = CentroidMonitor(4, patience=2)
    losses = [1.0, 0.8, 0.9, 0.7, 0.75, float("nan")]
    sts = [mon.check(X, y, X, y, test_loss=v) for v in losses]
    assert [s.loss_checks_since_best for s in sts] == [0, 0, 1, 0, 1, 2]
    assert [s.loss_stop for s in sts] == [False] * 5 + [True]
    assert sts[2].state == State.WATCH and sts[5].state == State.COLLAPSE
    assert "not finite" in sts[5].reason and sts[5].best_test_loss == 0.7
    assert mon.should_stop and not sts[5].gap_stop


# ---------------------------------------------------------------- EMA
def test_ema_converges_to_the_batch_centroid_and_tracks_a_change():
    rng = np.random.default_rng(12)
    M = rng.normal(size=(3, 6))
    mon = CentroidMonitor(3, mode="ema", half_life=10, groups=2)
    big, yb = _shifted(rng, M, 200_000, 1.0)
    U = big / np.linalg.norm(big, axis=1, keepdims=True)
    truth = np.stack([U[yb == c].mean(0) for c in range(3)])
    truth /= np.linalg.norm(truth, axis=1, keepdims=True)
    for _ in range(200):
        for split in ("train", "test"):
            mon.update(*_shifted(rng, M, 256, 1.0), split=split)
    mon.check()
    err = 1 - np.sum(mon.centroids_("train") * truth, axis=1)
    assert err.max() < 2e-3
    M2 = np.roll(M, 1, axis=0)  # classes swap their means
    for _ in range(100):  # 10 half-lives
        mon.update(*_shifted(rng, M2, 256, 1.0), split="train")
    mon.check()
    err2 = 1 - np.sum(mon.centroids_("train") * np.roll(truth, 1, axis=0), axis=1)
    assert err2.max() < 2e-3


# ---------------------------------------------------------------- bad input
BAD_UPDATES = [
    (lambda X, y: (X, y + 3), {}, InputError, r"labels must be in \[0, n_classes=3\)"),
    (lambda X, y: (X, -y - 1), {}, InputError, "out of range"),
    (lambda X, y: (X, y.astype(float)), {}, InputTypeError, "labels must be integers"),
    (lambda X, y: (X, y[:-1]), {}, InputError, "labels must have shape"),
    (lambda X, y: (X[:, :3], y), {}, InputError, "has 3 feature columns, expected 4"),
    (lambda X, y: (X[:0], y[:0]), {}, InputError, "empty batch"),
    (lambda X, y: (X[0], y), {}, InputError, "2-D"),
    (lambda X, y: ("abc", y), {}, InputTypeError, "2-D array"),
    (lambda X, y: (X.astype(complex), y), {}, InputTypeError, "real numbers"),
    (lambda X, y: (X, y), {"split": "val"}, InputError, "split must be one of"),
]


@pytest.mark.parametrize("make,kw,exc,match", BAD_UPDATES)
def test_bad_update_raises_and_changes_nothing(make, kw, exc, match):
    X, y = _blobs(np.random.default_rng(15), 3, 4, 60)[:2]
    mon = CentroidMonitor(3)
    mon.update(X, y)
    before = mon.state_dict()
    with pytest.raises(exc, match=match):
        mon.update(*make(X, y), **kw)
    _state_equal(mon.state_dict(), before)


def test_bad_one_shot_check_changes_nothing():
    X, y = _blobs(np.random.default_rng(16), 3, 4, 60)[:2]
    mon = CentroidMonitor(3)
    mon.update(X, y)
    before = mon.state_dict()
    with pytest.raises(InputError, match="labels must be in"):
        mon.check(X, y, X, y + 5)
    with pytest.raises(InputError, match="all four"):
        mon.check(X, y)
    with pytest.raises(InputTypeError, match="test_loss"):
        mon.check(X, y, X, y, test_loss="low")
    _state_equal(mon.state_dict(), before)


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"n_classes": 1}, "n_classes"),
        ({"class_names": ["a"]}, "class_names has 1"),
        ({"rule": "z"}, "rule must be"),
        ({"mode": "window"}, "mode must be"),
        ({"groups": 1}, "groups"),
        ({"half_life": 0}, "half_life"),
        ({"matched_size": "max"}, "matched_size"),
        ({"k": float("nan")}, "k must be finite"),
        ({"history": "val"}, "history"),
    ],
)
def test_bad_config(kw, match):
    args = {"n_classes": 3, **kw}
    with pytest.raises((InputError, InputTypeError), match=match):
        CentroidMonitor(**args)


def test_fewer_than_two_classes_is_a_flagged_status_not_an_error():
    X, y = _blobs(np.random.default_rng(17), 3, 4, 90)[:2]
    mon = CentroidMonitor(3, class_names=["a", "b", "c"])
    st = mon.check(X, y, X[y == 0], y[y == 0])
    assert not st.valid and math.isnan(st.h0_gap) and not st.alert
    assert "need at least 2" in st.reason and st.missing_classes == ("b", "c")
    with pytest.raises(InputError, match="no valid check"):
        mon.confusion_pairs()
    st = mon.check(X, y, X[y < 2], y[y < 2])  # two classes: valid, one missing
    assert st.valid and st.missing_classes == ("c",)
    assert {a for p in mon.confusion_pairs() for a in p[:2]} == {"a", "b"}
    assert not CentroidMonitor(3).check().valid  # nothing seen at all


def test_unmatchable_size_ratio_is_flagged():
    rng = np.random.default_rng(18)
    M = rng.normal(size=(3, 5))
    Xtr, ytr = _shifted(rng, M, 3000, 1.0)
    Xte, yte = _shifted(rng, M, 60, 1.0)  # 50x fewer than train, R = 4 groups
    st = CentroidMonitor(3, groups=4).check(Xtr, ytr, Xte, yte)
    assert not st.size_matched and "sizes not matched" in st.reason


# ---------------------------------------------------------------- outputs
def test_writer_rows_are_scalar_with_config():
    rows = []
    X, y = _blobs(np.random.default_rng(19), 3, 4, 90)[:2]
    mon = CentroidMonitor(3, writer=rows.append)
    mon.check(X, y, X, y, test_loss=0.5)
    mon.check(X, y, X, y)
    assert [r["step"] for r in rows] == [1, 2]
    r = rows[0]
    assert r["monitor"] == "centroid" and isinstance(r["wall_time"], float)
    for k in ("h0_train", "h0_test", "h0_gap", "gap_noise", "alert", "state", "reason"):
        assert k in r
    assert all(isinstance(v, (int, float, str, bool)) for k, v in r.items() if k != "config")
    json.dumps(r["config"])
    assert r["config"] == rows[1]["config"]


def test_merge_order_history_matches_confusion_pairs_per_check():
    rng = np.random.default_rng(20)
    M = rng.normal(size=(4, 6))
    mon = CentroidMonitor(4, class_names=list("wxyz"))
    per_check = []
    for _ in range(3):
        mon.check(*_shifted(rng, M, 200, 1.0), *_shifted(rng, M, 200, 1.0))
        per_check.append(mon.confusion_pairs())
    h = mon.merge_order_history()
    assert h.columns == ["step", "class_a", "class_b", "pair", "rank", "distance"]
    assert h.height == 9
    for step, pairs in enumerate(per_check, start=1):
        sub = h.filter(h["step"] == step).sort("rank")
        assert list(zip(sub["class_a"], sub["class_b"], sub["distance"], strict=True)) == pairs


def test_difficulty_thresholds_and_errors():
    assert difficulty(9 * 0.40, 10) == "easy"
    assert difficulty(9 * 0.399, 10) == "medium"
    assert difficulty(9 * 0.15, 10) == "medium"
    assert difficulty(9 * 0.149, 10) == "hard"
    with pytest.raises(InputError):
        difficulty(-1.0, 10)
    with pytest.raises(InputError):
        difficulty(1.0, 1)


# ---------------------------------------------------------------- real data
def test_digits_confusion_pairs_are_sensible_and_deterministic():
    from streamtopo.data import load_digits

    X, y = load_digits()
    Xtr, ytr, Xte, yte = X[:1200], y[:1200], X[1200:], y[1200:]
    a, b = CentroidMonitor(10), CentroidMonitor(10)
    a.check(Xtr, ytr, Xte, yte)
    b.check(Xtr, ytr, Xte, yte)
    pairs = a.confusion_pairs()
    assert pairs == b.confusion_pairs() and len(pairs) == 9
    # independent view: a nearest-centroid classifier's symmetric confusion counts on test
    C = np.stack([Xtr[ytr == c].mean(0) for c in range(10)])
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    pred = np.argmax((Xte / np.linalg.norm(Xte, axis=1, keepdims=True)) @ C.T, axis=1)
    conf = np.zeros((10, 10))
    np.add.at(conf, (yte, pred), 1)
    conf += conf.T
    mean_all = conf[np.triu_indices(10, 1)].mean()
    first = [conf[int(p), int(q)] for p, q, _ in pairs[:3]]
    assert np.mean(first) > 2 * mean_all, (first, mean_all)


def test_history_none_builds_the_all_train_tree_lazily_with_the_same_result():
    rng = np.random.default_rng(22)
    Xtr, ytr, M = _blobs(rng, 6, 5, 900)
    Xte, yte, _ = _blobs(rng, 6, 5, 120, means=M)
    a = CentroidMonitor(6)
    b = CentroidMonitor(6, history=None)
    sa, sb = a.check(Xtr, ytr, Xte, yte), b.check(Xtr, ytr, Xte, yte)
    assert math.isfinite(sa.h0_train_full) and math.isnan(sb.h0_train_full)
    assert sa.h0_gap == sb.h0_gap and sa.gap_noise == sb.gap_noise
    c = CentroidMonitor(6, history=None)
    c.load_state_dict(b.state_dict())  # before the lazy tree exists
    assert b.confusion_pairs() == a.confusion_pairs() == c.confusion_pairs()
    assert b.merge_order_history().height == 0


def test_cli_centroid_prints_the_gap_and_the_merge_order(capsys):
    from streamtopo.app.cli import main

    assert main(["centroid", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "h0_gap=" in out and len([ln for ln in out.splitlines() if ln.startswith("d=")]) == 9
    with pytest.raises(SystemExit) as exc:  # refused by argparse, before any work
        main(["centroid", "--train-fraction", "1.5"])
    assert exc.value.code == 2
    assert "argument --train-fraction" in capsys.readouterr().err


def test_digits_random_splits_matched_gap_is_unbiased_and_noise_calibrated():
    """Real data, one distribution: random 150-row test sets of digits against the rest."""
    from streamtopo.data import load_digits

    X, y = load_digits()
    raw, matched, noise = [], [], []
    for seed in range(60):
        p = np.random.default_rng(seed).permutation(y.size)
        te, tr = p[:150], p[150:]
        st = CentroidMonitor(10, seed=seed).check(X[tr], y[tr], X[te], y[te])
        assert st.size_matched
        matched.append(st.h0_gap)
        noise.append(st.gap_noise)
        raw.append(CentroidMonitor(10, matched_size=None).check(X[tr], y[tr], X[te], y[te]).h0_gap)
    raw, matched = np.array(raw), np.array(matched)
    se = matched.std() / math.sqrt(matched.size)
    assert raw.mean() < -6 * raw.std() / math.sqrt(raw.size)  # measured: -0.084 (200 splits)
    assert abs(matched.mean()) < 3 * se  # measured: +0.001
    assert 0.7 < np.median(noise) / matched.std() < 1.6  # measured: 1.18


def test_a_class_in_one_group_borrows_the_other_sides_dispersion():
    rng = np.random.default_rng(23)
    Xtr, ytr, M = _blobs(rng, 4, 5, 800)
    Xte, yte, _ = _blobs(rng, 4, 5, 200, means=M)
    keep = (yte != 2) | (np.cumsum(yte == 2) == 1)  # a single test row of class 2
    st = CentroidMonitor(4).check(Xtr, ytr, Xte[keep], yte[keep])
    ref = nc.monitor_check(Xtr, ytr, Xte[keep], yte[keep])
    assert math.isfinite(st.gap_noise)
    assert st.gap_noise == pytest.approx(ref["gap_noise"], rel=1e-8)


def test_match_coefficients_against_the_closed_form_twin():
    from streamtopo.topology.centroid import effective_size, match_coefficients

    rng = np.random.default_rng(24)
    counts = rng.poisson(3.0, size=(8, 300)).astype(float) * (rng.random((8, 300)) < 0.7)
    target = rng.uniform(0.5, 1.2, 300) * counts.sum(0)
    phi = match_coefficients(counts, counts, target)
    ref = np.stack([nc._phi_for(counts[:, c], target[c]) for c in range(300)], axis=1)
    np.testing.assert_allclose(phi, ref, atol=1e-7)
    neff = effective_size((phi * counts).sum(0), (phi**2 * counts).sum(0))
    small = np.array([counts[counts[:, c] > 0, c].min() <= target[c] for c in range(300)])
    ok = small & (target < counts.sum(0))  # reachable: smallest non-empty group <= target
    np.testing.assert_allclose(neff[ok], target[ok], rtol=1e-9)
    assert ok.sum() > 100


def test_rows_round_trip_through_the_run_writer(tmp_path):
    from streamtopo.io import RunWriter, read_run

    rng = np.random.default_rng(25)
    M = rng.normal(size=(4, 6))
    statuses = []
    with RunWriter(tmp_path, run_id="c") as w:
        mon = CentroidMonitor(4, class_names=list("abcd"), writer=w, warmup=0, baseline_checks=1)
        for i in range(4):
            Xtr, ytr = _shifted(rng, M, 400, 1.0)
            Xte, yte = _shifted(rng, M, 100, 1.0, pull=float(i == 3))
            statuses.append(mon.check(Xtr, ytr, Xte[yte != 3], yte[yte != 3], test_loss=1.0 - i))
    df = read_run(w.run_dir, table="centroid").collect().sort("step")
    assert df["step"].to_list() == [1, 2, 3, 4]
    np.testing.assert_array_equal(df["h0_gap"].to_numpy(), [s.h0_gap for s in statuses])
    assert df["state"].to_list() == [str(s.state) for s in statuses]
    assert df["alert"].to_list() == [s.alert for s in statuses]
    assert df["missing_classes"].to_list() == ["d"] * 4
    assert df["reason"].to_list() == [s.reason for s in statuses]


def test_merge_adds_another_ranks_rows():
    rng = np.random.default_rng(26)
    Xtr, ytr, M = _blobs(rng, 5, 6, 600)
    Xte, yte, _ = _blobs(rng, 5, 6, 150, means=M)
    a, b = CentroidMonitor(5, seed=1), CentroidMonitor(5, seed=2)
    a.update(Xtr[:300], ytr[:300])
    b.update(Xtr[300:], ytr[300:])
    a.update(Xte[:70], yte[:70], split="test")
    b.update(Xte[70:], yte[70:], split="test")
    before_b = b.state_dict()
    a.merge(b)
    _state_equal(b.state_dict(), before_b)
    # the same rows with the merged group assignment, fed to one monitor through its state
    ref = CentroidMonitor(5, seed=1)
    ref.load_state_dict(a.state_dict())
    st = a.check()
    U = Xtr / np.linalg.norm(Xtr, axis=1, keepdims=True)
    full = np.stack([U[ytr == c].sum(0) for c in range(5)])
    assert st.h0_train_full == pytest.approx(nc.h0_and_deaths(full)[0], rel=1e-12)
    assert st.n_test == 150 and _same_status(st, ref.check())
    with pytest.raises(InputError, match="different configuration"):
        a.merge(CentroidMonitor(5, groups=4))
    c = CentroidMonitor(5)
    c.update(Xtr[:, :3], ytr)
    with pytest.raises(InputError, match="feature columns"):
        a.update(Xtr, ytr)
        a.merge(c)
