"""Replay: a LayerMonitor logged through RunWriter, re-run offline, gives the same statuses."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from streamtopo.app.cli import main
from streamtopo.errors import InputError, InputTypeError
from streamtopo.io import RunWriter, read_run, replay
from streamtopo.monitors.layer import LayerMonitor

N_LAYERS = 12
SIGNALS = ("grad_norm", "act_norm")


def stream(steps: int, seed: int = 0, n_layers: int = N_LAYERS) -> np.ndarray:
    """(steps, 2, n_layers) positive signals: log random walks, one layer diverging ×100
    for 50 steps in the middle (alarms fire), a few exact zeros and one NaN."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.normal(scale=0.02, size=(steps, 2, n_layers)), axis=0)
    x = np.exp(walk + rng.normal(size=(1, 2, n_layers)))
    mid = steps // 2
    x[mid : mid + 50, :, 3] *= 100.0
    x[steps // 3, 0, 5] = 0.0
    x[steps // 4, 1, 7] = np.nan
    return x.astype(np.float32)


def bits(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.int64)


def live_run(log_dir, values, run_id="live", rank=0, **kw):
    writer = RunWriter(log_dir, run_id=run_id, rank=rank, flush_rows=64, roll_rows=256)
    mon = LayerMonitor(n_layers=values.shape[2], signals=SIGNALS, writer=writer, **kw)
    statuses = [mon.check(dict(zip(SIGNALS, v, strict=True))) for v in values]
    writer.close()
    return writer.run_dir, statuses


def test_replay_is_bit_identical_to_the_live_run(tmp_path):
    values = stream(400)
    # the short baseline of the first study, so a 400-step stream exercises the alarms
    run_dir, live = live_run(tmp_path, values, baseline=100, raise_after=5)
    states = {str(s.state) for s in live}
    assert {"HEALTHY", "WATCH"} <= states  # the stream exercises the alarms
    out = replay(run_dir)
    assert out["step"].to_list() == list(range(400))
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
    assert out["state"].to_list() == [str(s.state) for s in live]
    assert out["reason"].to_list() == [s.reason for s in live]
    # what the run logged agrees too
    assert np.array_equal(bits(out["live_h0"]), bits(out["h0"]))
    assert (out["live_state"] == out["state"]).all()
    # the recorded signals are the raw inputs, NaN included
    rec = read_run(run_dir).collect()
    got = rec.select([f"{s}/{i}" for s in SIGNALS for i in range(N_LAYERS)]).to_numpy()
    np.testing.assert_array_equal(got, values.reshape(400, -1))


def test_replay_with_overrides_equals_a_fresh_monitor(tmp_path):
    values = stream(200, seed=1)
    run_dir, _ = live_run(tmp_path, values)
    out = replay(run_dir, window=1, transform="none", rule="peak", nonfinite="flag")
    ref = LayerMonitor(
        n_layers=N_LAYERS,
        signals=SIGNALS,
        window=1,
        transform="none",
        rule="peak",
        nonfinite="flag",
    )
    want = [ref.check(dict(zip(SIGNALS, v, strict=True))) for v in values]
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in want]))
    assert out["state"].to_list() == [str(s.state) for s in want]


