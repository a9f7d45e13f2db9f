"""The BLAS-Gram path: forced on adversarial near-tie data, it must give exactly the deaths of
the direct float64 path, and its certified error bound must hold."""

from __future__ import annotations

import os

import numpy as np
import pytest

from streamtopo._kernels.gram import gram_bound_constants, gram_prepare, prim_gram_sq
from streamtopo._kernels.mst import prim_points_sq
from streamtopo.topology import h0
from tests import adversarial, naive

pytestmark = pytest.mark.kernel

NOJIT = os.environ.get("NUMBA_DISABLE_JIT") == "1"
CASES = adversarial.cases(small=NOJIT)
N = 60 if NOJIT else 300


def sorted_deaths(P, metric, path):
    return np.sort(h0.mst_unsorted(h0.prepare_points(P, metric), metric, path=path)[2])


def near_tie_cases():
    return {
        "near_ties_1e-9_d16": adversarial.near_ties(N, 16, seed=1),
        "near_ties_1e-12_d40": adversarial.near_ties(N, 40, seed=2, eps=1e-12),
        "exact_ties_d24": adversarial.near_ties(N, 24, seed=3, eps=0.0),
        "offset_near_ties": 1e6 + adversarial.near_ties(N, 20, seed=4, eps=1e-7),
        "random_d64": np.random.default_rng(5).normal(size=(N, 64)),
    }


@pytest.mark.parametrize("name", sorted({**CASES, **near_tie_cases()}))
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_gram_path_equals_direct_path_exactly(name, metric):
    X = {**CASES, **near_tie_cases()}[name]
    if metric == "cosine":
        X = X + 1.0  # no all-zero rows
    gram = sorted_deaths(X, metric, "gram")
    direct = sorted_deaths(X, metric, "direct")
    # Both use the same direct float64 keys (the Gram matrix only screens), so the multisets
    # are bit-identical, ties or not.
    np.testing.assert_array_equal(gram, direct)


@pytest.mark.parametrize("name", ["near_ties_1e-9_d16", "exact_ties_d24", "offset_near_ties"])
def test_gram_path_matches_naive_twin(name):
    X = near_tie_cases()[name]
    if NOJIT or len(X) > 120:
        X = X[:80]
    got = sorted_deaths(X, "euclidean", "gram")
    np.testing.assert_allclose(got, naive.kruskal_deaths(X), rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("name", ["exact_ties_d24", "random_d64"])
def test_cosine_gram_path_matches_naive_twin(name):
    X = {**CASES, **near_tie_cases()}[name] + 1.0  # no all-zero rows
    if NOJIT or len(X) > 120:
        X = X[:80]
    got = sorted_deaths(X, "cosine", "gram")
    np.testing.assert_allclose(got, naive.kruskal_deaths(X, "cosine"), rtol=1e-9, atol=0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_bit_identical_tree_keys_on_near_ties(dtype):
    X0 = adversarial.near_ties(N, 32, seed=9)
    f, _scale, Y, nrm = gram_prepare(X0, dtype)
    G = Y @ Y.T
    n = len(X0)
    outs = [(np.empty(n - 1, np.int64), np.empty(n - 1, np.int64), np.empty(n - 1)) for _ in "ab"]
    evaluations = prim_gram_sq(X0, f, G, nrm, *gram_bound_constants(X0.shape[1], dtype), *outs[0])
    prim_points_sq(X0 * f, *outs[1])
    np.testing.assert_array_equal(np.sort(outs[0][2]), np.sort(outs[1][2]))
    # near-ties below float32 resolution force many direct evaluations, but not all pairs
    assert n - 1 <= evaluations <= n * (n - 1) // 2


def _screen_error(P, dtype=np.float32):
    """Largest ratio |a - s| / E over all pairs, with a the Gram estimate, s the direct value
    and E the certified bound the kernel uses."""
    f, _scale, Y, nrm = gram_prepare(P, dtype)
    X = P * f
    G = (Y @ Y.T).astype(np.float64)
    k_rel, c_prod, slack = gram_bound_constants(X.shape[1], dtype)
    r = np.sqrt(nrm)
    a = nrm[:, None] + nrm[None, :] - 2.0 * G
    s = ((X[:, None, :] - X[None, :, :]) ** 2).sum(axis=2)
    bound = k_rel * (nrm[:, None] + nrm[None, :]) + c_prod * np.outer(r, r) + slack
    return float(np.max(np.abs(a - s) / bound))


@pytest.mark.parametrize(
    "name", ["offset_1e6_gap_1e-3", "huge_1e30", "tiny_1e-30", "mixed_scales", "grid_3d"]
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_certified_bound_holds(name, dtype):
    ratio = _screen_error(CASES[name][:80], dtype)
    assert ratio <= 1.0


def test_certified_bound_holds_random_high_d():
    P = np.random.default_rng(11).normal(size=(60, 512)) * np.linspace(1e-3, 1e3, 512)
    assert _screen_error(P) <= 1.0


def test_float64_gram_path_for_wide_data_equals_direct():
    X = adversarial.near_ties(40 if NOJIT else 120, h0.GRAM_F64_MIN_D, seed=13, eps=1e-10)
    np.testing.assert_array_equal(
        sorted_deaths(X, "cosine", "gram"), sorted_deaths(X, "cosine", "direct")
    )


def test_gram_path_is_chosen_for_large_inputs():
    assert h0._choose_path(5000, 256, "euclidean") == "gram"
    assert h0._choose_path(1000, 4096, "cosine") == "gram"
    assert h0._choose_path(10, 4096, "cosine") == "direct"
    assert h0._choose_path(500, 16, "euclidean") == "direct"
    assert h0._choose_path(5000, 32, "euclidean") == "direct"
    assert h0._choose_path(64, 3, "euclidean") == "direct"
    assert h0._choose_path(5000, 1, "euclidean") == "sort"
    assert h0._choose_path(50, 50, "precomputed") == "dense"
    # beyond the memory budget the O(n d) direct path runs instead
    big = int((h0.GRAM_MAX_BYTES / 4) ** 0.5) + 1
    assert h0._choose_path(big, 256, "euclidean") == "direct"


def test_gram_matrix_blocks_threads_and_symmetry():
    from streamtopo.topology.blas import gram_matrix

    X32 = np.random.default_rng(12).normal(size=(203, 40)).astype(np.float32)
    G = gram_matrix(X32, block=32)  # 7 block rows shared by the worker threads
    np.testing.assert_array_equal(G, G.T)
    ref = X32.astype(np.float64) @ X32.astype(np.float64).T
    np.testing.assert_allclose(G, ref, rtol=0, atol=40 * 2.0**-23 * np.max(np.abs(ref)))
