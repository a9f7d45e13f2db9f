"""streamtopo.compat.ph_training: seed 004's LayerPHMonitor and PHMonitor against a twin of
ph-training's published behaviour (ripser H0 on the seed's distance matrices, its peak and
gap rules and counters), and the seed README's usage and sample keys."""

from __future__ import annotations

import numpy as np
import pytest
from ripser import ripser

import streamtopo as st
from streamtopo.compat.ph_training import LayerPHMonitor, PHMonitor
from streamtopo.errors import InputError, InputTypeError, StreamtopoError


# ---- twins of ph-training's published behaviour (ripser H0, as the package computes it) ----
def _ripser_h0(dist: np.ndarray) -> float:
    h0 = ripser(dist, maxdim=0, distance_matrix=True)["dgms"][0]
    finite = h0[h0[:, 1] < np.inf]
    return float(np.sum(finite[:, 1] - finite[:, 0])) if len(finite) else 0.0


def _kruskal(dist: np.ndarray) -> list[tuple[float, int, int]]:
    n = dist.shape[0]
    edges = sorted((dist[i, j], i, j) for i in range(n) for j in range(i + 1, n))
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    out = []
    for w, i, j in edges:
        a, b = find(i), find(j)
        if a != b:
            parent[a] = b
            out.append((float(w), i, j))
    return out


class LayerTwin:
    """ph-training's layer monitor: H0 of |t_i - t_j|, peak updated first, COLLAPSE below
    0.3 peak (count +1), WATCH below 0.6 peak (count kept), HEALTHY (count reset)."""

    def __init__(self):
        self.peak, self.count, self.h0s, self.states = 0.0, 0, [], []

    def check(self, values):
        t = np.asarray(values, dtype=np.float64).reshape(-1, 1)
        h0 = _ripser_h0(np.abs(t - t.T))
        self.peak = max(self.peak, h0)
        if self.peak > 0 and h0 < self.peak * 0.3:
            state = "COLLAPSE"
            self.count += 1
        elif self.peak > 0 and h0 < self.peak * 0.6:
            state = "WATCH"
        else:
            state = "HEALTHY"
            self.count = 0
        self.h0s.append(h0)
        self.states.append(state)
        return h0, state, _kruskal(np.abs(t - t.T))

    def summary(self):
        return {
            "steps_monitored": len(self.h0s),
            "h0_initial": self.h0s[0],
            "h0_final": self.h0s[-1],
            "h0_peak": self.peak,
            "h0_trend": "increasing" if self.h0s[-1] > self.h0s[0] else "decreasing",
            "collapse_events": self.states.count("COLLAPSE"),
            "final_status": self.states[-1],
        }


def _layer_stream(rng, steps=120, n=8):
    """Layers diverge, then converge (collapse), with noise; values spread over decades."""
    base = np.exp(rng.normal(size=n))
    for t in range(steps):
        squeeze = 1.0 if t < 40 else max(0.05, 1.0 - (t - 40) / 40)
        yield (base.mean() + squeeze * (base - base.mean())) * (1 + 0.05 * rng.normal(size=n))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_monitor_matches_the_published_behaviour(seed):
    rng = np.random.default_rng(seed)
    mon, twin = LayerPHMonitor(n_layers=8, signal_name="grad_norm"), LayerTwin()
    stops = []
    for values in _layer_stream(rng):
        s = mon.check(list(values))
        h0, state, merges = twin.check(values)
        v32 = values.astype(np.float32).astype(np.float64)  # values are held as float32
        assert s.h0 == v32.max() - v32.min()  # exactly max - min, bit for bit
        assert s.h0 == pytest.approx(h0, rel=1e-6)  # ripser works in float32
        assert s.status == state
        assert [(i, j) for _, i, j in s.merges] == [(i, j) for _, i, j in merges]
        assert [w for w, _, _ in s.merges] == pytest.approx([w for w, _, _ in merges], rel=1e-12)
        assert mon.should_stop == (twin.count >= 3)
        stops.append(mon.should_stop)
    assert "COLLAPSE" in twin.states and any(stops)  # the stream exercises the collapse path
    got, want = mon.summary(), twin.summary()
    for key in ("steps_monitored", "h0_trend", "collapse_events", "final_status"):
        assert got[key] == want[key]
    for key in ("h0_initial", "h0_final", "h0_peak"):
        assert got[key] == pytest.approx(want[key], rel=1e-6)


