"""Centroid kernels (streamtopo/_kernels/centroid.py) against numpy references; small sizes so
they also run with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamtopo._kernels.centroid import (
    combine_groups,
    edge_half_sq_dists,
    row_scales,
    scatter_unit_rows,
    tree_gradient,
    unit_rows_into,
)
from streamtopo.monitors.centroid import CentroidMonitor
from tests import naive_centroid as nc

pytestmark = pytest.mark.kernel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_scales_and_scatter_match_numpy(dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 7)).astype(dtype)
    X[3] = np.nan
    X[5, 2] = np.inf
    X[8] = 0.0
    if dtype == np.float64:
        X[10] *= 1e300
        X[11] *= 1e-300
    m, norm = np.empty(40), np.empty(40)
    kept = row_scales(X, m, norm)
    keep = nc.kept(X)
    assert kept == keep.sum() == 37
    np.testing.assert_array_equal(m > 0, keep)
    rows = np.flatnonzero(keep)
    key = rng.integers(0, 5, rows.size)
    sums, w, w2 = np.zeros((5, 7)), np.zeros(5), np.zeros(5)
    scatter_unit_rows(X, rows, m, norm, key, 2.0, sums, w, w2)
    X64 = X[rows].astype(np.float64)
    U = X64 / np.abs(X64).max(axis=1, keepdims=True)
    U /= np.linalg.norm(U, axis=1, keepdims=True)
    ref = np.zeros((5, 7))
    np.add.at(ref, key, 2.0 * U)
    np.testing.assert_allclose(sums, ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(w, 2.0 * np.bincount(key, minlength=5))
    np.testing.assert_array_equal(w2, 4.0 * np.bincount(key, minlength=5))


def test_edge_half_sq_dists_and_tree_gradient_match_references():
    rng = np.random.default_rng(1)
    K, d = 6, 5
    Mn = rng.normal(size=(K, d))
    U = Mn / np.linalg.norm(Mn, axis=1, keepdims=True)
    src = np.array([0, 1, 2, 3, 4])
    dst = np.array([1, 2, 3, 4, 5])
    out = np.empty(5)
    edge_half_sq_dists(U, src, dst, out)
    np.testing.assert_allclose(out, 1 - np.sum(U[src] * U[dst], axis=1), rtol=1e-12)
    f = rng.random(5) + 0.5
    G = np.empty((K, d))
    tree_gradient(U, src, dst, f, 1.0 / np.linalg.norm(Mn, axis=1), G)

    def fixed_tree_h0(M):
        V = M / np.linalg.norm(M, axis=1, keepdims=True)
        return float(np.sum(f * (1 - np.sum(V[src] * V[dst], axis=1))))

    num = np.zeros((K, d))
    for c in range(K):
        for t in range(d):
            up, dn = Mn.copy(), Mn.copy()
            up[c, t] += 1e-6
            dn[c, t] -= 1e-6
            num[c, t] = (fixed_tree_h0(up) - fixed_tree_h0(dn)) / 2e-6
    np.testing.assert_allclose(G, num, rtol=1e-6, atol=1e-8)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 59), max_size=6), seed=st.integers(0, 2**16))
def test_any_batching_gives_bit_identical_accumulators(cuts, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 4))
    y = rng.integers(0, 3, 60)
    X[rng.random(60) < 0.1] = np.nan
    one, many = CentroidMonitor(3, seed=seed), CentroidMonitor(3, seed=seed)
    one.update(X, y)
    bounds = [0, *sorted(set(cuts)), 60]
    for a, b in itertools.pairwise(bounds):
        many.update(X[a:b], y[a:b])
    sa, sb = one.state_dict()["state"], many.state_dict()["state"]
    for key in ("_sums", "_wsum", "_w2sum", "_rng_state", "_dropped"):
        assert sa[key] == sb[key], key


def test_combine_groups_and_unit_rows_match_numpy():
    rng = np.random.default_rng(2)
    S = rng.normal(size=(4, 5, 6))
    phi = rng.random((4, 5)) * (rng.random((4, 5)) < 0.6)
    a, b = np.empty((5, 6)), np.empty((5, 6))
    combine_groups(S, phi, a, b)
    np.testing.assert_allclose(a, np.einsum("gk,gkd->kd", phi, S), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(b, S.sum(axis=0), rtol=1e-13)
    C = S[0] * np.array([1e-300, 1.0, 1e300, 3.0, 1e-5])[:, None]
    U = np.empty_like(C)
    unit_rows_into(C, U)
    ref = S[0] / np.linalg.norm(S[0], axis=1, keepdims=True)
    np.testing.assert_allclose(U, ref, rtol=1e-14)
