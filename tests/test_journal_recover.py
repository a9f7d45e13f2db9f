"""recover(): torn, empty and garbage journals, stray temporary files, bad _meta.json, CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamtopo.app.cli import main
from streamtopo.errors import RecoveryError
from streamtopo.io import RunWriter, read_run, recover
from tests.journal_rows import layer_row

FLUSH = 5


def crashed_run(tmp_path: Path, n_rows: int = 23, run_id: str = "crash"):
    """A run whose writer 'died': a copy of its directory taken while a journal was open.

    Returns the copied run dir and, for the open journal, the file size after each flush.
    """
    w = RunWriter(tmp_path / "live", run_id=run_id, flush_rows=FLUSH, roll_rows=10**6)
    for s in range(10):  # a first, committed part
        w(layer_row(s))
    w.close()
    w = RunWriter(
        tmp_path / "live", run_id=run_id, flush_rows=FLUSH, roll_rows=10**6, resume="allow"
    )
    sizes = []
    for s in range(10, 10 + n_rows):
        w(layer_row(s))
        if (s + 1 - 10) % FLUSH == 0:
            sizes.append((s, (w.rank_dir / "part-000001.arrows").stat().st_size))
    dead = tmp_path / "dead" / f"run={run_id}"
    shutil.copytree(w.run_dir, dead, ignore=shutil.ignore_patterns(".lock"))
    w.close()
    return dead, sizes


def steps_of(run_dir: Path) -> list[int]:
    return read_run(run_dir).collect()["step"].to_list()


def test_recover_a_journal_left_open(tmp_path):
    dead, _ = crashed_run(tmp_path)
    report = recover(dead)
    assert report.parts_written == ["table=layer/rank=0/part-000001.parquet"]
    assert report.rows_recovered == 20 and not report.torn
    assert steps_of(dead) == list(range(30))  # 10 committed + 4 flushes of 5
    assert recover(dead).clean


@pytest.mark.parametrize("cut", ["schema", "mid_batch", "boundary", "one_byte_short", "random"])
def test_truncated_journal_keeps_every_complete_batch(tmp_path, cut):
    dead, sizes = crashed_run(tmp_path)
    journal = dead / "table=layer" / "rank=0" / "part-000001.arrows"
    data = journal.read_bytes()
    rng = np.random.default_rng(len(cut))
    length = {
        "schema": 37,
        "mid_batch": (sizes[1][1] + sizes[2][1]) // 2,
        "boundary": sizes[2][1],
        "one_byte_short": sizes[3][1] - 1,
        "random": int(rng.integers(1, len(data))),
    }[cut]
    journal.write_bytes(data[:length])
    # independent expectation: the batches whose last byte is within the cut
    complete = [s for s, end in sizes if end <= length]
    last = complete[-1] if complete else 9
    report = recover(dead)
    assert steps_of(dead) == list(range(last + 1))
    assert report.rows_recovered == last - 9
    assert not list(dead.glob("**/*.arrows")) and not report.quarantined
    assert recover(dead).clean


def test_zero_byte_journal_and_stray_tmp_are_removed(tmp_path):
    dead, _ = crashed_run(tmp_path)
    rank = dead / "table=layer" / "rank=0"
    (rank / "part-000007.arrows").write_bytes(b"")
    (rank / "part-000003.parquet.tmp").write_bytes(b"PAR1 half a file")
    (rank / "centroid-000002.pq.tmp").write_bytes(b"junk")
    (dead / "_meta.json.4242.tmp").write_bytes(b'{"half": ')
    report = recover(dead)
    assert sorted(report.tmp_removed) == [
        "_meta.json.4242.tmp",
        "table=layer/rank=0/centroid-000002.pq.tmp",
        "table=layer/rank=0/part-000003.parquet.tmp",
    ]
    assert "table=layer/rank=0/part-000007.arrows" in report.journals_removed
    assert steps_of(dead) == list(range(30))
    assert sorted(p.name for p in rank.iterdir() if p.name != ".lock") == [
        "part-000000.parquet",
        "part-000001.parquet",
    ]


def test_garbage_journal_is_moved_aside_never_deleted(tmp_path):
    dead, _ = crashed_run(tmp_path)
    rank = dead / "table=layer" / "rank=0"
    garbage = np.random.default_rng(0).bytes(5000)
    (rank / "part-000004.arrows").write_bytes(garbage)
    report = recover(dead)
    assert len(report.quarantined) == 1 and "part-000004.arrows" in report.quarantined[0]
    moved = dead / "_quarantine" / "table=layer" / "rank=0" / "part-000004.arrows.corrupt"
    assert moved.read_bytes() == garbage
    assert steps_of(dead) == list(range(30))  # the good journal was still recovered
    # a writer reopening the run does not reuse the quarantined index
    with RunWriter(dead.parent, run_id="crash", flush_rows=2, resume="allow") as w:
        assert w.next_step_ == 30
        w(layer_row(30))
    assert (rank / "part-000005.parquet").exists()
    assert steps_of(dead) == list(range(31))


def test_journal_with_a_foreign_schema_is_moved_aside(tmp_path):
    other, _ = crashed_run(tmp_path / "other", run_id="crash")
    # a journal of a 4-layer run dropped into a run registered with 6 layers
    with RunWriter(tmp_path / "six", run_id="six") as w:
        w(layer_row(0, n_layers=6))
    shutil.copy(
        other / "table=layer" / "rank=0" / "part-000001.arrows", w.rank_dir / "part-000009.arrows"
    )
    report = recover(w.run_dir)
    assert len(report.quarantined) == 1 and "schema" in report.quarantined[0]
    assert steps_of(w.run_dir) == [0]


def test_journal_whose_part_exists_is_only_deleted(tmp_path):
    # killed between os.replace(part) and unlink(journal): no duplicated rows
    dead, _ = crashed_run(tmp_path)
    rank = dead / "table=layer" / "rank=0"
    journal = rank / "part-000001.arrows"
    kept = journal.read_bytes()
    recover(dead)
    journal.write_bytes(kept)
    report = recover(dead)
    assert report.journals_removed == ["table=layer/rank=0/part-000001.arrows"]
    assert not report.parts_written
    assert steps_of(dead) == list(range(30))


@pytest.mark.parametrize(
    "text,match",
    [
        (None, "format_version 99"),
        ("{not json", "not valid JSON"),
        ('{"format": "something else"}', "not a streamtopo run"),
    ],
)
def test_bad_meta_raises_recovery_error_and_touches_nothing(tmp_path, text, match):
    dead, _ = crashed_run(tmp_path)
    meta_path = dead / "_meta.json"
    if text is None:
        meta = json.loads(meta_path.read_text())
        meta["format_version"] = 99
        text = json.dumps(meta)
    meta_path.write_text(text)
    before = {p: p.read_bytes() for p in dead.rglob("*") if p.is_file()}
    with pytest.raises(RecoveryError, match=match):
        recover(dead)
    with pytest.raises(RecoveryError, match=match):
        RunWriter(dead.parent, run_id="crash")
    with pytest.raises(RecoveryError, match=match):
        read_run(dead)
    after = {p: p.read_bytes() for p in dead.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def test_recover_rejects_what_is_not_a_run(tmp_path):
    with pytest.raises(RecoveryError, match="not a directory"):
        recover(tmp_path / "missing")
    with pytest.raises(RecoveryError, match="not a run directory"):
        recover(tmp_path)


def test_writer_open_recovers_its_rank(tmp_path):
    dead, _ = crashed_run(tmp_path)
    w = RunWriter(dead.parent, run_id="crash", resume="must")
    assert w.recovery_.rows_recovered == 20
    assert w.next_step_ == 30
    w.close()


def test_cli_recover(tmp_path, capsys):
    dead, _ = crashed_run(tmp_path)
    assert main(["recover", str(dead)]) == 0
    out = capsys.readouterr().out
    assert "1 part(s) written, 20 row(s)" in out
    assert main(["recover", str(dead)]) == 0
    assert "nothing to recover" in capsys.readouterr().out
    (dead / "_meta.json").write_text("{")
    assert main(["recover", str(dead)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_read_run_include_journal_on_a_dead_run_changes_nothing(tmp_path):
    dead, _ = crashed_run(tmp_path)
    before = sorted(p.name for p in (dead / "table=layer" / "rank=0").iterdir())
    df = read_run(dead, include_journal=True).collect()
    assert df["step"].to_list() == list(range(30))
    assert sorted(p.name for p in (dead / "table=layer" / "rank=0").iterdir()) == before
    assert read_run(dead).collect()["step"].to_list() == list(range(10))
    assert df.schema == read_run(dead).collect().schema
    assert isinstance(df, pl.DataFrame)