def test_state_dict_resume_equals_an_uninterrupted_run(tmp_path):
    values = stream(360, seed=2)
    # first life: 200 steps, checkpoint at 150, crash at 200 (rows 150..199 logged twice)
    w1 = RunWriter(tmp_path, run_id="resume", flush_rows=16, roll_rows=64)
    a = LayerMonitor(n_layers=N_LAYERS, signals=SIGNALS, writer=w1)
    checkpoint = None
    for t in range(200):
        a.check(dict(zip(SIGNALS, values[t], strict=True)))
        if t == 149:
            checkpoint = a.state_dict()
    w1.close()
    # second life: restore the checkpoint, log from step 150 on
    w2 = RunWriter(
        tmp_path, run_id="resume", flush_rows=16, roll_rows=64, resume="allow", rewind_to=150
    )
    b = LayerMonitor(n_layers=N_LAYERS, signals=SIGNALS, writer=w2)
    b.load_state_dict(checkpoint)
    for t in range(150, 360):
        b.check(dict(zip(SIGNALS, values[t], strict=True)))
    w2.close()
    ref = LayerMonitor(n_layers=N_LAYERS, signals=SIGNALS)
    want = [ref.check(dict(zip(SIGNALS, v, strict=True))) for v in values]
    assert read_run(w2.run_dir).collect().height == 410  # the duplicated steps are on disk
    out = replay(w2.run_dir)
    assert out["step"].to_list() == list(range(360))
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in want]))
    assert out["state"].to_list() == [str(s.state) for s in want]


def test_replay_each_rank_from_a_fresh_monitor(tmp_path):
    v0, v1 = stream(150, seed=3), stream(120, seed=4)
    _, live0 = live_run(tmp_path, v0, run_id="ranks", rank=0)
    run_dir, live1 = live_run(tmp_path, v1, run_id="ranks", rank=1)
    out = replay(run_dir)
    assert out.group_by("rank").len().sort("rank").rows() == [(0, 150), (1, 120)]
    for r, live in ((0, live0), (1, live1)):
        part = out.filter(pl.col("rank") == r)
        assert np.array_equal(bits(part["h0"]), bits([s.h0 for s in live]))
    one = replay(run_dir, rank=1)
    assert one.height == 120 and set(one["rank"]) == {1}


def test_replay_includes_journal_rows_of_a_crashed_run(tmp_path):
    values = stream(150, seed=5)
    w = RunWriter(tmp_path, run_id="j", flush_rows=8, roll_rows=10**6)
    mon = LayerMonitor(n_layers=N_LAYERS, signals=SIGNALS, writer=w)
    live = [mon.check(dict(zip(SIGNALS, v, strict=True))) for v in values]
    w.flush()  # everything in the journal, no Parquet part yet
    out = replay(w.run_dir, include_journal=True)
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
    w.close()


def test_replay_rejects_a_mismatched_monitor(tmp_path):
    run_dir, _ = live_run(tmp_path, stream(40, seed=6))
    with pytest.raises(InputError, match="n_layers"):
        replay(run_dir, monitor=LayerMonitor(n_layers=5, signals=SIGNALS))
    with pytest.raises(InputError, match="signals"):
        replay(run_dir, monitor=LayerMonitor(n_layers=N_LAYERS))
    with pytest.raises(InputError, match="either"):
        replay(run_dir, monitor=LayerMonitor(n_layers=N_LAYERS, signals=SIGNALS), window=2)
    with pytest.raises(InputTypeError, match="LayerMonitor"):
        replay(run_dir, monitor=object())


def test_cli_replay_prints_a_summary_and_writes_statuses(tmp_path, capsys):
    run_dir, live = live_run(tmp_path, stream(200, seed=7))
    out_path = tmp_path / "statuses.parquet"
    assert main(["replay", str(run_dir), "--out", str(out_path)]) == 0
    text = capsys.readouterr().out
    assert "differ_from_live" in text and "watch_steps" in text
    saved = pl.read_parquet(out_path)
    assert saved.height == 200
    assert np.array_equal(bits(saved["h0"]), bits([s.h0 for s in live]))
    assert main(["replay", str(run_dir), "--window", "4", "--rule", "peak"]) == 0
    assert "differ_from_live" in capsys.readouterr().out


def test_replay_of_a_missing_rank_names_the_ranks_present(tmp_path):
    run_dir, _ = live_run(tmp_path, stream(40, seed=3))
    with pytest.raises(ValueError, match=r"rank 7 has no rows .*ranks present: \[0\]"):
        replay(run_dir, rank=7)