def test_a_watch_between_collapses_neither_counts_nor_resets():
    mon = LayerPHMonitor(n_layers=2)
    for v in ([0.0, 10.0], [0.0, 2.0], [0.0, 5.0], [0.0, 2.0]):
        mon.check(v)
    assert [s.status for s in mon.history] == ["HEALTHY", "COLLAPSE", "WATCH", "COLLAPSE"]
    assert not mon.should_stop
    mon.check([0.0, 1.0])
    assert mon.should_stop
    mon.check([0.0, 9.0])
    assert not mon.should_stop


def test_readme_usage_and_summary_keys(capsys):
    mon = LayerPHMonitor(n_layers=32, signal_name="grad_norm")
    rng = np.random.default_rng(0)
    for step in range(20):
        grad_norms = list(np.exp(rng.normal(size=32)) * (1 + step / 10))
        status = mon.check(grad_norms)
        print(f"Step {step}: H0={status.h0:.4f} [{status.status}]")
        if mon.should_stop:
            break
    out = capsys.readouterr().out
    assert out.count("Step ") == 20
    summary = mon.summary()
    assert {"h0_trend", "collapse_events", "final_status"} <= set(summary)
    assert summary["h0_trend"] in ("increasing", "decreasing")
    assert summary["final_status"] in ("HEALTHY", "WATCH", "COLLAPSE")
    assert LayerPHMonitor(4).summary() == {}


def test_layer_monitor_is_the_peak_compatibility_mode_of_layer_monitor():
    mon = LayerPHMonitor(n_layers=4)
    assert isinstance(mon.monitor_, st.LayerMonitor)
    ref = st.LayerMonitor(4, transform="none", window=1, rule="peak", warmup=0)
    rng = np.random.default_rng(3)
    for _ in range(30):
        v = rng.random(4) * rng.random()
        a, b = mon.check(v), ref.check(v)
        assert a.h0 == b.h0 and a.state == b.state and a.step == b.step


def test_nonfinite_values_are_a_collapse():
    mon = LayerPHMonitor(n_layers=3)
    mon.check([1.0, 2.0, 3.0])
    s = mon.check([1.0, float("nan"), 3.0])
    assert s.status == "COLLAPSE" and s.merges == []


@pytest.mark.parametrize(
    ("kwargs", "values", "exc", "words"),
    [
        ({"n_layers": 4}, [1.0, 2.0, 3.0], InputError, "n_layers=4"),
        ({"n_layers": 1}, None, InputError, "n_layers"),
        ({"n_layers": 4, "collapse_threshold": 0.7}, None, InputError, "collapse_threshold"),
        ({"n_layers": 4, "collapse_threshold": "x"}, None, InputTypeError, "collapse_threshold"),
        ({"n_layers": 4, "signal_name": 3}, None, InputTypeError, "signal_name"),
    ],
)
def test_layer_monitor_errors_name_the_argument(kwargs, values, exc, words):
    with pytest.raises(exc, match=words):
        mon = LayerPHMonitor(**kwargs)
        mon.check(values)


# ----------------------------------------------------------------------------- PHMonitor
def _seed_centroid_dist(dirs, labels, k):
    means = []
    for c in range(k):
        m = dirs[labels == c].mean(0)
        means.append(m / max(np.linalg.norm(m), 1e-8))
    means = np.array(means)
    d = np.clip(1 - means @ means.T, 0, 2)
    np.fill_diagonal(d, 0)
    return d


