"""H0 core against independent references (naive Kruskal twin, scipy single linkage)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage as scipy_linkage

from streamtopo import topology
from tests import naive

pytestmark = pytest.mark.kernel

RTOL = 1e-9


def _deaths(X, metric="euclidean"):
    d = topology.h0_diagram(X, metric)
    assert d.shape == (len(X), 2)
    assert np.all(d[:, 0] == 0)
    assert np.isinf(d[-1, 1]) and np.all(np.isfinite(d[:-1, 1]))
    return d[:-1, 1]


@pytest.mark.parametrize("n,d", [(2, 1), (3, 2), (17, 3), (64, 8), (200, 5), (150, 1)])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_matches_naive_twin(n, d, metric):
    X = np.random.default_rng(n * 31 + d).normal(size=(n, d))
    np.testing.assert_allclose(_deaths(X, metric), naive.kruskal_deaths(X, metric), rtol=RTOL)


def test_matches_scipy_single_linkage():
    X = np.random.default_rng(1).normal(size=(300, 16))
    Z = scipy_linkage(X, method="single")
    np.testing.assert_allclose(_deaths(X), np.sort(Z[:, 2]), rtol=RTOL)
    np.testing.assert_allclose(topology.linkage(X)[:, 2], Z[:, 2], rtol=RTOL)


def test_one_point_has_only_the_essential_bar():
    d = topology.h0_diagram([[1.0, 2.0]])
    assert d.shape == (1, 2) and d[0, 0] == 0 and np.isinf(d[0, 1])


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(5), "2-D"),
        (np.zeros((0, 3)), "at least 1 row"),
        ([[0.0, np.nan]], "finite"),
        ([[0.0, np.inf]], "finite"),
        ("abc", "2-D array of numbers"),
    ],
)
def test_bad_points_name_the_argument(bad, match):
    with pytest.raises((ValueError, TypeError), match=match) as exc:
        topology.h0_diagram(bad)
    assert "X" in str(exc.value)


def test_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        topology.h0_diagram([[0.0], [1.0]], metric="manhattan")
