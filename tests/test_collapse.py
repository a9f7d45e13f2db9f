"""Collapse Index components, variants and CollapseMonitor against independent references."""

from __future__ import annotations

import itertools
import json
import math
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from streamtopo import CollapseMonitor, State, collapse_components, collapse_index
from streamtopo.errors import InputError, InputTypeError
from tests import naive_collapse

RNG = np.random.default_rng


def _rotation(d, seed):
    q, r = np.linalg.qr(RNG(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def _circle(n, d=3, r=1.0):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    X = np.zeros((n, d))
    X[:, 0], X[:, 1] = r * np.cos(t), r * np.sin(t)
    return X


# --- known geometries -------------------------------------------------------------------------


def test_isotropic_gaussian_is_low_and_full_rank():
    X = RNG(0).normal(size=(400, 8))
    ci, c = collapse_index(X)
    assert ci < 0.1
    assert c["rank"] == 8 and not c["rank_deficient"]
    assert 7.5 < c["effective_rank"] <= 8 and 7.0 < c["participation_ratio"] <= 8
    assert c["anisotropy"] < math.log1p(4.0)  # kappa of a 400 x 8 Gaussian is about 2
    assert c["flags"] == ("no_labels",)


def test_line_and_low_rank_subspace_are_high():
    iso = RNG(1).normal(size=(200, 8))
    line = np.outer(RNG(2).normal(size=200), RNG(3).normal(size=8)) + 5.0
    plane = RNG(4).normal(size=(200, 2)) @ RNG(5).normal(size=(2, 16))
    noisy = plane + 1e-6 * RNG(6).normal(size=plane.shape)
    for X in (line, plane):
        c = collapse_components(X)
        assert c["rank_deficient"] and "rank_deficient" in c["flags"]
        assert c["anisotropy"] == c["anisotropy_max"]  # lambda_min = 0 -> the top of the range
    c = collapse_components(line)
    assert c["rank"] == 1 and c["effective_rank"] == pytest.approx(1.0, abs=1e-6)
    assert c["n_h1_bars"] == 0 and c["beta1"] == 0
    c = collapse_components(noisy)
    assert c["rank"] == 16 and not c["rank_deficient"] and c["anisotropy"] > 20
    for variant in ("default", "seed000"):
        lo = collapse_index(iso, variant=variant)[0]
        hi = [collapse_index(X, variant=variant)[0] for X in (line, plane, noisy)]
        assert all(h > lo for h in hi), (variant, lo, hi)
    # seed002's Betti term is erratic: this 2-D Gaussian plane has a loop alive at the median
    # scale (beta1 = beta0 = 1), so seed002 scores it *below* the 8-D Gaussian (0.33 vs 0.47).
    ci_plane, c_plane = collapse_index(plane, variant="seed002")
    assert (c_plane["beta0"], c_plane["beta1"]) == (1, 1) and c_plane["scores"]["betti"] == 0.0
    assert ci_plane < collapse_index(iso, variant="seed002")[0]
    assert collapse_index(line)[0] == pytest.approx(1.0)
    assert collapse_index(line, variant="seed002")[0] == pytest.approx(1.0)
    # rank 2 of 16 is log(8)/log(16) = 75% of the (log) way to rank 1
    assert collapse_index(plane)[0] > 0.65 and collapse_index(noisy)[0] > 0.65
    assert collapse_index(iso, variant="seed002")[0] < 0.6


def test_circle_has_one_loop_at_the_median_scale():
    X = _circle(60)
    c = collapse_components(X)
    # median chord of a uniform circle is 2 sin(pi/4) = 1.414 < sqrt(3), where the loop dies
    assert 1.3 < c["scale"] < 1.5
    assert c["beta0"] == 1 and c["beta1"] == 1
    assert c["n_h1_bars"] >= 1 and math.isfinite(c["persistence_entropy"])
    assert collapse_components(X, scale=0.5)["beta1"] == 1
    small = collapse_components(X, scale=0.05)  # below the spacing 2 sin(pi/60) = 0.105
    assert small["beta0"] == 60 and small["beta1"] == 0
    assert collapse_components(X, scale=1.9)["beta1"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_betti_numbers_match_gudhi(seed):
    import gudhi  # in the dev extra: a missing install must fail, not skip

    X = RNG(seed).normal(size=(40, 2))
    for scale in (None, 0.3, 0.6):
        c = collapse_components(X, scale=scale)
        eps = c["scale"]
        st = gudhi.RipsComplex(points=X, max_edge_length=eps).create_simplex_tree(max_dimension=2)
        st.compute_persistence(persistence_dim_max=True)
        b = [*st.betti_numbers(), 0, 0]
        assert (c["beta0"], c["beta1"]) == (b[0], b[1]), (scale, eps)


def test_fisher_term_orders_separated_before_overlapping():
    rng = RNG(7)
    y = np.repeat([0, 1, 2], 50)
    noise = rng.normal(size=(150, 5))
    centres = np.eye(5)[:3]
    far = noise + 20 * centres[y]
    near = noise + 0.2 * centres[y]
    cf, cn = collapse_components(far, y), collapse_components(near, y)
    assert cf["fisher_term"] < 0.05 < 0.9 < cn["fisher_term"] < 1
    assert cf["n_classes"] == 3
    # S_B / S_W by its definition, class by class
    for X, c in ((far, cf), (near, cn)):
        mu = X.mean(axis=0)
        sw = sum(((X[y == k] - X[y == k].mean(0)) ** 2).sum() for k in range(3))
        sb = sum(50 * ((X[y == k].mean(0) - mu) ** 2).sum() for k in range(3))
        assert c["fisher_ratio"] == pytest.approx(sb / sw, rel=1e-12)
    sf, sn = collapse_index(far, y)[1]["scores"], collapse_index(near, y)[1]["scores"]
    assert sf["fisher_term"] < 0.05 < 0.9 < sn["fisher_term"]
    # Well-separated class means also make the cloud anisotropic (3 dominant axes), so the
    # spectral scores rise with separation: the total CI is not a class-separation measure.
    assert sf["effective_rank"] > sn["effective_rank"]


def test_fisher_edge_cases():
    X = RNG(8).normal(size=(30, 4))
    c = collapse_components(X, np.zeros(30, dtype=int))
    assert math.isnan(c["fisher_term"]) and "single_class" in c["flags"] and c["n_classes"] == 1
    pts = np.repeat(np.eye(4)[:3], 10, axis=0)  # each class is one point: S_W = 0 < S_B
    c = collapse_components(pts, np.repeat([0, 1, 2], 10), topology=False)
    assert c["fisher_term"] < 1e-20 and c["fisher_ratio"] > 1e20  # 0 and inf up to centring
    c = collapse_components(X, np.array(list("ab") * 15))  # string labels
    assert 0 < c["fisher_term"] < 1


# --- seed 000 and the naive transcription -----------------------------------------------------


@pytest.mark.parametrize(
    "n,d,labelled,kind",
    [
        (50, 5, False, "gauss"),
        (120, 10, True, "gauss"),
        (530, 6, True, "gauss"),  # more than 500 rows: H1 on the first 500
        (80, 6, False, "lowrank"),  # eigenvalues at rounding level survive the > 0 filter
        (60, 4, True, "scaled"),
        (40, 3, True, "zero_col"),
        (30, 64, True, "gauss"),  # d > n
    ],
)
def test_seed000_equals_the_literal_transcription(n, d, labelled, kind):
    rng = RNG(n + d)
    X = rng.normal(size=(n, d))
    if kind == "lowrank":
        X = rng.normal(size=(n, 2)) @ rng.normal(size=(2, d)) + 1e-7 * X
    elif kind == "scaled":
        X = X * np.logspace(-3, 3, d)
    elif kind == "zero_col":
        X[:, 0] = 0.0
    y = rng.integers(0, 4, size=n) if labelled else None
    ci, comp = collapse_index(X, y, variant="seed000")
    ci_ref, comp_ref = naive_collapse.compute_collapse_index(X, y)
    assert ci == pytest.approx(float(ci_ref), rel=1e-7, abs=1e-12)
    assert set(comp_ref) <= set(comp)
    for k, v in comp_ref.items():
        assert comp[k] == pytest.approx(float(v), rel=1e-7), k
    assert ci <= 0.55  # the seed form's own bound


def test_default_moves_on_forced_low_rank_sequence_where_seed000_does_not():
    """Embeddings whose signal rank shrinks 24 -> 3 (the rest at 1e-3), as in the digits study."""
    rng = RNG(9)
    n, d = 200, 64
    G, Q = rng.normal(size=(n, d)), _rotation(d, 10)
    seq = []
    for k in (24, 24, 16, 8, 5, 3):
        s = np.full(d, 1e-3)
        s[:k] = 1.0
        seq.append((G * s) @ Q)
    base = collapse_components(seq[0])
    default = [collapse_index(X, baseline=base)[0] for X in seq]
    seed000 = [collapse_index(X, variant="seed000")[0] for X in seq]
    ranks = [collapse_components(X, topology=False)["effective_rank"] for X in seq]
    assert default[0] == pytest.approx(0.0, abs=1e-12) and default[1] == pytest.approx(
        0.0, abs=1e-12
    )
    assert all(b > a for a, b in itertools.pairwise(default[1:]))  # monotone rise
    assert default[-1] > 0.4
    assert max(seed000) - min(seed000) < 0.03  # the seed's form stays flat ...
    assert seed000[-1] <= seed000[0]  # ... and even falls
    assert ranks[0] > 20 and ranks[-1] < 4
    # the monitors: the default (baseline mode) fires, the seed's form and rule never do
    seq3 = [seq[0], seq[0] + 1e-4 * G[:, :1], seq[1], *seq[2:]]  # three baseline checks
    default_mon = CollapseMonitor(check_every=1)
    seed_mon = CollapseMonitor(check_every=1, variant="seed000", mode="seed")
    d_states = [str(default_mon.check(X).state) for X in seq3]
    s_states = [str(seed_mon.check(X).state) for X in seq3]
    assert d_states[:3] == ["HEALTHY"] * 3 and d_states[-1] == "COLLAPSE"
    # two consecutive checks toward collapse beyond collapse_z (the one-check rule: step 4)
    assert default_mon.collapse_step_ is not None and default_mon.collapse_step_ <= 5
    assert s_states == ["HEALTHY"] * len(seq3)


# --- invariances and references ---------------------------------------------------------------

_SCALE_FREE = (
    "anisotropy",
    "participation_ratio",
    "dim_ratio",
    "effective_rank",
    "persistence_entropy",
    "persistence_entropy_norm",
    "fisher_ratio",
    "fisher_term",
)


@pytest.mark.parametrize(
    "transform", ["rotate", "translate", "scale_up", "scale_down", "scale_1e150", "scale_1e-150"]
)
def test_components_are_invariant(transform):
    rng = RNG(11)
    X = rng.normal(size=(120, 6)) * [3, 2, 1, 1, 0.5, 0.1]
    y = rng.integers(0, 3, size=120)
    Y = {
        "rotate": X @ _rotation(6, 12),
        "translate": X + 1e3,
        "scale_up": X * 1e4,
        "scale_down": X * 1e-4,
        "scale_1e150": X * 1e150,
        "scale_1e-150": X * 1e-150,
    }[transform]
    a, b = collapse_components(X, y), collapse_components(Y, y)
    for k in _SCALE_FREE:
        assert b[k] == pytest.approx(a[k], rel=1e-5), k  # ripser's float32 limits H1 terms
    assert (a["beta0"], a["beta1"], a["rank"]) == (b["beta0"], b["beta1"], b["rank"])
    assert collapse_index(Y, y)[0] == pytest.approx(collapse_index(X, y)[0], rel=1e-5)
    if transform.startswith("scale"):
        f = float(Y[0, 0] / X[0, 0])
        assert b["lambda_max"] == pytest.approx(a["lambda_max"] * f * f, rel=1e-12)
        assert b["scale"] == pytest.approx(a["scale"] * f, rel=1e-12)


def test_power_of_two_scale_is_exactly_invisible():
    X = RNG(28).normal(size=(80, 5))
    y = np.arange(80) % 3
    a, b = collapse_components(X, y), collapse_components(X * 2.0**60, y)
    for k in (*_SCALE_FREE, "beta0", "beta1", "rank", "n_h1_bars"):
        assert a[k] == b[k], k


@pytest.mark.parametrize(
    "n,d,spread",
    [
        (90, 12, 3.0),  # tall, kappa = 900: Gram eigenvalue path
        (90, 12, 1e5),  # tall, kappa = 1e10: SVD path
        (20, 40, 3.0),  # more features than points: d' = n - 1
    ],
)
def test_rankme_and_participation_ratio_match_direct_computations(n, d, spread):
    import scipy.linalg

    X = RNG(13).normal(size=(n, d)) * np.geomspace(1.0, spread, d) + 7.0
    c = collapse_components(X)  # d > n must not warn (ripser's "transpose?" warning)
    s = scipy.linalg.svdvals(X - X.mean(axis=0))
    p = s / s.sum()
    assert c["effective_rank"] == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-10)
    lam = s**2 / (n - 1)
    assert c["participation_ratio"] == pytest.approx(lam.sum() ** 2 / (lam**2).sum(), rel=1e-10)
    assert c["lambda_max"] == pytest.approx(np.linalg.eigvalsh(np.cov(X.T))[-1], rel=1e-10)
    dprime = min(n - 1, d)
    assert c["rank"] == dprime and not c["rank_deficient"]
    assert c["anisotropy"] == pytest.approx(math.log1p(lam[0] / lam[dprime - 1]), rel=1e-7)
    assert c["dim_ratio"] == pytest.approx(1 - c["participation_ratio"] / dprime, rel=1e-12)


def test_subsample_is_seeded_and_reported():
    X = RNG(14).normal(size=(300, 4))
    a = collapse_components(X, max_points=50, seed=3)
    b = collapse_components(X, max_points=50, seed=3)
    c = collapse_components(X, max_points=50, seed=4)
    assert a["n_sampled"] == 50 and np.array_equal(a["sample_index"], b["sample_index"])
    assert not np.array_equal(a["sample_index"], c["sample_index"])
    assert a["persistence_entropy"] == b["persistence_entropy"]
    assert collapse_components(X, max_points=None)["n_sampled"] == 300


# --- bad input --------------------------------------------------------------------------------


def test_nan_rows_are_dropped_and_counted():
    rng = RNG(15)
    X, y = rng.normal(size=(50, 4)), rng.integers(0, 2, size=50)
    Xn = X.copy()
    Xn[[3, 10]] = np.nan
    Xn[20, 1] = np.inf
    keep = np.ones(50, dtype=bool)
    keep[[3, 10, 20]] = False
    a, b = collapse_components(Xn, y), collapse_components(X[keep], y[keep])
    assert a["n_dropped"] == 3 and "nonfinite_rows_dropped" in a["flags"]
    assert a["n_points"] == 47
    for k in _SCALE_FREE:
        assert a[k] == b[k]
    assert (
        collapse_index(Xn, y, variant="seed000")[0]
        == collapse_index(X[keep], y[keep], variant="seed000")[0]
    )


def test_bad_input_errors_name_the_argument():
    X = RNG(16).normal(size=(10, 3))
    with pytest.raises(InputError, match="at least 3 rows"):
        collapse_components(X[:2])
    Xn = X[:4].copy()
    Xn[:2] = np.nan
    with pytest.raises(InputError, match=r"after dropping 2 row"):
        collapse_components(Xn)
    with pytest.raises(InputError, match="at least 2 features"):
        collapse_components(X[:, :1])
    with pytest.raises(InputError, match="labels has 9 values"):
        collapse_components(X, np.arange(9))
    with pytest.raises(InputError, match="2-D"):
        collapse_components(X[None])
    with pytest.raises(InputTypeError):
        collapse_components("abc")
    with pytest.raises(InputError, match="variant"):
        collapse_index(X, variant="seed001")
    with pytest.raises(InputError, match="unknown key"):
        collapse_index(X, weights={"rankme": 1.0})
    with pytest.raises(InputError, match="max_points"):
        collapse_components(X, max_points=2)


def test_zero_variance_marks_components_absent():
    X = np.ones((20, 5))
    c = collapse_components(X)
    assert "zero_variance" in c["flags"] and c["rank"] == 0 and c["effective_rank"] == 0.0
    assert math.isnan(c["anisotropy"]) and math.isnan(c["participation_ratio"])
    ci, comp = collapse_index(X)
    assert ci == 1.0 and set(comp["scores"]) == {"effective_rank", "persistence_entropy"}
    with pytest.raises(InputError, match="zero variance"):
        collapse_index(X, variant="seed000")


# --- CollapseMonitor --------------------------------------------------------------------------


def _states(statuses):
    return [str(s.state) for s in statuses]


def test_seed_mode_trend_logic_on_a_scripted_sequence():
    mon = CollapseMonitor(check_every=1, threshold=0.7, mode="seed", variant="seed000")
    seq = [0.75, 0.8, 0.85, 0.6, 0.72, 0.71, 0.9, 0.95]
    got = _states(mon.check(ci=v) for v in seq)
    # >= 3 checks, above 0.7 and above the previous check (the seed's code)
    assert got == ["WATCH", "WATCH", "COLLAPSE", "HEALTHY", "COLLAPSE", "WATCH", "COLLAPSE",
                   "COLLAPSE"]  # fmt: skip
    assert mon.collapse_step_ == 2 and mon.is_collapsing
    assert "rising" in mon.check(ci=0.96).reason
    assert not mon.check(ci=0.5).state == State.COLLAPSE and not mon.is_collapsing


def test_baseline_mode_directions_on_scripted_components():
    base = [{"effective_rank": 20.0 + e, "anisotropy": 10.0} for e in (0.0, 0.3, -0.2)]

    def run(direction, later, confirm=1):
        mon = CollapseMonitor(
            check_every=1, direction=direction, baseline_checks=3, confirm=confirm
        )
        out = [mon.check(ci=0.0, components=c) for c in base]
        return out + [mon.check(ci=ci, components=c) for ci, c in later]

    fall = (0.0, {"effective_rank": 10.0, "anisotropy": 10.0})  # towards collapse
    rise = (0.0, {"effective_rank": 30.0, "anisotropy": 10.0})  # away from collapse
    small = (0.0, {"effective_rank": 19.0, "anisotropy": 10.3})  # |z| < 3 (sigma floor 1.0)
    ci_up = (0.5, {"effective_rank": 20.0, "anisotropy": 10.0})  # CI floor 0.02
    # confirm=1 (the rule before 2026-12-06): first check beyond z: WATCH; away from
    # collapse: WATCH; toward collapse again while the alarm holds: COLLAPSE
    got = run("both", [small, fall, rise, ci_up])
    assert [s.reason for s in got[:3]] == ["baseline 1/3", "baseline 2/3", "baseline 3/3"]
    assert _states(got[3:]) == ["HEALTHY", "WATCH", "WATCH", "COLLAPSE"]
    assert got[4].dominant == "effective_rank" and got[4].z == pytest.approx(-10.0)
    assert "dimensionality collapse" in got[4].reason and "fell to 10" in got[4].reason
    assert "away from collapse" in got[5].reason
    assert got[6].z == pytest.approx(25.0) and got[6].reason.startswith("ci rose to 0.5")
    assert _states(run("up", [fall, fall, rise])[3:]) == ["WATCH", "COLLAPSE", "HEALTHY"]
    assert _states(run("down", [fall, rise, rise])[3:]) == ["HEALTHY", "WATCH", "WATCH"]
    # the default (confirm=2, collapse_z=6): one check beyond z is HEALTHY and says so; two
    # consecutive are WATCH; COLLAPSE when both move toward collapse beyond 6
    got = run("both", [small, fall, rise, ci_up], confirm=2)
    assert _states(got[3:]) == ["HEALTHY", "HEALTHY", "WATCH", "WATCH"]
    assert got[4].reason == (
        "effective_rank z=-10.0 beyond 3.0 on 1 of 2 consecutive checks (not yet an alarm)"
    )
    assert got[4].dominant == "effective_rank" and got[4].z == pytest.approx(-10.0)
    assert "away from collapse" in got[5].reason and got[6].reason.startswith("ci rose to 0.5")
    assert _states(run("up", [fall, fall, rise], confirm=2)[3:]) == [
        "HEALTHY", "COLLAPSE", "HEALTHY",
    ]  # fmt: skip
    assert _states(run("down", [fall, rise, rise], confirm=2)[3:]) == [
        "HEALTHY", "HEALTHY", "WATCH",
    ]  # fmt: skip
    mid = (0.0, {"effective_rank": 15.0, "anisotropy": 10.0})  # toward collapse, z = -5 < 6
    assert _states(run("both", [mid, mid, mid, fall, fall], confirm=2)[3:]) == [
        "HEALTHY", "WATCH", "WATCH", "WATCH", "COLLAPSE",
    ]  # fmt: skip
    # an outlier check between healthy ones never alarms; with confirm=1 it was WATCH
    assert _states(run("both", [small, fall, small], confirm=2)[3:]) == ["HEALTHY"] * 3
    assert _states(run("both", [small, fall, small])[3:]) == ["HEALTHY", "WATCH", "HEALTHY"]
    three = CollapseMonitor(check_every=1, baseline_checks=3, confirm=3)
    for c in base:
        three.check(ci=0.0, components=c)
    assert [str(three.check(ci=0.0, components=fall[1]).state) for _ in range(3)] == [
        "HEALTHY", "HEALTHY", "COLLAPSE",
    ]  # fmt: skip
    assert "on 2 of 3 consecutive" in three.history["reason"][-2]
    # a CI above threshold without an excursion is WATCH
    mon = CollapseMonitor(check_every=1, baseline_checks=1)
    mon.update(0.8)
    assert mon.check(ci=0.81).state == State.WATCH


def test_check_schedule_and_real_embeddings():
    rng = RNG(20)
    rows = []
    mon = CollapseMonitor(check_every=2, baseline_checks=2, writer=rows.append)
    healthy = [rng.normal(size=(80, 6)) for _ in range(3)]
    out = [mon.check(healthy[0]), mon.check("not read on a skipped step")]
    out += [mon.check(healthy[1]), mon.check(None, step=3), mon.check(healthy[2], step=4)]
    assert [s.checked for s in out] == [True, False, True, False, True]
    assert not mon.due() and mon.due(6) and not mon.due(7)
    assert [s.step for s in out] == [0, 1, 2, 3, 4]
    squashed = rng.normal(size=(80, 6)) * [1, 1, 1e-3, 1e-3, 1e-3, 1e-3]
    s = mon.check(squashed, step=6)  # one check beyond z: not yet an alarm (confirm=2)
    assert s.state == State.HEALTHY and s.dominant in ("anisotropy", "effective_rank")
    assert "on 1 of 2 consecutive checks" in s.reason
    s = mon.check(rng.normal(size=(80, 6)) * [1, 1, 1e-3, 1e-3, 1e-3, 1e-3], step=8)
    assert s.state == State.COLLAPSE and s.dominant in ("anisotropy", "effective_rank")
    h = mon.history
    assert h["step"].to_list() == [0, 2, 4, 6, 8] and h.height == 5
    assert h["state"].to_list()[-2:] == ["HEALTHY", "COLLAPSE"]
    assert len(rows) == 5 and rows[-1]["monitor"] == "collapse" and rows[-1]["step"] == 8
    for r in rows:
        json.dumps(r["config"])
        assert all(isinstance(v, (int, float, str, bool)) for k, v in r.items() if k != "config")
    assert rows[-1]["state"] == "COLLAPSE" and isinstance(rows[-1]["wall_time"], float)


def test_torch_tensors_give_the_numpy_result():
    torch = pytest.importorskip("torch")
    X = RNG(21).normal(size=(60, 5))
    y = RNG(22).integers(0, 3, size=60)
    a = CollapseMonitor(check_every=1).check(X, y)
    b = CollapseMonitor(check_every=1).check(torch.tensor(X, dtype=torch.float64), torch.tensor(y))
    assert a == b
    ci32, _ = collapse_index(torch.tensor(X, dtype=torch.float32))
    assert ci32 == pytest.approx(collapse_index(X.astype(np.float32))[0], rel=1e-12)


def test_monitor_state_unchanged_on_error():
    mon = CollapseMonitor(check_every=1)
    X = RNG(24).normal(size=(30, 4))
    mon.check(X)
    before = json.dumps(mon.state_dict(), default=lambda a: a.tolist())
    bad = [
        lambda: mon.check(X[:2]),
        lambda: mon.check(X[:, :1]),
        lambda: mon.check(X, np.arange(29)),
        lambda: mon.check(X, step=0),  # steps must increase
        lambda: mon.update(float("nan")),
        lambda: mon.update(0.1, {"rankme": 3.0}),
        lambda: mon.load_state_dict({"version": 1, "config": {"check_every": 7}}),
    ]
    for f in bad:
        with pytest.raises((InputError, InputTypeError)):
            f()
        assert json.dumps(mon.state_dict(), default=lambda a: a.tolist()) == before
    with pytest.raises(InputError, match="mode"):
        CollapseMonitor(mode="peak")
    with pytest.raises(InputError, match="check_every"):
        CollapseMonitor(check_every=0)
    with pytest.raises(InputError, match="z must be"):
        CollapseMonitor(z=0)
    with pytest.raises(InputTypeError, match="writer"):
        CollapseMonitor(writer=3)


def test_reports(monkeypatch):
    mon = CollapseMonitor(check_every=1, mode="seed", variant="seed000")
    assert mon.report() == "No monitoring data yet."
    for v in (0.2, 0.75, 0.8, 0.9):
        mon.update(v, {"anisotropy": 12.0})
    md = mon.report()
    lines = md.splitlines()
    assert lines[0] == "## Collapse Monitor Report"
    assert lines[2].startswith("| Epoch | Collapse Index | Status | anisotropy |")
    assert lines[4] == "| 0 | 0.2000 | ✅ OK | 12 |"
    assert lines[-1] == "| 3 | 0.9000 | ⚠️ COLLAPSE | 12 |"
    pytest.importorskip("matplotlib")
    page = mon.report(format="html")
    assert "data:image/png;base64," in page and page.count("<tr") == 5
    import base64

    png = base64.b64decode(page.split("base64,")[1].split('"')[0])
    assert png.startswith(b"\x89PNG")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    plain = mon.report(format="html")
    assert "<img" not in plain and plain.count("<tr") == 5
    with pytest.raises(InputError, match="format"):
        mon.report(format="pdf")


def test_nonfinite_embeddings_are_recorded_not_raised():
    rows = []
    mon = CollapseMonitor(check_every=1, baseline_checks=1, writer=rows.append)
    X = RNG(25).normal(size=(200, 4))
    mon.check(X)
    Xn = X.copy()
    Xn[:5] = np.nan
    s = mon.check(Xn)
    assert s.state != State.COLLAPSE and "5 row(s) with NaN/inf dropped" in s.reason
    assert mon.history["n_dropped"].to_list() == [0.0, 5.0]
    s = mon.check(np.full((40, 4), np.nan))
    assert s.state == State.COLLAPSE and s.dominant == "nonfinite" and math.isnan(s.ci)
    assert s.reason.startswith("40 of 40 embedding rows have NaN/inf")
    assert rows[-1]["state"] == "COLLAPSE" and rows[-1]["n_dropped"] == 40.0
    assert mon.collapse_step_ == 2
    assert mon.check(X).state == State.HEALTHY  # recovers; the baseline ignores the NaN CI
    with pytest.raises(InputError, match="at least 3 rows"):
        mon.check(np.full((2, 4), np.nan))


def test_cli_collapse(tmp_path, capsys):
    from streamtopo.app.cli import main

    X = RNG(26).normal(size=(60, 5))
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", np.repeat([0, 1, 2], 20))
    args = [str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--max-points", "40"]
    assert main(["collapse", *args]) == 0
    out = capsys.readouterr().out
    ci = collapse_index(X, np.repeat([0, 1, 2], 20), max_points=40)[0]
    assert f"default  CI = {ci:.4f}" in out and "seed000  CI" in out and "fisher_term" in out
    with pytest.raises(SystemExit) as exc:  # refused by argparse, before any work
        main(["collapse", str(tmp_path / "x.npy"), "--max-points", "2"])
    assert exc.value.code == 2


def test_eigenvalue_only_checks():
    X = RNG(27).normal(size=(100, 6)) * [1, 1, 1, 1, 0.5, 0.2]
    ci, c = collapse_index(X, topology=False)
    full = collapse_index(X)[1]["scores"]
    assert set(c["scores"]) == {"effective_rank", "participation_ratio", "anisotropy"}
    w = {"effective_rank": 0.3, "participation_ratio": 0.3, "anisotropy": 0.1}
    assert ci == pytest.approx(sum(w[k] * full[k] for k in w) / 0.7, rel=1e-12)
    mon = CollapseMonitor(check_every=1, topology=False)
    mon.check(X)
    assert math.isnan(mon.history["persistence_entropy"][0])
    with pytest.raises(InputError, match="seed000"):
        CollapseMonitor(variant="seed000", topology=False)
    with pytest.raises(InputError, match="seed000"):
        collapse_index(X, variant="seed000", topology=False)
    sd = mon.state_dict()
    sd["state"]["_hist"]["state"] = ["FOO"]
    with pytest.raises(InputError, match="could not be loaded"):
        mon.load_state_dict(sd)
    assert mon.history["state"].to_list() == ["HEALTHY"]


@settings(max_examples=30, deadline=None)
@given(
    X=arrays(
        np.float64,
        st.tuples(st.integers(3, 25), st.integers(2, 4)),
        elements=st.floats(-50, 50, allow_nan=False, width=32),
    ),
    seed=st.integers(0, 2**32 - 1),
)
def test_components_do_not_depend_on_row_order(X, seed):
    """Ties, duplicates and zero variance included: Hypothesis draws them readily."""
    perm = np.random.default_rng(seed).permutation(X.shape[0])
    y = np.arange(X.shape[0]) % 2
    a = collapse_components(X, y, max_points=None)
    b = collapse_components(X[perm], y[perm], max_points=None)
    for k in (*_SCALE_FREE, "beta0", "beta1", "rank", "n_h1_bars", "scale"):
        va, vb = float(a[k]), float(b[k])
        assert (math.isnan(va) and math.isnan(vb)) or vb == pytest.approx(va, rel=1e-6, abs=1e-9), k
    assert a["flags"] == b["flags"]


def test_rows_go_through_the_run_writer(tmp_path):
    from streamtopo.io import RunWriter, read_run

    rng = RNG(29)
    with RunWriter(tmp_path, run_id="c", handle_sigterm=False) as w:
        mon = CollapseMonitor(check_every=2, baseline_checks=2, writer=w)
        for step in range(8):
            scale = [1, 1, 1, 1.0 / (1 + step**2)]
            mon.check(rng.normal(size=(60, 4)) * scale, rng.integers(0, 2, size=60))
    back = read_run(w.run_dir, table="collapse").sort("step").collect()
    h = mon.history
    assert back["step"].to_list() == h["step"].to_list() == [0, 2, 4, 6]
    assert back["state"].to_list() == h["state"].to_list()
    assert back["reason"].to_list() == h["reason"].to_list()
    np.testing.assert_array_equal(back["ci"].to_numpy(), h["ci"].to_numpy())
    np.testing.assert_array_equal(back["effective_rank"].to_numpy(), h["effective_rank"].to_numpy())
    # replay the logged rows through check(ci=...): the same states and z-scores
    fresh = CollapseMonitor(check_every=2, baseline_checks=2)
    cols = [c for c in back.columns if c in h.columns and c not in ("step", "ci", "state")]
    cols = [c for c in cols if c not in ("reason", "dominant", "z")]
    replayed = [
        fresh.check(ci=r["ci"], components={c: r[c] for c in cols}, step=r["step"])
        for r in back.iter_rows(named=True)
    ]
    assert [str(s.state) for s in replayed] == h["state"].to_list()
    np.testing.assert_array_equal([s.z for s in replayed], h["z"].to_numpy())


def test_duplicate_points_give_no_spurious_loops():
    """Centring makes coordinates inexact; ripser's own distance shortcut then gave duplicates
    distances ~1e-7 and 20-27 spurious, row-order-dependent H1 bars (found by Hypothesis)."""
    X = np.full((20, 2), 40.75)
    X[0], X[1] = (0.0, 0.0), (0.0, 40.75)
    perm = RNG(0).permutation(20)
    for Y in (X, X[perm], X + 0.1):
        c = collapse_components(Y)
        assert c["n_h1_bars"] == 0 and c["persistence_entropy"] == 0.0
        assert c["scale"] == 0.0 and c["beta0"] == 3  # most pairs are duplicates: median 0


def test_seed000_monitor_flags_identical_embeddings_instead_of_raising():
    # inside a training loop a fully collapsed embedding is the finding, not an input error
    from streamtopo import CollapseMonitor

    mon = CollapseMonitor(check_every=1, variant="seed000", mode="seed")
    st = mon.check(np.ones((50, 8)))
    assert st.state == "COLLAPSE" and "identical" in st.reason
    assert mon.check(np.random.default_rng(0).normal(size=(50, 8))).checked


def test_monitor_rejects_a_change_of_feature_dimension_and_keeps_it_in_state():
    from streamtopo import CollapseMonitor

    rng = np.random.default_rng(1)
    mon = CollapseMonitor(check_every=1)
    mon.check(rng.normal(size=(60, 16)))
    before = mon.history["reason"].to_list()
    with pytest.raises(ValueError, match="embeddings have 17 features, expected 16"):
        mon.check(rng.normal(size=(60, 17)))
    assert mon.history["reason"].to_list() == before
    assert mon.step_ == 1
    other = CollapseMonitor(check_every=1)
    other.load_state_dict(mon.state_dict())
    with pytest.raises(ValueError, match="expected 16"):
        other.check(rng.normal(size=(60, 17)))


def test_confirm_and_collapse_z_are_checked_and_old_states_load():
    with pytest.raises(InputError, match="confirm must be"):
        CollapseMonitor(confirm=0)
    with pytest.raises(InputError, match=r"collapse_z must be >= z \(3.0\)"):
        CollapseMonitor(collapse_z=2.0)
    with pytest.raises(InputTypeError, match="collapse_z"):
        CollapseMonitor(collapse_z=[6.0])
    # a state saved before confirm/collapse_z existed used the one-check rule: it loads into a
    # monitor with that rule, and a default monitor refuses it (another rule) naming the keys
    mon = CollapseMonitor(check_every=1, confirm=1, collapse_z=None)
    for k in range(4):
        mon.check(ci=0.0, components={"effective_rank": 20.0 + 0.1 * k})
    old = mon.state_dict()
    for key in ("confirm", "collapse_z"):
        del old["config"][key]
    again = CollapseMonitor(check_every=1, confirm=1, collapse_z=None)
    again.load_state_dict(old)
    assert again.history.equals(mon.history)
    with pytest.raises(InputError, match="confirm"):
        CollapseMonitor(check_every=1).load_state_dict(old)
