"""ArrowRing against a plain list of rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamtopo import ArrowRing


@pytest.mark.parametrize(("capacity", "steps"), [(1, 5), (3, 3), (4, 11), (7, 50)])
def test_window_matches_list_of_rows(capacity, steps):
    rng = np.random.default_rng(capacity)
    ring = ArrowRing(("g", "a"), width=5, capacity=capacity)
    rows = []
    for t in range(steps):
        row = rng.normal(size=(2, 5)).astype(np.float32)
        ring.append(row, 100 + t)
        rows.append(row)
        held = min(t + 1, capacity)
        assert len(ring) == held and ring.count_ == t + 1
        for n in range(held + 1):
            w = ring.window(n)
            expected = np.stack(rows[len(rows) - n :], axis=1) if n else np.zeros((2, 0, 5))
            np.testing.assert_array_equal(w, expected)
            assert w.base is not None  # a view
            assert ring.steps(n).tolist() == list(range(100 + t + 1 - n, 100 + t + 1))


def test_arrow_and_polars_views_are_zero_copy():
    ring = ArrowRing(("grad_norm",), width=3, capacity=4)
    for t in range(6):
        ring.append(np.full((1, 3), t, dtype=np.float32), t)
    batch = ring.to_arrow(3)
    col = batch.column("grad_norm")
    assert col.type.list_size == 3 and str(col.type.value_type) == "float"
    assert col.values.buffers()[1].address == ring.window(3)[0].ctypes.data
    assert batch.column("step").to_pylist() == [3, 4, 5]
    df = ring.to_polars()
    assert df.schema["grad_norm"] == pl.Array(pl.Float32, 3)
    assert df["grad_norm"].to_list() == [[float(t)] * 3 for t in range(2, 6)]
    snap = ring.snapshot(2)
    view = ring.to_polars(2)
    for t in range(ring.capacity):  # one full turn overwrites every slot
        ring.append(np.full((1, 3), 9, dtype=np.float32), 10 + t)
    assert snap["grad_norm"].to_list() == [[4.0] * 3, [5.0] * 3]  # owns its memory
    assert view["grad_norm"].to_list()[0] != [4.0] * 3  # the view aliases the live buffer


def test_append_does_not_allocate_and_nbytes():
    ring = ArrowRing(("g", "a", "b"), width=128, capacity=1024)
    buf = ring._buf
    for t in range(2048 + 3):
        ring.append(np.zeros((3, 128), dtype=np.float32), t)
    assert ring._buf is buf
    assert ring.nbytes == 3 * 2 * 1024 * 128 * 4 + 2 * 1024 * 8


def test_state_dict_round_trip_and_bad_input():
    rng = np.random.default_rng(0)
    a = ArrowRing(("g",), width=2, capacity=5)
    for t in range(13):
        a.append(rng.normal(size=(1, 2)), t)
    b = ArrowRing(("g",), width=2, capacity=5)
    b.load_state_dict(a.state_dict())
    assert a.to_arrow().equals(b.to_arrow()) and b.count_ == 13
    for t in range(13, 20):
        row = rng.normal(size=(1, 2))
        a.append(row, t)
        b.append(row, t)
    assert a.to_arrow().equals(b.to_arrow())
    with pytest.raises(ValueError, match=r"state\['capacity'\] must be 5"):
        b.load_state_dict({**a.state_dict(), "capacity": 6})
    with pytest.raises(ValueError, match=r"n must be an integer in \[0, 5\]"):
        a.window(6)
    with pytest.raises(TypeError, match="signals must be a sequence of str"):
        ArrowRing("g", width=2)
    with pytest.raises(ValueError, match="capacity must be an integer >= 1, got 0"):
        ArrowRing(("g",), width=2, capacity=0)
    empty = ArrowRing(("g",), width=2, capacity=3)
    assert empty.window().shape == (1, 0, 2) and empty.to_polars().height == 0
