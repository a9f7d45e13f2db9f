"""LayerMonitor.run's fused loop (streamtopo._kernels.replay) against check() row by row.

Every test compares bit for bit: the status frame (float columns as int64 bit patterns), the
summary and the state_dict afterwards. They also run with NUMBA_DISABLE_JIT=1 (kernel marker).
A live ``check()`` runs its usual HEALTHY step through the same compiled loop, so the reference
here is ``check()`` with that path off (:func:`python_path`): every step through the rules'
Python code.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from streamtopo.errors import InputError, InputTypeError
from streamtopo.monitors._records import status_frame
from streamtopo.monitors.layer import LayerMonitor

pytestmark = pytest.mark.kernel

L, SIGNALS = 6, ("g", "a")
FLOATS = ("h0", "z", "ratio", "peak", "layer_z", "stat")


def stream(steps: int, seed: int = 0) -> np.ndarray:
    """Log random walks with one layer jumping x100 for 40 steps, a NaN, an exact zero, and the
    whole signal shrinking towards the end (h0 falls: the peak rule's ratio drops)."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(scale=0.03, size=(steps, 2, L)), axis=0)
    x = np.exp(walk + rng.normal(size=(1, 2, L)))
    x[steps // 2 : steps // 2 + 40, :, 3] *= 100.0
    x[steps // 3, 0, 4] = np.nan
    x[steps // 5, 1, 2] = 0.0
    tail = np.linspace(0.0, 1.0, steps // 4)
    x[-tail.size :] = np.exp(np.log(x[-tail.size :]) * (1.0 - 0.9 * tail)[:, None, None])
    return x


def same(got: pl.DataFrame, want: pl.DataFrame) -> None:
    assert got.columns == want.columns
    for c in want.columns:
        if c in FLOATS:
            a = got[c].to_numpy().view(np.int64)
            b = want[c].to_numpy().view(np.int64)
            assert np.array_equal(a, b), c
        else:
            assert got[c].to_list() == want[c].to_list(), c


def state(mon: LayerMonitor) -> str:
    return json.dumps(mon.state_dict(), sort_keys=True)


def python_path(mon: LayerMonitor) -> LayerMonitor:
    """``mon`` with ``check()``'s compiled path off: the reference of these tests."""
    mon._fast_rule = False
    return mon


CONFIGS = {
    "streak": dict(window=4, baseline=30, raise_after=3),
    "streak-refresh": dict(window=3, baseline=2, raise_after=2, refresh_every=7),
    "streak-no-layer-rule": dict(window=4, baseline=20, layer_rule=False),
    "streak-no-early-rule": dict(window=4, baseline=30, raise_after=3, early_rule="none"),
    # the jump at row 120 falls in the streak's warm-up: the early change detector decides
    "streak-early-cusum": dict(window=4, baseline=150, min_history=20),
    # the kept change detector after the warm-up (the default), its CUSUM live from value 20
    "streak-kept": dict(window=4, baseline=30, min_history=20),
    "streak-kept-off": dict(window=4, baseline=30, min_history=20, keep_detector=False),
    # window 16: WATCH after 20, COLLAPSE and log h0 hold-out on the 8-evaluation timing
    "streak-kept-w16": dict(window=16, baseline=30, min_history=20),
    "peak": dict(rule="peak", warmup=5),
    "peak-none": dict(rule="peak", transform="none", window=1, warmup=3),
    "every-3": dict(window=4, baseline=20, raise_after=2, check_every=3),
    "cusum": dict(rule="cusum", window=4),
    "cusum-every-2": dict(rule="cusum", window=4, check_every=2),
    "cusum-h0-only": dict(rule="cusum", window=4, layer_rule=False),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_run_equals_check_row_by_row(name):
    x = stream(240, seed=len(name))
    live = python_path(LayerMonitor(L, SIGNALS, **CONFIGS[name]))
    want = status_frame([live.check(v) for v in x])
    mon = LayerMonitor(L, SIGNALS, **CONFIGS[name])
    got = mon.run(x)
    same(got, want)
    assert set(want["state"]) > {"HEALTHY"}  # the stream exercises the alarms
    assert mon.summary() == live.summary()
    assert state(mon) == state(live)
    same(status_frame([mon.last_status_]), status_frame([live.last_status_]))
    # and the next live step agrees too
    same(status_frame([mon.check(x[-1])]), status_frame([live.check(x[-1])]))


@pytest.mark.parametrize("rule", ["streak", "cusum"])
def test_run_continues_a_restored_monitor(rule):
    x = stream(200, seed=7)
    live = python_path(LayerMonitor(L, SIGNALS, rule=rule, window=4, baseline=25))
    want = status_frame([live.check(v) for v in x])
    first = LayerMonitor(L, SIGNALS, rule=rule, window=4, baseline=25)
    a = first.run(x[:77])
    second = LayerMonitor(L, SIGNALS, rule=rule, window=4, baseline=25)
    second.load_state_dict(first.state_dict())
    b = second.run(x[77:])
    same(pl.concat([a, b]), want)
    assert state(second) == state(live)


def test_run_with_missing_values_equals_check():
    x = stream(120, seed=3)
    missing = np.zeros(x.shape, dtype=bool)
    missing[40:43, :, 1] = True
    live = LayerMonitor(L, SIGNALS, window=4, baseline=20)
    want = status_frame([live.check(v, missing=m) for v, m in zip(x, missing, strict=True)])
    mon = LayerMonitor(L, SIGNALS, window=4, baseline=20)
    same(mon.run(x, missing=missing), want)
    assert state(mon) == state(live)


def test_a_negative_value_raises_after_the_rows_before_it():
    x = stream(60, seed=4)
    x[50, 0, 1] = -1.0
    mon = LayerMonitor(L, SIGNALS, window=4, baseline=10)
    with pytest.raises(InputError, match="negative value"):
        mon.run(x)
    live = LayerMonitor(L, SIGNALS, window=4, baseline=10)
    for v in x[:50]:
        live.check(v)
    assert mon.step_ == 50 and state(mon) == state(live)


def test_integer_input_and_a_writer_take_the_row_by_row_path():
    x = np.ones((5, 2, L), dtype=np.int64)
    live = LayerMonitor(L, SIGNALS)
    want = status_frame([live.check(v) for v in x])
    same(LayerMonitor(L, SIGNALS).run(x), want)
    rows: list[dict] = []
    same(LayerMonitor(L, SIGNALS, writer=rows.append).run(x.astype(float)), want)
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]


def test_progress_bar_goes_to_stderr(capsys):
    x = stream(50, seed=5)
    LayerMonitor(L, SIGNALS, window=4).run(x, progress=True)
    assert "replay" in capsys.readouterr().err
    with pytest.raises(InputTypeError, match="progress must be a bool"):
        LayerMonitor(L, SIGNALS).run(x, progress="yes")


def test_replay_draws_a_progress_bar_per_rank(tmp_path, capsys):
    from streamtopo.io import RunWriter, replay

    x = stream(80, seed=6)
    with RunWriter(tmp_path, run_id="bar") as w:
        live = LayerMonitor(L, SIGNALS, window=4, writer=w)
        want = status_frame([live.check(v) for v in x.astype(np.float32)])
    out = replay(w.run_dir, progress=True, chunk=32)
    assert "replay rank 0" in capsys.readouterr().err
    same(out.select(want.columns), want)


def test_the_kept_detector_runs_in_the_compiled_loop(monkeypatch):
    """After the warm-up the default's rows go through the fused loop (the detector's kernel
    called there), not row by row through check()."""
    rng = np.random.default_rng(11)
    x = np.exp(rng.normal(size=(1, 2, L)) + 0.05 * rng.normal(size=(600, 2, L)))
    x[400:420, :, 3] *= 100.0  # an alarm after the warm-up: FINISH rows, then check() rows
    calls = []
    real = LayerMonitor.check

    def counted(self, values, *, missing=None):
        calls.append(self.step_)
        return real(self, values, missing=missing)

    live = python_path(LayerMonitor(L, SIGNALS, window=4, baseline=30, min_history=20))
    want = status_frame([live.check(v) for v in x])
    monkeypatch.setattr(LayerMonitor, "check", counted)
    mon = LayerMonitor(L, SIGNALS, window=4, baseline=30, min_history=20)
    same(mon.run(x), want)
    assert state(mon) == state(live)
    assert "WATCH" in set(want["state"][400:])
    assert mon.keep_detector and len(calls) < 0.3 * len(x), len(calls)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_check_through_the_compiled_loop_equals_the_python_path(name, monkeypatch):
    """Live ``check()`` (its HEALTHY steps through the fused loop, one row per call) against
    the rules' Python code, step by step: with refused input between steps, the summary read
    mid-run (the rule objects brought up to date from the loop's arrays), a state saved and
    restored mid-stream and an acknowledgement."""
    import streamtopo.monitors.layer as layer_module

    compiled_steps = []
    real = layer_module.check_fast

    def counted(mon):
        status = real(mon)
        compiled_steps.append(status is not None)
        return status

    monkeypatch.setattr(layer_module, "check_fast", counted)
    x = stream(400, seed=len(name) + 100)
    cfg = CONFIGS[name]
    mon, ref = LayerMonitor(L, SIGNALS, **cfg), python_path(LayerMonitor(L, SIGNALS, **cfg))
    refused = [{"g": np.ones(L)}] + ([] if cfg.get("transform") == "none" else [-np.ones((2, L))])
    got, want = [], []
    for t, v in enumerate(x):
        if t % 37 == 5:
            for m in (mon, ref):
                with pytest.raises((ValueError, TypeError)):
                    m.check(refused[t % len(refused)])
        if t == 250:
            restored = LayerMonitor(L, SIGNALS, **cfg)
            restored.load_state_dict(mon.state_dict())
            mon = restored
        if t == 330:
            mon.acknowledge()
            ref.acknowledge()
        got.append(mon.check(v))
        want.append(ref.check(v))
        # should_stop and peak_, read on every training step, do not bring the rule objects
        # back from the compiled path's arrays (a sync and a re-pack per step)
        ahead = mon._rules_ahead
        assert mon.should_stop == ref.should_stop and mon.peak_ == ref.peak_, t
        assert mon._rules_ahead == ahead
        if t % 25 == 0:
            assert mon.summary() == ref.summary(), t
    same(status_frame(got), status_frame(want))
    assert state(mon) == state(ref)
    assert {str(s.state) for s in want} > {"HEALTHY"}  # the stream exercises the alarms
    assert sum(compiled_steps) > 0  # the compiled path ran and decided steps


def test_the_compiled_culprits_are_the_monitors():
    """``_kernels.replay.culprits`` against the monitor's rule for a HEALTHY step (numpy's
    stable argsort of -|z|, NaN last, the first max_culprits over the threshold), on ties,
    signed zeros and NaN."""
    from streamtopo._kernels.replay import culprits

    rng = np.random.default_rng(12)
    for trial in range(300):
        n = int(rng.integers(1, 12))
        lz = np.round(rng.normal(scale=3.0, size=n) * 2) / 2  # half-units: many ties
        lz[rng.random(n) < 0.15] = np.nan
        lz[rng.random(n) < 0.1] = -0.0
        threshold = float(rng.choice([0.0, 1.0, 2.5, 4.0]))
        k = int(rng.integers(1, 5))
        a = np.abs(lz)
        a[np.isnan(a)] = -1.0
        order = np.argsort(-a, kind="stable")[:k]
        want = [int(i) for i in order if a[i] > threshold]
        oc = np.full(k, 7, dtype=np.int64)
        culprits(lz, threshold, oc)
        got = [int(i) for i in oc if i >= 0]
        assert got == want and (oc[len(got) :] == -1).all(), (trial, lz, threshold, k)
