"""Cubical sublevel persistence against cripser (Cubical Ripser), gudhi and naive twins."""

from __future__ import annotations

import cripser
import gudhi
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamtopo import InputError, InputTypeError
from streamtopo.topology.cubical import betti_curves, cubical_diagram, cubical_diagrams

from .naive_cubical import betti0 as naive_betti0
from .naive_cubical import euler_2d as naive_euler

pytestmark = pytest.mark.kernel

CONN = {2: (4, 8), 3: (6, 26)}  # (V-construction, T-construction)


def _canon(d: np.ndarray) -> np.ndarray:
    d = np.asarray(d, dtype=float).reshape(-1, 2)
    return d[np.lexsort((d[:, 0], d[:, 1]))]


def _cripser(img: np.ndarray, tcon: bool, dim: int) -> np.ndarray:
    ph = cripser.compute_ph(np.asarray(img, float), filtration="T" if tcon else "V", maxdim=1)
    ph = ph[ph[:, 0] == dim][:, 1:3]
    return ph[ph[:, 1] > ph[:, 0]]


def _gudhi(img: np.ndarray, tcon: bool, dim: int) -> np.ndarray:
    cc = (
        gudhi.CubicalComplex(top_dimensional_cells=img)
        if tcon
        else gudhi.CubicalComplex(vertices=img)
    )
    cc.compute_persistence()
    return np.asarray(cc.persistence_intervals_in_dimension(dim), dtype=float).reshape(-1, 2)


def _curve(bars: np.ndarray, t: np.ndarray) -> np.ndarray:
    return np.array([np.sum((bars[:, 0] <= s) & (s < bars[:, 1])) for s in t])


def _images(rng: np.random.Generator, ndim: int, n: int, lo: int = 2, hi: int = 9):
    for k in range(n):
        shape = tuple(int(s) for s in rng.integers(lo, hi, size=ndim))
        if k % 2:  # ties: small integer alphabet
            yield rng.integers(0, 4, size=shape).astype(float)
        else:
            yield rng.normal(size=shape)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("tcon", [False, True])
def test_h0_matches_cripser_and_gudhi(ndim, tcon):
    rng = np.random.default_rng(10 + ndim + 2 * tcon)
    conn = CONN[ndim][tcon]
    for img in _images(rng, ndim, 40 if ndim == 2 else 15, hi=9 if ndim == 2 else 6):
        ours = _canon(cubical_diagram(img, connectivity=conn))
        np.testing.assert_array_equal(ours, _canon(_cripser(img, tcon, 0)))
        np.testing.assert_array_equal(ours, _canon(_gudhi(img, tcon, 0)))
        assert ours[-1, 1] == np.inf and ours[-1, 0] == img.min()
        assert np.count_nonzero(np.isinf(ours[:, 1])) == 1


@pytest.mark.parametrize("tcon", [False, True])
def test_thin_maps_match_gudhi(tcon):
    # cripser mishandles a length-1 axis (it reports every pixel as essential); gudhi does not
    rng = np.random.default_rng(3)
    for shape in [(1, 1), (1, 7), (7, 1), (1, 2), (2, 1)]:
        img = rng.integers(0, 3, size=shape).astype(float)
        ours = _canon(cubical_diagram(img, connectivity=(4, 8)[tcon]))
        np.testing.assert_array_equal(ours, _canon(_gudhi(img, tcon, 0)))


def test_diagram_format():
    img = np.array([[3.0, 1.0, 4.0], [1.0, 5.0, 9.0], [2.0, 6.0, 0.5]])
    d = cubical_diagram(img, connectivity=4)
    assert d.dtype == np.float64 and d.shape[1] == 2
    finite = d[:-1, 1]
    assert np.all(np.diff(finite) >= 0)  # ascending deaths, essential last
    assert tuple(d[-1]) == (0.5, np.inf)
    assert np.all(d[:-1, 1] > d[:-1, 0])  # zero-length bars are not reported


@pytest.mark.parametrize("tcon", [False, True])
def test_betti_curves_match_cripser_and_naive(tcon):
    rng = np.random.default_rng(20 + tcon)
    conn = (4, 8)[tcon]
    for img in _images(rng, 2, 30):
        t = np.unique(np.r_[img.min() - 0.5, img.ravel(), img.max() + 0.5])
        c = betti_curves(img, t, conn)
        h0, h1 = _cripser(img, tcon, 0), _cripser(img, tcon, 1)
        np.testing.assert_array_equal(c.betti0[0], _curve(h0, t))
        np.testing.assert_array_equal(c.betti1[0], _curve(h1, t))
        np.testing.assert_array_equal(c.betti1[0], _curve(_gudhi(img, tcon, 1), t))
        for s, b0, b1 in list(zip(t, c.betti0[0], c.betti1[0], strict=True))[::3]:
            assert b0 == naive_betti0(img, s, tcon)
            assert b0 - b1 == naive_euler(img, s, tcon)
        lo, hi = t[0], t[-1]
        for bars, area in ((h0, c.area0[0]), (h1, c.area1[0])):
            ref = np.clip(np.minimum(bars[:, 1], hi) - np.maximum(bars[:, 0], lo), 0, None).sum()
            assert area == pytest.approx(ref, rel=1e-12, abs=1e-12)
        assert c.total_persistence[0] == pytest.approx(np.sum(h0[np.isfinite(h0[:, 1])] @ [-1, 1]))