class GapTwin:
    def __init__(self, k, thr):
        self.k, self.thr, self.count = k, thr, 0

    def check(self, dtr, ytr, dte, yte):
        h_tr = _ripser_h0(_seed_centroid_dist(dtr, ytr, self.k))
        h_te = _ripser_h0(_seed_centroid_dist(dte, yte, self.k))
        gap = abs(h_tr - h_te)
        if gap > self.thr:
            status = "ALERT"
            self.count += 1
        elif gap > self.thr * 0.5:
            status = "WATCH"
        else:
            status = "OK"
            self.count = 0
        return h_tr, h_te, gap, status, _kruskal(_seed_centroid_dist(dte, yte, self.k))


def _unit_dirs(rng, n, k, d, spread, means):
    y = np.arange(n) % k
    x = means[y] + spread * rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True), y


@pytest.mark.parametrize("seed", [0, 1])
def test_gap_monitor_matches_the_published_behaviour(seed):
    rng = np.random.default_rng(seed)
    k, d = 6, 10
    means = rng.normal(size=(k, d))
    mon, twin = PHMonitor(n_classes=k, gap_threshold=0.08), GapTwin(k, 0.08)
    statuses = []
    for spread_test in (0.5, 0.5, 0.9, 1.4, 0.7, 1.6, 1.8, 2.0, 0.5):
        tr = _unit_dirs(rng, 600, k, d, 0.5, means)
        te = _unit_dirs(rng, 120, k, d, spread_test, means)
        s = mon.check(*tr, *te)
        h_tr, h_te, gap, status, merges = twin.check(*tr, *te)
        assert s.h0_train == pytest.approx(h_tr, rel=1e-5)
        assert s.h0_test == pytest.approx(h_te, rel=1e-5)
        assert s.h0_gap == pytest.approx(gap, abs=1e-5)
        assert s.status == status and s.alert == (status == "ALERT")
        assert [(i, j) for _, i, j in s.merges] == [(i, j) for _, i, j in merges]
        assert [w for w, _, _ in s.merges] == pytest.approx([w for w, _, _ in merges], abs=1e-9)
        assert mon.should_stop == (twin.count >= 3)
        statuses.append(s.status)
    assert {"OK", "ALERT"} <= set(statuses)


def test_gap_monitor_readme_loop():
    rng = np.random.default_rng(0)
    means = np.eye(4)
    monitor = PHMonitor(n_classes=4, gap_threshold=0.08)
    stopped_at = None
    for epoch in range(10):
        spread = 0.2 + 0.3 * epoch
        dirs_train, labels_train = _unit_dirs(rng, 400, 4, 4, 0.2, means)
        dirs_test, labels_test = _unit_dirs(rng, 80, 4, 4, spread, means)
        status = monitor.check(dirs_train, labels_train, dirs_test, labels_test)
        if monitor.should_stop:
            stopped_at = epoch
            break
    assert status.alert and status.h0_gap > 0.08
    assert stopped_at is not None and stopped_at >= 2
    assert isinstance(monitor.monitor_, st.CentroidMonitor)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ((np.ones((10, 3)), np.zeros(9, int), np.ones((4, 3)), np.zeros(4, int)), "labels"),
        ((np.ones((10, 3)), np.zeros(10, int), np.ones((4, 2)), np.zeros(4, int)), "dirs_test"),
        ((np.ones((10, 3)), np.full(10, 7), np.ones((4, 3)), np.zeros(4, int)), "label"),
    ],
)
def test_gap_monitor_errors_name_the_argument(args, words):
    mon = PHMonitor(n_classes=3)
    with pytest.raises(StreamtopoError, match=words):
        mon.check(*args)
    assert mon.history == [] and mon.alert_count == 0


def test_gap_monitor_constructor_errors():
    with pytest.raises(InputError, match="n_classes"):
        PHMonitor(n_classes=1)
    with pytest.raises(InputError, match="gap_threshold"):
        PHMonitor(gap_threshold=-0.1)
