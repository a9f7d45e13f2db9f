"""Issue 16 items 4b and 4d: two monitors on one writer keep their rows apart (a monitor's
``name`` is its table), and ``acknowledge()`` is logged and replayed, bit-identically."""

from __future__ import annotations

import gc
import json
import warnings

import numpy as np
import pytest

import streamtopo as st
from streamtopo.errors import InputError, InputTypeError, StreamtopoError
from streamtopo.io import RunWriter, read_run, replay
from streamtopo.io.replay import run_summary
from streamtopo.report import build_report

N = 5


def bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).view(np.int64)


def stream(steps: int, seed: int) -> np.ndarray:
    """Healthy lognormal layers; layer 1 jumps x50 at step 60 and stays there (a lasting
    shift: the monitor stays in alarm until acknowledged)."""
    rng = np.random.default_rng(seed)
    x = np.exp(rng.normal(size=N)[None] + 0.05 * rng.normal(size=(steps, N)))
    x[60:, 1] *= 50.0
    return x


KW = {"window": 4, "baseline": 20, "raise_after": 3, "escalate_after": 15, "clear_after": 3}


def test_train_and_eval_monitors_on_one_writer_replay_apart(tmp_path):
    train, evals = stream(150, 0), stream(150, 1)
    with RunWriter(tmp_path, run_id="two", flush_rows=16, roll_rows=48) as w:
        mon_t = st.LayerMonitor(N, **KW, writer=w)
        mon_e = st.LayerMonitor(N, **{**KW, "window": 3}, writer=w, name="eval")
        live_t = [mon_t.check(x) for x in train]
        live_e = [mon_e.check(x) for x in evals]
    assert mon_t.table_ == "layer" and mon_e.table_ == "layer.eval"
    meta = json.loads((w.run_dir / "_meta.json").read_text())
    assert sorted(meta["tables"]) == ["layer", "layer.eval"]
    assert meta["tables"]["layer.eval"]["config"]["window"] == 3
    assert meta["tables"]["layer.eval"]["files"] == "table=layer.eval/rank=*/part-*.parquet"
    for table, live in (("layer", live_t), ("layer.eval", live_e)):
        out = replay(w.run_dir, table=table)
        assert out["step"].to_list() == list(range(150))  # every step, once
        assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
        assert out["state"].to_list() == [str(s.state) for s in live]
        assert run_summary(out)["differ_from_live"].item() == 0
    rows = read_run(w.run_dir, table="layer.eval").collect()
    np.testing.assert_array_equal(
        rows.select(f"grad_norm/{i}" for i in range(N)), evals.astype(np.float32)
    )
    assert read_run(w.run_dir).collect().height == 150
    paths = build_report(w.run_dir, tmp_path / "two.html")
    assert "layer.eval" in paths.markdown.read_text()


def test_a_second_unnamed_monitor_on_one_table_is_refused(tmp_path):
    with RunWriter(tmp_path, run_id="r") as w:
        first = st.LayerMonitor(N, writer=w)
        with pytest.raises(InputError, match=r"already has a LayerMonitor writing table 'layer'"):
            st.LayerMonitor(N, writer=w)
        loss_a = st.LossRiseDetector(writer=w, name="a")
        with pytest.raises(InputError, match=r"table 'loss\.a'.*give this one a name"):
            st.LossRiseDetector(writer=w, name="a")
        assert loss_a.table_ == "loss.a"
        st.LossRiseDetector(writer=w)  # another table: its own claim
        first.check(np.ones(N))
        del first
        gc.collect()
        again = st.LayerMonitor(N, writer=w)  # the claim ends with its monitor
        again.check(np.full(N, 2.0))
    # the replacement starts again at step 0: replay keeps its copy (the later one wins)
    assert read_run(w.run_dir).collect()["step"].to_list() == [0, 0]
    assert replay(w.run_dir)["step"].to_list() == [0]
    assert not (w.run_dir / "table=loss").exists()  # no rows, no table


@pytest.mark.parametrize("name", ["Eval", "a.b", "", "x" * 33, "_x", "é", 5, b"eval"])
def test_bad_monitor_names_are_refused_at_construction(tmp_path, name):
    with RunWriter(tmp_path, run_id="r") as w:
        with pytest.raises((InputError, InputTypeError), match="name must be"):
            st.LayerMonitor(N, writer=w, name=name)
        st.LayerMonitor(N, writer=w)  # the refused one claimed nothing