@pytest.mark.parametrize("conn", [6, 26])
def test_3d_betti_curves_match_cripser_and_naive(conn):
    rng = np.random.default_rng(conn)
    tcon = conn == 26
    for img in _images(rng, 3, 8, hi=6):
        t = np.unique(np.r_[img.min() - 0.5, img.ravel(), img.max() + 0.5])
        c = betti_curves(img, t, conn, grid_ndim=3)
        ph = cripser.compute_ph(img, filtration="T" if tcon else "V", maxdim=2)
        lo, hi = t[0], t[-1]
        for k, curve, area in (
            (0, c.betti0, c.area0),
            (1, c.betti1, c.area1),
            (2, c.betti2, c.area2),
        ):
            bars = ph[ph[:, 0] == k][:, 1:3]
            np.testing.assert_array_equal(curve[0], _curve(bars, t), err_msg=f"beta{k}")
            ref = np.clip(np.minimum(bars[:, 1], hi) - np.maximum(bars[:, 0], lo), 0, None).sum()
            assert area[0] == pytest.approx(ref, rel=1e-12, abs=1e-12)
        assert c.betti0[0, ::4].tolist() == [naive_betti0(img, s, tcon) for s in t[::4]]


def test_ring_and_blobs():
    ring = np.ones((12, 12))
    ring[2:7, 2:7] = 0.0
    ring[3:6, 3:6] = 1.0
    blobs = np.ones((12, 12))
    for y, x in [(1, 1), (1, 7), (6, 3), (9, 9)]:  # k = 4 blobs, 2x2 each, far apart
        blobs[y : y + 2, x : x + 2] = 0.0
    for conn in (4, 8):
        c = betti_curves(np.stack([ring, blobs]), [0.0, 0.5], conn)
        assert c.betti0[:, 0].tolist() == [1, 4]
        assert c.betti1[:, 0].tolist() == [1, 0]
    # a diagonal chain of pixels is one component with 8-connectivity, several with 4
    diag = np.ones((5, 5)) - np.eye(5)
    assert betti_curves(diag, [0.0, 1.0], 8).betti0[0, 0] == 1
    assert betti_curves(diag, [0.0, 1.0], 4).betti0[0, 0] == 5
    # a diagonal ring closes a hole only in the T-construction
    diamond = np.ones((5, 5))
    for y, x in [(0, 2), (1, 1), (2, 0), (3, 1), (4, 2), (3, 3), (2, 4), (1, 3)]:
        diamond[y, x] = 0.0
    assert betti_curves(diamond, [0.0, 1.0], 8).betti1[0, 0] == 1
    assert betti_curves(diamond, [0.0, 1.0], 4).betti1[0, 0] == 0


def test_constant_and_single_pixel_maps():
    for img in (np.full((6, 5), 2.5), np.array([[7.0]])):
        np.testing.assert_array_equal(cubical_diagram(img), [[img.min(), np.inf]])
        m = img.min()
        c = betti_curves(img, [m - 1.0, m, m + 1.0])
        assert c.betti0[0].tolist() == [0, 1, 1]
        assert c.betti1[0].tolist() == [0, 0, 0]
        assert c.total_persistence[0] == 0.0
        assert c.betti2 is None
    vol = betti_curves(np.full((2, 3, 4), 1.0), [0.0, 1.0], grid_ndim=3)
    assert (vol.betti0[0].tolist(), vol.betti1[0].tolist(), vol.betti2[0].tolist()) == (
        [0, 1],
        [0, 0],
        [0, 0],
    )


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(5)
    maps = rng.integers(0, 6, size=(3, 4, 7, 6)).astype(np.float32)
    batch = cubical_diagrams(maps, connectivity=4)
    assert len(batch) == 12
    for k, d in enumerate(batch):
        np.testing.assert_array_equal(d, cubical_diagram(maps.reshape(12, 7, 6)[k], 4))
    t = np.linspace(0, 5, 7)
    c = betti_curves(maps, t, 8)
    for k in range(12):
        one = betti_curves(maps.reshape(12, 7, 6)[k], t, 8)
        np.testing.assert_array_equal(c.betti0[k], one.betti0[0])
        np.testing.assert_array_equal(c.betti1[k], one.betti1[0])
        assert c.area1[k] == one.area1[0]


