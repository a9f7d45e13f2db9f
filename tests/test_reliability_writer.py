"""Issue 16 item 8: out-of-range steps are refused at the call; a full disk or a file-size limit
during a flush says what failed, where and what was kept, keeps training and loses no row that
fits in the bounded memory."""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamtopo.errors import (
    InputError,
    InputTypeError,
    StepGapWarning,
    WriteError,
    WriteFailedWarning,
)
from streamtopo.io import RunWriter, read_run
from tests.journal_rows import layer_row
from tests.reliability_io_helpers import FullDisk, hashes, rows

ROOT = Path(__file__).resolve().parents[1]


# -- steps ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "step,error",
    [
        (2**63, InputError),
        (2**62, InputError),
        (-1, InputError),
        (np.uint64(2**63), InputError),
        (np.int64(-5), InputError),
        (1.0, InputTypeError),
        (np.float64(1.0), InputTypeError),
        (True, InputTypeError),
        (np.bool_(True), InputTypeError),
        ("3", InputTypeError),
        (None, InputTypeError),
    ],
)
def test_a_bad_step_is_refused_at_the_call_and_nothing_buffered_changes(tmp_path, step, error):
    with RunWriter(tmp_path, run_id="s", flush_rows=4) as w:
        bad = {**layer_row(0), "step": step}
        with pytest.raises(error, match=r"row\['step'\]"):
            w(bad)  # as the first row: the table is not even registered
        assert not (w.run_dir / "_meta.json").exists()
        rows(w, range(3))
        with pytest.raises(error, match=r"row\['step'\]"):
            w(bad)
        rows(w, range(3, 6))  # the buffer holds 2 rows here: untouched by the bad one
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(6))


def test_the_largest_allowed_step_round_trips(tmp_path):
    with RunWriter(tmp_path, run_id="big") as w:
        w(layer_row(2**62 - 1))
    assert read_run(w.run_dir).collect()["step"].to_list() == [2**62 - 1]


@pytest.mark.parametrize("h0", [2**70, np.uint64(2**64 - 1), 10**400])
def test_a_huge_integer_h0_is_stored_as_float_or_refused_at_the_call(tmp_path, h0):
    with RunWriter(tmp_path, run_id="h") as w:
        if h0 == 10**400:
            with pytest.raises(InputError, match=r"row\['h0'\]"):
                w(layer_row(0, h0=h0))
        else:
            w(layer_row(0, h0=h0))
            w.flush()
    if h0 != 10**400:
        assert read_run(w.run_dir).collect()["h0"].to_list() == [float(h0)]


# -- the disk refuses writes ----------------------------------------------------------------
@pytest.fixture
def disk(monkeypatch):
    """ENOSPC from the journal's file object (a monkeypatched write: a real full disk cannot be
    produced safely on this machine; the real-kernel case is the RLIMIT_FSIZE test below)."""
    fake = FullDisk(pa.OSFile)
    monkeypatch.setattr(pa, "OSFile", fake)
    return fake


def test_full_disk_warns_once_keeps_training_and_loses_nothing(tmp_path, disk, caplog):
    w = RunWriter(tmp_path, run_id="f", flush_rows=4, roll_rows=8)
    rows(w, range(8))  # one committed part (rows 0..7)
    deadline = time.monotonic() + 30
    while not list(w.rank_dir.glob("*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.01)
    committed = hashes(w.rank_dir)
    rows(w, range(8, 10))
    disk.budget = 700  # the next journal gets its schema and part of a batch, then ENOSPC
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        with pytest.warns(WriteFailedWarning) as rec:
            rows(w, range(10, 40))  # several failed flushes: one warning
        assert len(rec) == 1
        msg = str(rec[0].message)
        assert "No space left on device" in msg and "calling thread" in msg
        assert "kept in memory" in msg and "retried at the next flush" in msg
        assert "untouched" in msg
        assert w.pending_rows_ > 0
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "No space left" in errors[0].getMessage()
        disk.budget = None  # space freed
        rows(w, range(40, 44))
        assert w.pending_rows_ == 0
        assert any("writes again" in r.getMessage() for r in caplog.records)
    w.close()
    assert {k: v for k, v in hashes(w.rank_dir).items() if k in committed} == committed
    steps = read_run(w.run_dir).collect()["step"].to_list()
    assert steps == list(range(44))  # no row lost, none twice
    for part in w.rank_dir.glob("*.parquet"):
        pq.read_table(part)  # every part decodes


def test_on_error_raise_raises_at_the_flush_and_keeps_the_rows(tmp_path, disk):
    w = RunWriter(tmp_path, run_id="r", flush_rows=4, on_error="raise")
    rows(w, range(3))
    disk.budget = 0
    with pytest.raises(WriteError, match="calling thread") as info:
        w(layer_row(3))  # the 4th row triggers the flush
    assert "4 'layer' row(s) (steps 0..3) kept in memory" in str(info.value)
    assert isinstance(info.value, OSError) and info.value.__cause__.errno == errno.ENOSPC
    rows(w, range(4, 7))
    with pytest.raises(WriteError):
        w(layer_row(7))
    disk.budget = None
    w.flush()
    w.close()
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(8))


def test_rows_beyond_the_memory_bound_are_dropped_said_and_seen_as_a_gap(tmp_path, disk):
    # layer rows of 4 layers x 2 signals take 96 bytes: roll_bytes=960 bounds memory at 10 rows
    w = RunWriter(tmp_path, run_id="b", flush_rows=4, roll_bytes=960)
    rows(w, range(4))
    disk.budget = 0
    with pytest.warns(WriteFailedWarning) as rec:
        rows(w, range(4, 30))
    text = " | ".join(str(r.message) for r in rec)
    assert "dropped the oldest" in text and "reached 10" in text
    assert w.pending_rows_ <= 10
    disk.budget = None
    w.close()
    with pytest.warns(StepGapWarning, match=r"steps 4\.\."):
        steps = read_run(w.run_dir).collect()["step"].to_list()
    assert steps[:4] == [0, 1, 2, 3] and steps[-1] == 29 and len(steps) <= 14


def test_a_failure_in_the_background_thread_is_said_so(tmp_path, disk):
    w = RunWriter(tmp_path, run_id="bg", flush_rows=100, flush_seconds=0.05)
    rows(w, range(3))
    disk.budget = 0
    deadline = time.monotonic() + 30
    while w.pending_rows_ == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # the timed flush of the background thread fails
    assert w.pending_rows_ == 3
    with pytest.warns(WriteFailedWarning, match="background thread"):
        w(layer_row(3))
    disk.budget = None
    w.close()
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(4))