def test_unnamed_monitors_write_what_they_wrote_before(tmp_path):
    """No trace of names in a run without them: the same table key, glob and row envelope."""
    rows = []
    mon = st.LayerMonitor(N, writer=rows.append)
    mon.check(np.ones(N))
    assert rows[0]["monitor"] == "layer" and "name" not in rows[0]
    with RunWriter(tmp_path, run_id="r") as w:
        st.LayerMonitor(N, writer=w).check(np.ones(N))
    meta = json.loads((w.run_dir / "_meta.json").read_text())
    assert list(meta["tables"]) == ["layer"]
    assert meta["tables"]["layer"]["files"] == "table=layer/rank=*/part-*.parquet"
    assert "name" not in meta["tables"]["layer"]["config"]


def _live_with_acknowledge(tmp_path, rule: str, at: int):
    x = stream(200, 2)
    with RunWriter(tmp_path, run_id=f"ack-{rule}", flush_rows=13, roll_rows=40) as w:
        mon = st.LayerMonitor(N, **KW, rule=rule, writer=w)
        live = []
        for t, v in enumerate(x):
            live.append(mon.check(v))
            if t == at:
                assert live[-1].state is not st.State.HEALTHY  # the lasting shift holds it
                mon.acknowledge()
    return w.run_dir, x, live


@pytest.mark.parametrize("rule,at", [("streak", 120), ("cusum", 70)])
def test_acknowledge_is_logged_and_replayed_bit_identically(tmp_path, rule, at):
    run_dir, x, live = _live_with_acknowledge(tmp_path, rule, at)
    events = read_run(run_dir, table="events").collect()
    assert events.select("step", "table", "event").rows() == [(at + 1, "layer", "acknowledge")]
    for chunk in (65536, 7):  # the acknowledgement falls inside a chunk, and on its edge
        out = replay(run_dir, chunk=chunk)
        assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
        assert out["state"].to_list() == [str(s.state) for s in live]
        assert out["reason"].to_list() == [s.reason for s in live]
    # without the logged acknowledgement the replay would differ after it
    plain = st.LayerMonitor(N, **KW, rule=rule).run(x)
    assert plain["state"].to_list()[: at + 1] == [str(s.state) for s in live[: at + 1]]
    assert plain["state"].to_list()[at + 1 :] != [str(s.state) for s in live[at + 1 :]]


def test_acknowledge_the_writer_refuses_changes_nothing(tmp_path):
    w = RunWriter(tmp_path, run_id="r")
    mon = st.LayerMonitor(N, **KW, writer=w)
    for v in stream(80, 3):
        mon.check(v)
    w.close()
    before = json.dumps(mon.state_dict(), sort_keys=True)
    with pytest.raises(StreamtopoError, match="closed"):
        mon.acknowledge()
    assert json.dumps(mon.state_dict(), sort_keys=True) == before


def test_runs_without_an_events_table_replay_as_before(tmp_path):
    with RunWriter(tmp_path, run_id="r") as w:
        mon = st.LayerMonitor(N, **KW, writer=w)
        loss = st.LossRiseDetector(writer=w)
        live = [mon.check(v) for v in stream(100, 4)]
        loss.check(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = replay(w.run_dir)
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
    with pytest.raises(InputError, match="table must be a layer table"):
        replay(w.run_dir, table="loss")
    with pytest.raises(InputError, match=r"table='layer\.x' is not in run"):
        replay(w.run_dir, table="layer.x")


def test_a_named_table_left_in_a_journal_is_recovered(tmp_path):
    """A crash leaves table=layer.eval's rows in its journal: recover turns them into a part."""
    import shutil

    from streamtopo.io import recover

    with RunWriter(tmp_path / "live", run_id="r", flush_rows=4) as w:
        mon = st.LayerMonitor(N, **KW, writer=w, name="eval")
        live = [mon.check(v) for v in stream(30, 5)]
        w.flush()
        crashed = tmp_path / "crashed" / "run=r"
        shutil.copytree(w.run_dir, crashed)  # what kill -9 would leave: journals, no parts
    assert list(crashed.glob("table=layer.eval/rank=0/*.arrows"))
    report = recover(crashed)
    assert report.parts_written
    out = replay(crashed, table="layer.eval")
    assert np.array_equal(bits(out["h0"]), bits([s.h0 for s in live]))
