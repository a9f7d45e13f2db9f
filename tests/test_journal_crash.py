"""Crash safety with real processes: SIGKILL at random moments (also mid-roll), SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamtopo.io import RunWriter, read_run, recover
from tests.journal_rows import expected_values, layer_row

ROOT = Path(__file__).resolve().parents[1]
N_LAYERS = 48  # 96 columns: rolls take long enough to be hit mid-way


class Child:
    """The logging child process and the lines it printed."""

    def __init__(self, tmp_path: Path, run_id: str, flush_rows: int, roll_rows: int, *extra):
        self.progress_path = tmp_path / f"progress-{run_id}-{time.monotonic_ns()}"
        np.memmap(self.progress_path, dtype=np.int64, mode="w+", shape=(2,))[:] = -1
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "_journal_child.py"),
                str(tmp_path / "logs"),
                run_id,
                str(flush_rows),
                str(roll_rows),
                str(N_LAYERS),
                str(self.progress_path),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.lines: list[str] = []
        self.ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.ready.wait(60):
            self.proc.kill()
            raise AssertionError(f"child did not start: {self.proc.stderr.read()}")

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.strip())
            if line.startswith("ready"):
                self.ready.set()

    def finish(self) -> tuple[int, str]:
        rc = self.proc.wait(30)
        self._reader.join(30)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc, err

    @property
    def start_step(self) -> int:
        return int(self.lines[0].split()[1])

    def last_flushed(self) -> int:
        flushed = [int(x.split()[1]) for x in self.lines if x.startswith("flushed ")]
        return max(flushed, default=-1)

    def appended(self) -> tuple[int, int]:
        p = np.memmap(self.progress_path, dtype=np.int64, mode="r", shape=(2,))
        return int(p[0]), int(p[1])


def check_run(run_dir: Path, at_least: int) -> pl.DataFrame:
    """Steps 0..M contiguous, no duplicates, M >= at_least, every cell right, parts open."""
    parts = list(run_dir.glob("table=*/rank=*/*.parquet"))
    for part in parts:
        pl.read_parquet(part)  # every part opens
    if not parts:  # killed before its first flush (only possible if nothing was reported)
        assert at_least < 0
        return pl.DataFrame({"step": []}, schema={"step": pl.Int64})
    assert not list(run_dir.glob("**/*.tmp")), "a temporary file survived recovery"
    assert not list(run_dir.glob("**/*.arrows")), "a journal survived recovery"
    df = pl.scan_parquet(run_dir / "table=layer/**/*.parquet", hive_partitioning=True).collect()
    steps = df["step"].sort().to_numpy()
    assert steps.size > at_least
    np.testing.assert_array_equal(steps, np.arange(steps.size))  # contiguous, no duplicates
    sample = df.sample(min(df.height, 200), seed=0)
    cols = [c for c in df.columns if "/" in c]
    want = np.stack([expected_values(s, N_LAYERS).reshape(-1) for s in sample["step"]])
    np.testing.assert_array_equal(sample.select(cols).to_numpy(), want)
    return df


def test_sigkill_at_random_moments_and_mid_roll_loses_nothing_flushed(tmp_path):
    rng = np.random.default_rng(20261123)
    run_dir = tmp_path / "logs" / "run=kill"
    mid_roll_seen = 0
    total_reported = -1  # largest step on disk after the previous trial
    # 4 kills at random moments, then 2 kills the instant a roll's .tmp appears; each child
    # resumes the run the previous one left, so recovery-on-open and resume are tested too
    for trial in range(6):
        child = Child(tmp_path, "kill", flush_rows=int(rng.integers(16, 128)), roll_rows=1500)
        assert child.start_step == total_reported + 1  # resumes right after the last row
        if trial < 4:
            time.sleep(float(rng.uniform(0.05, 0.5)))
        else:
            rank_dir = run_dir / "table=layer" / "rank=0"
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not list(rank_dir.glob("*.tmp")):
                time.sleep(0.0005)
        child.proc.send_signal(signal.SIGKILL)
        rc, err = child.finish()
        assert rc == -signal.SIGKILL, err
        leftovers = sorted(p.name for p in (run_dir / "table=layer" / "rank=0").iterdir())
        parts = {n.split(".")[0] for n in leftovers if n.endswith(".parquet")}
        mid_roll = any(n.endswith(".tmp") for n in leftovers) or any(
            n.endswith(".arrows") and n.split(".")[0] in parts for n in leftovers
        )
        mid_roll_seen += mid_roll
        report = recover(run_dir)
        assert not report.quarantined and not report.busy_ranks
        reported = child.last_flushed()
        df = check_run(run_dir, at_least=reported)
        total_reported = int(df["step"].max()) if df.height else -1
        assert total_reported >= reported
        assert recover(run_dir).clean  # idempotent
    assert mid_roll_seen >= 1, "no trial hit a roll in progress"


def wait_for_rows(child, n: int, timeout: float = 60.0) -> None:
    """Wait until the child has appended ``n`` rows (not a fixed sleep: the machine is shared)."""
    deadline = time.monotonic() + timeout
    while child.appended()[1] < n:
        assert child.proc.poll() is None, "child exited early"
        assert time.monotonic() < deadline, "child appended too few rows"
        time.sleep(0.01)


def test_sigterm_flushes_everything(tmp_path):
    child = Child(tmp_path, "term", flush_rows=4096, roll_rows=100000)
    wait_for_rows(child, 10)
    child.proc.send_signal(signal.SIGTERM)
    rc, err = child.finish()
    assert rc == -signal.SIGTERM, err  # the default action still ends the process
    started, done = child.appended()
    assert done > 0
    # a big flush_rows: most rows were only in the buffer when the signal came
    assert child.last_flushed() < done
    run_dir = tmp_path / "logs" / "run=term"
    recover(run_dir)
    df = check_run(run_dir, at_least=done - 1)
    assert done <= df["step"].max() <= started  # every completed append is on disk


def test_sigterm_runs_the_previous_handler_after_flushing(tmp_path):
    # the child's own handler raises SystemExit(7): atexit then closes the writer cleanly
    child = Child(tmp_path, "chain", 4096, 100000, "chain")
    wait_for_rows(child, 10)
    child.proc.send_signal(signal.SIGTERM)
    rc, err = child.finish()
    assert rc == 7, err
    started, done = child.appended()
    run_dir = tmp_path / "logs" / "run=chain"
    assert not list(run_dir.glob("**/*.arrows"))  # closed: every journal became a part
    assert recover(run_dir).clean
    df = check_run(run_dir, at_least=done - 1)
    assert done <= df["step"].max() <= started


@pytest.mark.parametrize("sig", [signal.SIGKILL])
def test_reader_sees_a_live_run_with_include_journal(tmp_path, sig):
    child = Child(tmp_path, "live", flush_rows=32, roll_rows=400)
    time.sleep(0.3)
    run_dir = tmp_path / "logs" / "run=live"
    seen_before = child.last_flushed()
    live = read_run(run_dir, include_journal=True).collect()  # while the child writes
    steps = live["step"].to_numpy()
    assert steps.size > seen_before
    np.testing.assert_array_equal(steps, np.arange(steps.size))
    report = recover(run_dir)
    assert report.busy_ranks == [0]  # the live writer holds its rank: recovery stays away
    child.proc.send_signal(sig)
    child.finish()
    recover(run_dir)
    check_run(run_dir, at_least=steps.size - 1)


def test_sigterm_inside_a_writer_call_waits_for_the_call_to_end(tmp_path, monkeypatch):
    """The handler runs between bytecodes of the main thread, possibly inside a writer call:
    it must not flush a half-appended buffer, but finish the call first, then flush and chain.
    (In-process: the previous handler is a recording function, no signal is sent.)"""
    from streamtopo.io import _process_hooks as hooks

    calls = []
    w = RunWriter(tmp_path, run_id="defer", flush_rows=100)  # installs the handler
    monkeypatch.setattr(hooks, "PREVIOUS_HANDLER", lambda signum, frame: calls.append(signum))
    for s in range(5):
        w(layer_row(s))
    with w._lock:  # the state the handler finds when it interrupts a call
        hooks.on_sigterm(signal.SIGTERM, None)
        assert calls == [] and w.flushed_step_ == -1  # deferred: nothing touched
    w(layer_row(5))  # the interrupted call ends: flush everything, then the previous handler
    assert calls == [signal.SIGTERM] and w.flushed_step_ == 5
    w(layer_row(6))
    hooks.on_sigterm(signal.SIGTERM, None)  # outside any call: at once
    assert calls == [signal.SIGTERM] * 2 and w.flushed_step_ == 6
    w.close()
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(7))
