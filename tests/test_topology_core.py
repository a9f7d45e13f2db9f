"""H0 deaths against independent references: the naive Kruskal twin, scipy single linkage and
ripser, on random, adversarial and Hypothesis-generated inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.cluster.hierarchy import linkage as scipy_linkage

from streamtopo import topology
from tests import adversarial, naive

pytestmark = pytest.mark.kernel

NOJIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
RTOL = 1e-9
CASES = adversarial.cases(small=NOJIT)


def deaths(X, metric="euclidean"):
    d = topology.h0_diagram(X, metric)
    assert d.shape == (len(X), 2) and d.dtype == np.float64
    assert np.all(d[:, 0] == 0.0)
    assert np.isinf(d[-1, 1]) and np.all(np.isfinite(d[:-1, 1]))
    assert np.all(np.diff(d[:-1, 1]) >= 0.0)
    return d[:-1, 1]


def scipy_deaths(X):
    if len(X) < 2:
        return np.empty(0)
    return np.sort(scipy_linkage(np.asarray(X), method="single")[:, 2])


@pytest.mark.parametrize("name", sorted(CASES))
def test_adversarial_matches_scipy_and_naive(name):
    X = CASES[name]
    got = deaths(X)
    np.testing.assert_allclose(got, scipy_deaths(X), rtol=RTOL, atol=0.0)
    np.testing.assert_allclose(got, naive.kruskal_deaths(X), rtol=RTOL, atol=0.0)
    assert topology.h0_total(X) == pytest.approx(float(np.sum(got)), rel=1e-12, abs=0.0)


@pytest.mark.parametrize("name", ["grid_3d", "grid_random_ints", "duplicates", "d1_ties"])
def test_exact_ties_give_exact_deaths(name):
    # Integer coordinates: every distance is sqrt of an integer, so the multiset is exact.
    got = deaths(CASES[name])
    np.testing.assert_array_equal(got, scipy_deaths(CASES[name]))


@pytest.mark.parametrize("name", ["grid_random_ints", "duplicates", "mixed_scales", "n3"])
def test_cosine_matches_naive(name):
    X = CASES[name] + (1.0 if name == "grid_random_ints" else 0.0)  # no all-zero rows
    np.testing.assert_allclose(
        deaths(X, "cosine"), naive.kruskal_deaths(X, "cosine"), rtol=RTOL, atol=1e-15
    )


@pytest.mark.parametrize("n,d", [(50, 2), (120, 7), (300, 24)] if not NOJIT else [(60, 3)])
def test_random_matches_scipy(n, d):
    X = np.random.default_rng(n + d).normal(size=(n, d))
    np.testing.assert_allclose(deaths(X), scipy_deaths(X), rtol=RTOL, atol=0.0)


@pytest.mark.parametrize("name", ["grid_3d", "grid_random_ints", "collinear", "huge_1e30"])
def test_matches_ripser_at_float32_tolerance(name):
    # ripser stores distances as float32, so it only agrees to float32 precision (~1e-7
    # relative); our own accuracy is checked against float64 references above. ripser also
    # drops zero-length bars, so inputs with duplicate points are left to those references.
    from ripser import ripser

    X = CASES[name]
    ref = ripser(X, maxdim=0)["dgms"][0]
    ref = np.sort(ref[np.isfinite(ref[:, 1]), 1])
    np.testing.assert_allclose(deaths(X), ref, rtol=2e-6, atol=0.0)


def test_scale_equivariance_far_beyond_float_range():
    # 1e±200 squared would overflow/underflow float64; the power-of-two scaling keeps it exact.
    X = np.random.default_rng(3).normal(size=(40, 4))
    base = deaths(X)
    np.testing.assert_allclose(deaths(X * 1e200), base * 1e200, rtol=1e-13)
    np.testing.assert_allclose(deaths(X * 1e-200), base * 1e-200, rtol=1e-13)


def test_fast_path_equals_validating_path():
    rng = np.random.default_rng(5)
    for X in (rng.normal(size=(30, 4)), rng.normal(size=(30, 1)), rng.normal(size=(2, 3))):
        for metric in ("euclidean", "cosine"):
            fast = topology.h0_diagram(X, metric)  # float64 C array: one-call kernel
            slow = topology.h0_diagram(X.tolist(), metric)  # list: prepare_points + mst_edges
            np.testing.assert_allclose(fast, slow, rtol=1e-14, atol=1e-300)
            assert topology.h0_total(X, metric) == pytest.approx(
                topology.h0_total(X.tolist(), metric), rel=1e-13
            )
    Xf = np.asfortranarray(rng.normal(size=(20, 3)))
    np.testing.assert_array_equal(topology.h0_diagram(Xf), topology.h0_diagram(Xf.copy()))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_fast_path_rejects_non_finite(bad):
    X = np.zeros((5, 3))
    X[2, 1] = bad
    for fn in (topology.h0_diagram, topology.h0_total):
        with pytest.raises(ValueError, match="X must be finite"):
            fn(X)


def _points(max_n):
    return st.integers(1, max_n).flatmap(
        lambda n: st.integers(1, 4).flatmap(
            lambda d: arrays(
                np.float64,
                (n, d),
                # below ~1e-154 the naive twin's squares underflow (ours scale first)
                elements=st.floats(-1e3, 1e3, allow_nan=False).map(
                    lambda v: 0.0 if abs(v) < 1e-100 else v
                ),
            )
        )
    )


MAX_N = 12 if NOJIT else 30


@settings(max_examples=25 if NOJIT else 80, deadline=None)
@given(_points(MAX_N), st.randoms(use_true_random=False))
def test_property_permutation_invariance(X, rnd):
    perm = list(range(len(X)))
    rnd.shuffle(perm)
    np.testing.assert_allclose(deaths(X[perm]), deaths(X), rtol=1e-12, atol=0.0)


@settings(max_examples=25 if NOJIT else 80, deadline=None)
@given(_points(MAX_N))
def test_property_n_minus_one_finite_nonnegative_bars(X):
    d = deaths(X)
    assert d.shape == (len(X) - 1,)
    assert np.all(d >= 0.0)
    np.testing.assert_allclose(d, naive.kruskal_deaths(X), rtol=RTOL, atol=0.0)


@settings(max_examples=25 if NOJIT else 80, deadline=None)
@given(_points(MAX_N), st.lists(st.integers(-1000, 1000), min_size=4, max_size=4))
def test_property_translation_invariance(X, shift):
    t = np.asarray(shift[: X.shape[1]], dtype=np.float64)
    # Translation re-rounds coordinates, so allow a few ulps of the largest coordinate.
    atol = 64 * np.finfo(np.float64).eps * (np.max(np.abs(X)) + np.max(np.abs(t)) + 1.0)
    np.testing.assert_allclose(deaths(X + t), deaths(X), rtol=RTOL, atol=atol)