def test_bad_input():
    img = np.zeros((4, 4))
    with pytest.raises(InputError, match="image must be 2-D"):
        cubical_diagram(np.zeros(5))
    with pytest.raises(InputError, match="image must be 2-D"):
        cubical_diagram(np.zeros((2, 2, 2, 2)))
    with pytest.raises(InputError, match="must not be empty"):
        cubical_diagram(np.zeros((0, 3)))
    with pytest.raises(InputError, match="must not be empty"):
        cubical_diagrams(np.zeros((0, 3, 3)))
    bad = img.copy()
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="1 NaN/inf pixel"):
        cubical_diagram(bad)
    with pytest.raises(InputError, match="connectivity must be 4 or 8"):
        cubical_diagram(img, connectivity=6)
    with pytest.raises(InputError, match="connectivity must be 6 or 26"):
        cubical_diagrams(np.zeros((2, 2, 2)), 8, grid_ndim=3)
    with pytest.raises(InputError, match="dim must be 0 or 1"):
        cubical_diagram(img, dim=2)
    with pytest.raises(InputError, match="grid_ndim"):
        cubical_diagrams(img, grid_ndim=4)
    with pytest.raises(InputTypeError, match="real numbers"):
        cubical_diagrams(np.array([["a", "b"]]))
    with pytest.raises(InputError, match="strictly ascending"):
        betti_curves(img, [0.0, 0.0, 1.0])
    with pytest.raises(InputError, match="at least 2"):
        betti_curves(img, [0.0])
    with pytest.raises(InputError, match="at least 2 dimensions"):
        betti_curves(np.zeros(4), [0.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(
    img=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7),
        elements=st.sampled_from([-1e300, -2.5, 0.0, 1e-300, 3.0, 1e300]),
    ),
    tcon=st.booleans(),
)
def test_property_extreme_values_match_gudhi(img, tcon):
    ours = _canon(cubical_diagram(img, connectivity=(4, 8)[tcon]))
    np.testing.assert_array_equal(ours, _canon(_gudhi(img, tcon, 0)))
    # transposing or flipping the image does not change the diagram
    np.testing.assert_array_equal(ours, _canon(cubical_diagram(img.T[::-1], (4, 8)[tcon])))
    t = np.array([-3.0, 0.0, 3.0])
    c = betti_curves(img, t, (4, 8)[tcon])
    np.testing.assert_array_equal(c.betti1[0], _curve(_gudhi(img, tcon, 1), t))


@pytest.mark.parametrize("tcon", [False, True])
def test_top_dimension_by_duality_matches_cripser(tcon):
    rng = np.random.default_rng(30 + tcon)
    for ndim, n in ((2, 30), (3, 10)):
        conn = CONN[ndim][tcon]
        for img in _images(rng, ndim, n, hi=9 if ndim == 2 else 6):
            ours = cubical_diagram(img, connectivity=conn, dim=ndim - 1)
            ph = cripser.compute_ph(img, filtration="T" if tcon else "V", maxdim=ndim - 1)
            ref = ph[ph[:, 0] == ndim - 1][:, 1:3]
            np.testing.assert_array_equal(_canon(ours), _canon(ref[ref[:, 1] > ref[:, 0]]))
            np.testing.assert_array_equal(ours, _canon(ours))  # sorted by (death, birth)
            if ndim == 2:  # and the Euler-characteristic beta1 curve agrees with it
                t = np.unique(img)
                np.testing.assert_array_equal(betti_curves(img, t, conn).betti1[0], _curve(ours, t))


def test_single_slice_volume_equals_image():
    rng = np.random.default_rng(8)
    for img in _images(rng, 2, 10):
        for c2, c3 in ((4, 6), (8, 26)):
            vol = img[None]
            np.testing.assert_array_equal(cubical_diagram(vol, c3), cubical_diagram(img, c2))
            t = np.unique(img)
            np.testing.assert_array_equal(
                betti_curves(vol, t, c3, grid_ndim=3).betti0, betti_curves(img, t, c2).betti0
            )
    # a (1, 1, W) volume is a 1-D signal: H0 equals gudhi's on the same line
    line = rng.integers(0, 4, size=(1, 1, 9)).astype(float)
    np.testing.assert_array_equal(
        _canon(cubical_diagram(line, 26)), _canon(_gudhi(line[0, 0], True, 0))
    )
