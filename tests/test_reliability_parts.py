"""Issue 16 items 3 and 4a: one bad Parquet part no longer makes a run unreadable, and a missing
part is a named step gap, not silence."""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import RecoveryError, RecoveryWarning, StepGapWarning
from streamtopo.io import RunWriter, read_run, recover, replay
from streamtopo.report import build_report
from tests.journal_rows import layer_row
from tests.reliability_io_helpers import hashes, run_with_parts

CORRUPTIONS = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: np.random.default_rng(0).bytes(len(data)),
    "empty": lambda data: b"",
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_a_bad_part_is_named_then_quarantined_and_the_rest_reads(tmp_path, how):
    run = run_with_parts(tmp_path)
    bad = run / "table=layer" / "rank=0" / "part-000001.parquet"
    data = CORRUPTIONS[how](bad.read_bytes())
    bad.write_bytes(data)
    before = hashes(run)
    # every reader names the file and says what to run
    for call in (
        lambda: read_run(run),
        lambda: replay(run, monitor=LayerMonitor(n_layers=4, signals=("grad_norm", "act_norm"))),
        lambda: build_report(run, tmp_path / "out" / "report.html"),
    ):
        with pytest.raises(RecoveryError, match=r"part-000001\.parquet") as info:
            call()
        assert f"streamtopo recover {run}" in str(info.value)
    assert hashes(run) == before  # readers changed nothing
    # recover moves it aside, bytes kept, and says so
    report = recover(run)
    assert (
        len(report.quarantined) == 1
        and "table=layer/rank=0/part-000001.parquet" in report.quarantined[0]
    )
    assert "_quarantine" in str(report) and "bytes kept" in str(report)
    moved = run / "_quarantine" / "table=layer" / "rank=0" / "part-000001.parquet.corrupt"
    assert moved.read_bytes() == data
    # no reader globs the quarantine: the rest of the run reads (with the hole named)
    with pytest.warns(StepGapWarning, match=r"steps 10\.\.19"):
        steps = read_run(run).collect()["step"].to_list()
    assert steps == [*range(10), *range(20, 30)]
    with pytest.warns(StepGapWarning, match=r"steps 10\.\.19"):
        out = replay(run, monitor=LayerMonitor(n_layers=4, signals=("grad_norm", "act_norm")))
    assert out["step"].to_list() == steps
    with pytest.warns(StepGapWarning):
        assert build_report(run, tmp_path / "out" / "report.html").markdown.exists()
    # the writer reopens the run and does not reuse the quarantined index
    with RunWriter(tmp_path, run_id="r", resume="allow") as w:
        assert w.next_step_ == 30
        w(layer_row(30))
    assert (run / "table=layer" / "rank=0" / "part-000003.parquet").exists()
    assert recover(run).clean


def test_reopening_a_writer_quarantines_a_bad_part_and_warns(tmp_path, caplog):
    run = run_with_parts(tmp_path)
    bad = run / "table=layer" / "rank=0" / "part-000002.parquet"
    bad.write_bytes(b"PAR1 not really")
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        with pytest.warns(RecoveryWarning, match="part-000002.parquet"):
            w = RunWriter(tmp_path, run_id="r", resume="allow")
    assert caplog.records == []  # the writer says it once, as a warning (not also a log record)
    assert w.recovery_.quarantined and "part-000002.parquet" in w.recovery_.quarantined[0]
    assert w.next_step_ == 20  # the steps of the quarantined part are unknown: they may be reused
    w(layer_row(20))
    w.close()
    assert (run / "_quarantine" / "table=layer" / "rank=0" / "part-000002.parquet.corrupt").exists()
    assert read_run(run).collect()["step"].to_list() == list(range(21))


def test_recover_logs_each_quarantined_file(tmp_path, caplog):
    run = run_with_parts(tmp_path)
    (run / "table=layer" / "rank=0" / "part-000000.parquet").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        recover(run)
    assert any("part-000000.parquet" in r.getMessage() for r in caplog.records)