def test_a_failed_roll_keeps_the_journal_and_removes_its_tmp(tmp_path, monkeypatch):
    real = pq.write_table

    def full(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", full)  # the Parquet writer of the roll
    w = RunWriter(tmp_path, run_id="roll", flush_rows=4, roll_rows=4)
    rows(w, range(4))  # journal 0 is closed and rolled in the background: that fails
    with pytest.warns(WriteFailedWarning, match="rolling journal part-000000.arrows") as rec:
        deadline = time.monotonic() + 30
        while not rec and time.monotonic() < deadline:
            time.sleep(0.01)
            w.flush()  # delivers what the background thread noticed
    assert "background thread" in str(rec[0].message)
    w(layer_row(4))
    assert not list(w.rank_dir.glob("*.tmp"))
    assert (w.rank_dir / "part-000000.arrows").exists()
    monkeypatch.setattr(pq, "write_table", real)
    w.close()  # rolled again at close
    assert not list(w.rank_dir.glob("*.arrows"))
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(5))


def test_closing_on_a_full_disk_says_which_rows_are_lost(tmp_path, disk):
    w = RunWriter(tmp_path, run_id="c", flush_rows=4)
    rows(w, range(4))
    disk.budget = 0
    with pytest.warns(WriteFailedWarning):
        rows(w, range(4, 8))
    with pytest.warns(WriteFailedWarning, match=r"4 'layer' row\(s\) \(steps 4\.\.7\).*lost"):
        w.close()
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(4))


def test_a_real_file_size_limit_mid_write_loses_no_row(tmp_path):
    """Real kernel refusals: RLIMIT_FSIZE in a child process (EFBIG once a journal would grow
    past 5000 bytes, cutting batches short mid-write), then the limit lifted."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_fsize_child.py"), str(tmp_path), "5000"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["warnings"], out
    assert out["warnings"][0].startswith("WriteFailedWarning: ")
    assert "File too large" in out["warnings"][0] and "kept in memory" in out["warnings"][0]
    assert out["pending_after"] == 0
    df = read_run(tmp_path / "run=fs").collect()
    assert df["step"].to_list() == list(range(208))


def test_a_table_that_cannot_be_registered_is_a_write_error_and_nothing_changes(
    tmp_path, monkeypatch
):
    """_meta.json cannot be written (a monkeypatched ENOSPC from its atomic write)."""
    from streamtopo.io import _meta

    real = _meta.write_json_atomic

    def full(path, obj, *, fsync=False):
        raise OSError(errno.ENOSPC, "No space left on device")

    with RunWriter(tmp_path, run_id="reg") as w:
        monkeypatch.setattr(_meta, "write_json_atomic", full)
        with pytest.raises(WriteError, match=r"registering table 'layer' in _meta\.json"):
            w(layer_row(0))
        assert not (w.run_dir / "_meta.json").exists()
        monkeypatch.setattr(_meta, "write_json_atomic", real)
        w(layer_row(0))  # the same row once the disk accepts it
    assert read_run(w.run_dir).collect()["step"].to_list() == [0]
