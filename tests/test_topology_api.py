"""linkage, betti0_at, persistence_entropy, precomputed matrices and input errors."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram, fcluster, is_valid_linkage
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import squareform

from streamtopo import topology
from tests import adversarial, naive

pytestmark = pytest.mark.kernel

NOJIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
CASES = adversarial.cases(small=NOJIT)


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_linkage_is_a_scipy_single_linkage(metric):
    X = np.random.default_rng(2).normal(size=(60 if NOJIT else 200, 6))
    Z = topology.linkage(X, metric)
    ref = scipy_linkage(X, method="single", metric=metric)
    assert is_valid_linkage(Z)
    assert len(dendrogram(Z, no_plot=True)["leaves"]) == len(X)
    np.testing.assert_array_equal(Z[:, 3], ref[:, 3])  # cluster sizes, row by row
    if metric == "euclidean":
        np.testing.assert_allclose(Z[:, 2], ref[:, 2], rtol=1e-9)
    else:  # scipy's cosine is 1 - u.v, which cancels: compare heights with the naive twin
        np.testing.assert_allclose(Z[:, 2], naive.kruskal_deaths(X, "cosine"), rtol=1e-9)
        np.testing.assert_allclose(Z[:, 2], ref[:, 2], rtol=1e-6)
    h = ref[:, 2]
    for k in (len(h) // 5, len(h) // 2, 9 * len(h) // 10):  # midway between two heights
        t = 0.5 * (h[k] + h[k + 1])
        assert same_partition(
            fcluster(Z, t, criterion="distance"), fcluster(ref, t, criterion="distance")
        )


@pytest.mark.parametrize("name", ["grid_3d", "duplicates", "n2", "n3"])
def test_linkage_with_ties_has_scipy_heights(name):
    X = CASES[name]
    Z = topology.linkage(X)
    assert is_valid_linkage(Z)
    np.testing.assert_array_equal(Z[:, 2], scipy_linkage(X, method="single")[:, 2])


def test_linkage_of_one_point_is_empty():
    assert topology.linkage([[1.0, 2.0]]).shape == (0, 4)


def test_merge_order_edges_reproduce_deaths():
    X = CASES["grid_random_ints"]
    e = topology.merge_order(X)
    np.testing.assert_array_equal(e.death, np.linalg.norm(X[e.i] - X[e.j], axis=1))
    assert np.all(np.diff(e.death) >= 0)


def test_precomputed_matches_points():
    X = np.random.default_rng(4).normal(size=(50, 3))
    D = naive.pairwise(X)
    np.testing.assert_allclose(
        topology.h0_diagram(D, "precomputed"), topology.h0_diagram(X), rtol=1e-12
    )
    Dc = squareform(squareform(D, checks=False))
    np.testing.assert_allclose(topology.linkage(Dc, "precomputed")[:, 2], naive.kruskal_deaths(X))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda D: D[:, :-1], "square"),
        (lambda D: D + np.triu(np.full(D.shape, 1e-3), 1), "symmetric"),
        (lambda D: D - 5.0, "non-negative"),
        (lambda D: np.where(np.eye(len(D)) > 0, np.nan, D), "finite"),
    ],
)
def test_precomputed_validation_errors(make, match):
    D = naive.pairwise(np.random.default_rng(1).normal(size=(6, 2)))
    bad = make(D.copy())
    before = bad.copy()
    with pytest.raises(ValueError, match=match) as exc:
        topology.h0_diagram(bad, metric="precomputed")
    assert "X" in str(exc.value)
    np.testing.assert_array_equal(bad, before)  # input untouched


def test_cosine_zero_row_is_an_error():
    X = np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    for fn in (topology.h0_diagram, topology.h0_total, topology.linkage):
        with pytest.raises(ValueError, match=r"all-zero row\(s\) \[1\]"):
            fn(X, metric="cosine")


@pytest.mark.parametrize("name", ["grid_3d", "duplicates", "collinear", "offset_1e6_gap_1e-3"])
def test_betti0_at_matches_naive(name):
    X = CASES[name]
    deaths = np.unique(topology.h0_diagram(X)[:-1, 1])
    scales = [0.0, *deaths[:: max(1, len(deaths) // 5)], float(deaths[-1]) * 2 + 1]
    for s in scales:  # includes scales exactly equal to a death (edges at <= scale count)
        assert topology.betti0_at(X, s) == naive.betti0(X, s)


@pytest.mark.parametrize("scale", [-1.0, float("nan"), "x"])
def test_betti0_at_rejects_bad_scale(scale):
    with pytest.raises(ValueError, match="scale must be a non-negative number"):
        topology.betti0_at([[0.0], [1.0]], scale)


def test_persistence_entropy_by_hand():
    dgm = [[0.0, 1.0], [0.0, 2.0], [0.5, 3.5], [0.0, 0.0], [0.0, float("inf")]]
    # lifetimes 1, 2, 3 (the zero bar and the infinite bar are ignored): p = 1/6, 2/6, 3/6
    h = -(1 / 6 * math.log(1 / 6) + 2 / 6 * math.log(2 / 6) + 3 / 6 * math.log(3 / 6))
    assert topology.persistence_entropy(dgm) == pytest.approx(h, rel=1e-15)
    assert topology.persistence_entropy(dgm, normalize=True) == pytest.approx(
        h / math.log(3), rel=1e-15
    )
    assert topology.persistence_entropy([[0.0, float("inf")]]) == 0.0
    assert topology.persistence_entropy([[0.0, 2.0]], normalize=True) == 0.0


@pytest.mark.parametrize(
    "bad,match", [([[0.0, 1.0, 2.0]], r"shape \(n, 2\)"), ([[0, np.nan]], "NaN")]
)
def test_persistence_entropy_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        topology.persistence_entropy(bad)