def test_a_journal_whose_part_is_bad_is_converted_again(tmp_path):
    """Killed between os.replace(part) and unlink(journal), and the part was then damaged: the
    journal is the good copy. Quarantining first keeps its rows (deleting it as 'already
    converted' would lose them)."""
    with RunWriter(tmp_path, run_id="j", flush_rows=5, roll_rows=10**6) as w:
        for s in range(10):
            w(layer_row(s))
        w.flush()
        journal = w.rank_dir / "part-000000.arrows"
        kept = journal.read_bytes()
    journal.write_bytes(kept)  # the crash left the journal beside its part
    (w.rank_dir / "part-000000.parquet").write_bytes(b"truncated")
    report = recover(w.run_dir)
    assert report.parts_written == ["table=layer/rank=0/part-000000.parquet"] and report.quarantined
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(10))


def test_a_flipped_byte_inside_a_page_is_found_by_recover(tmp_path):
    """The footer still opens, so readers cannot see it up front; replay names the run and
    recover (which decodes every page) quarantines the part."""
    run = run_with_parts(tmp_path, steps=20)
    part = run / "table=layer" / "rank=0" / "part-000001.parquet"
    data = bytearray(part.read_bytes())
    for k in range(8, 200):  # inside the first column chunk's compressed pages
        data[k] ^= 0xFF
    part.write_bytes(bytes(data))
    monitor = LayerMonitor(n_layers=4, signals=("grad_norm", "act_norm"))
    with pytest.raises(RecoveryError, match="streamtopo recover"):
        replay(run, monitor=monitor)
    assert not recover(run, verify=False).quarantined  # footers alone look fine
    report = recover(run)
    assert len(report.quarantined) == 1 and "part-000001" in report.quarantined[0]
    assert read_run(run).collect()["step"].to_list() == list(range(10))


# -- 4a: step gaps --------------------------------------------------------------------------
def test_a_deleted_middle_part_is_a_named_step_gap(tmp_path):
    run = run_with_parts(tmp_path, steps=50)
    (run / "table=layer" / "rank=0" / "part-000001.parquet").unlink()
    (run / "table=layer" / "rank=0" / "part-000003.parquet").unlink()
    with pytest.warns(StepGapWarning) as rec:
        df = read_run(run).collect()
    msg = str(rec[0].message)
    assert "steps 10..19" in msg and "steps 30..39" in msg and "rank 0" in msg
    assert df["step"].to_list() == [*range(10), *range(20, 30), *range(40, 50)]
    with pytest.warns(StepGapWarning, match=r"steps 10\.\.19"):
        replay(run, monitor=LayerMonitor(n_layers=4, signals=("grad_norm", "act_norm")))


def test_gap_between_a_part_and_a_live_journal(tmp_path):
    with RunWriter(tmp_path, run_id="g", flush_rows=5, roll_rows=10) as w:
        for s in range(30):
            w(layer_row(s))
        w.flush()
        part = w.rank_dir / "part-000001.parquet"
        deadline = time.monotonic() + 30
        while not part.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # rolled by the background thread
        part.unlink()
        with pytest.warns(StepGapWarning, match=r"steps 10\.\.19"):
            read_run(w.run_dir, include_journal=True).collect()


def test_a_sparse_schedule_is_not_a_gap_but_a_hole_in_it_is(tmp_path):
    """Steps every 5 (a monitor checked every 5th training step): the stride is 5."""
    with RunWriter(tmp_path, run_id="s", flush_rows=4, roll_rows=4) as w:
        for s in range(0, 60, 5):
            w(layer_row(s))
    assert read_run(w.run_dir).collect().height == 12  # no warning (filterwarnings=error)
    (w.rank_dir / "part-000001.parquet").unlink()  # steps 20, 25, 30, 35
    with pytest.warns(StepGapWarning, match=r"steps 20\.\.35"):
        read_run(w.run_dir)


def test_a_healthy_resumed_run_and_a_rewind_are_not_gaps(tmp_path):
    run = run_with_parts(tmp_path, steps=20)
    with RunWriter(tmp_path, run_id="r", resume="allow", rewind_to=15, flush_rows=10) as w:
        for s in range(15, 25):
            w(layer_row(s))
    assert read_run(run).collect().height == 30  # overlaps are not holes: no warning
    shutil.rmtree(run / "table=layer" / "rank=0")
    assert read_run(run).collect().height == 0
