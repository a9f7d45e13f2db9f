"""A sweep of bad inputs to RunWriter, its rows, read_run, replay and recover (issue 16): only
StreamtopoError subclasses escape, each message names the argument, and no file changes (a hash
of every file and the list of every path under the log directory, before and after)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import StreamtopoError
from streamtopo.io import RunWriter, read_run, recover, replay
from tests.journal_rows import layer_row
from tests.reliability_io_helpers import hashes, run_with_parts

SIGNALS = ("grad_norm", "act_norm")


def snapshot(root: Path) -> tuple[dict[str, str], list[str]]:
    paths = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if not p.name.endswith(".lock")
    )
    return hashes(root), paths


# -- RunWriter(...) -------------------------------------------------------------------------
CTOR = [
    ({"log_dir": 5}, "log_dir"),
    ({"log_dir": None}, "log_dir"),
    ({"log_dir": ["a"]}, "log_dir"),
    ({"run_id": 5}, "run_id"),
    ({"run_id": ""}, "run_id"),
    ({"run_id": "../x"}, "run_id"),
    ({"run_id": "a/b"}, "run_id"),
    ({"run_id": "x" * 200}, "run_id"),
    ({"run_id": ".hidden"}, "run_id"),
    ({"run_id": "a..b"}, "run_id"),
    ({"run_id": "r"}, "run_id"),  # exists, resume="never"
    ({"rank": -1}, "rank"),
    ({"rank": 1.5}, "rank"),
    ({"rank": "0"}, "rank"),
    ({"rank": True}, "rank"),
    ({"rank": 10**9, "run_id": "n"}, "rank"),
    ({"rank": 1, "run_id": None}, "run_id"),
    ({"flush_rows": 0}, "flush_rows"),
    ({"flush_rows": -3}, "flush_rows"),
    ({"flush_rows": 2.0}, "flush_rows"),
    ({"flush_rows": None}, "flush_rows"),
    ({"flush_seconds": 0}, "flush_seconds"),
    ({"flush_seconds": -1.0}, "flush_seconds"),
    ({"flush_seconds": "5"}, "flush_seconds"),
    ({"flush_seconds": float("nan")}, "flush_seconds"),
    ({"flush_seconds": float("inf")}, "flush_seconds"),
    ({"flush_seconds": True}, "flush_seconds"),
    ({"roll_rows": 0}, "roll_rows"),
    ({"roll_rows": "x"}, "roll_rows"),
    ({"roll_bytes": 0}, "roll_bytes"),
    ({"roll_bytes": 1.5}, "roll_bytes"),
    ({"fsync": "always"}, "fsync"),
    ({"fsync": None}, "fsync"),
    ({"fsync": True}, "fsync"),
    ({"step_offset": -1}, "step_offset"),
    ({"step_offset": 2**62}, "step_offset"),
    ({"step_offset": "cont"}, "step_offset"),
    ({"step_offset": 1.5}, "step_offset"),
    ({"step_offset": True}, "step_offset"),
    ({"resume": "maybe"}, "resume"),
    ({"resume": 1}, "resume"),
    ({"resume": "must", "run_id": "absent"}, "resume"),
    ({"rewind_to": -1, "resume": "allow"}, "rewind_to"),
    ({"rewind_to": "3", "resume": "allow"}, "rewind_to"),
    ({"rewind_to": 3}, "rewind_to"),
    ({"on_error": "ignore"}, "on_error"),
    ({"on_error": None}, "on_error"),
    ({"handle_sigterm": "yes"}, "handle_sigterm"),
]


@pytest.mark.parametrize("kwargs,name", CTOR, ids=[f"ctor-{i}" for i in range(len(CTOR))])
def test_bad_writer_arguments(tmp_path, kwargs, name):
    log_dir = tmp_path / "logs"
    run_with_parts(log_dir, steps=12)
    before = snapshot(log_dir)
    args = {"log_dir": log_dir, "run_id": "new", **kwargs}
    with pytest.raises(StreamtopoError) as info:
        RunWriter(args.pop("log_dir"), **args)
    assert name in str(info.value)
    assert snapshot(log_dir) == before


# -- rows -----------------------------------------------------------------------------------
def _row(step=20, **change):
    row = layer_row(step)
    row.update(change)
    return row


def _without(key):
    row = layer_row(20)
    del row[key]
    return row


ROWS = [
    (5, "row"),
    ({}, "monitor"),
    (_row(monitor=5), "row['monitor']"),
    (_row(monitor="Bad"), "row['monitor']"),
    (_row(monitor="part"), "row['monitor']"),
    (_row(monitor="x" * 40), "row['monitor']"),
    (_row(monitor="layer.Eval"), "row['monitor']"),
    (_row(monitor="layer."), "row['monitor']"),
    (_row(monitor="layer.a.b"), "row['monitor']"),
    (_row(monitor=".eval"), "row['monitor']"),
    (_row(monitor="part.x"), "row['monitor']"),
    (_without("step"), "step"),
    (_without("wall_time"), "wall_time"),
    (_without("values"), "values"),
    (_row(step=2**63), "row['step']"),
    (_row(step=-1), "row['step']"),
    (_row(step=3), "row['step']"),  # at or below the recorded steps
    (_row(step=20.0), "row['step']"),
    (_row(wall_time="now"), "row['wall_time']"),
    (_row(wall_time=10**400), "row['wall_time']"),
    (_row(values=np.zeros((2, 5), np.float32)), "row['values']"),
    (_row(values=np.array([["a"] * 4] * 2)), "row['values']"),
    (_row(values=[[1.0] * 4] * 2), "row['values']"),
    (_row(h0="x"), "row['h0']"),
    (_row(h0=10**400), "row['h0']"),
    (_row(state=5), "row['state']"),
    (_row(reason=None), "row['reason']"),
    (_row(signals=("grad_norm",)), "row['signals']"),
    (_row(layer_names=("a", "b", "c", "d")), "row['layer_names']"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": {1j: 2}}, "row['config']"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": [1]}, "row['config']"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": {}, "a/b/c": 1}, "a/b/c"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": {}, "/b": 1}, "/b"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": {}, "x": [1]}, "row['x']"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": {}, "n": 2**64}, "row['n']"),
    ({"monitor": "note", "step": 20, "wall_time": 0.0, "config": {"v": float("nan")}}, "config"),
]


@pytest.mark.parametrize("row,name", ROWS, ids=[f"row-{i}" for i in range(len(ROWS))])
def test_bad_rows(tmp_path, row, name):
    log_dir = tmp_path / "logs"
    run_with_parts(log_dir, steps=12)
    with RunWriter(log_dir, run_id="r", resume="allow", flush_rows=100, flush_seconds=1e6) as w:
        w(layer_row(12))  # buffered, not yet written
        before = snapshot(log_dir)
        with pytest.raises(StreamtopoError) as info:
            w(row)
        assert name in str(info.value)
        assert snapshot(log_dir) == before
        w(layer_row(13))  # the writer goes on as if the bad row never came
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(14))


# -- read_run / replay / recover ------------------------------------------------------------
def _monitor(n_layers=4, signals=SIGNALS):
    return LayerMonitor(n_layers=n_layers, signals=signals)


READERS = [
    (lambda run: read_run(5), "path"),
    (lambda run: read_run(None), "path"),
    (lambda run: read_run(run.parent / "missing"), "path"),
    (lambda run: read_run(run / "_meta.json"), "path"),
    (lambda run: read_run(run.parent), "path"),
    (lambda run: read_run(run, include_journal="yes"), "include_journal"),
    (lambda run: read_run(run, table=5), "table"),
    (lambda run: read_run(run, table="nope"), "table"),
    (lambda run: read_run(run, table="../x"), "table"),
    (lambda run: read_run(run, table="layer.eval"), "table"),
    (lambda run: read_run(run, table="layer.Eval"), "table"),
    (lambda run: replay(5), "path"),
    (lambda run: replay(run, table=5), "table"),
    (lambda run: replay(run, table=None), "table"),
    (lambda run: replay(run, table="events"), "table"),
    (lambda run: replay(run, table="layer.x"), "table"),
    (lambda run: replay(run, monitor=_monitor(), table="layer.eval"), "table"),
    (lambda run: replay(run.parent / "missing"), "path"),
    (lambda run: replay(run, monitor=object()), "monitor"),
    (lambda run: replay(run, monitor=_monitor(n_layers=5)), "n_layers"),
    (lambda run: replay(run, monitor=_monitor(signals=("g",))), "signals"),
    (lambda run: replay(run, monitor=_monitor(), window=2), "either"),
    (lambda run: replay(run, monitor=_monitor(), rank=-1), "rank"),
    (lambda run: replay(run, monitor=_monitor(), rank="0"), "rank"),
    (lambda run: replay(run, monitor=_monitor(), rank=7), "rank"),
    (lambda run: replay(run, monitor=_monitor(), chunk=0), "chunk"),
    (lambda run: replay(run, monitor=_monitor(), chunk="x"), "chunk"),
    (lambda run: replay(run, monitor=_monitor(), chunk=1.5), "chunk"),
    (lambda run: replay(run, monitor=_monitor(), progress="yes"), "progress"),
    (lambda run: replay(run, monitor=_monitor(), include_journal=1), "include_journal"),
    (lambda run: replay(run, window=10**9), "window"),
    (lambda run: replay(run, capacity=-1), "capacity"),
    (lambda run: replay(run, window="x"), "window"),
    (lambda run: replay(run, foo=1), "foo"),
    (lambda run: replay(run, rule="nope"), "rule"),
    (lambda run: replay(run, transform=None), "transform"),
    (lambda run: recover(5), "run_dir"),
    (lambda run: recover(None), "run_dir"),
    (lambda run: recover(run.parent / "missing"), "run_dir"),
    (lambda run: recover(run.parent), "run_dir"),
    (lambda run: recover(run, fsync="yes"), "fsync"),
    (lambda run: recover(run, verify="yes"), "verify"),
]


@pytest.mark.parametrize("call,name", READERS, ids=[f"read-{i}" for i in range(len(READERS))])
def test_bad_reader_arguments(tmp_path, call, name):
    log_dir = tmp_path / "logs"
    with RunWriter(log_dir, run_id="m", flush_rows=16) as w:
        mon = LayerMonitor(n_layers=4, signals=SIGNALS, window=4, writer=w)
        for s in range(30):
            mon.check({"grad_norm": [1.0, 2.0, 3.0 + s % 3, 4.0], "act_norm": [1.0, 1.5, 2, 3]})
    before = snapshot(log_dir)
    with pytest.raises(StreamtopoError) as info:
        call(w.run_dir)
    assert name in str(info.value)
    assert snapshot(log_dir) == before


def test_the_sweep_is_large_enough():
    assert len(CTOR) + len(ROWS) + len(READERS) >= 80
