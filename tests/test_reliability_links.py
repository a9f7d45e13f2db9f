"""Issue 16 item 9 (I/O parts): layer names are escaped in report.md and report.html; symbolic
links to ranks, parts and journals are refused like linked run directories."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from streamtopo.errors import RecoveryError
from streamtopo.io import RunWriter, read_run, recover, replay
from streamtopo.report import build_report
from tests.journal_rows import layer_row
from tests.reliability_io_helpers import hashes, run_with_parts

EVIL = "<img src=x onerror=alert(1)>"


def test_layer_names_are_escaped_in_markdown_and_html(tmp_path):
    names = (EVIL, "fc|2", "*bold*")
    with RunWriter(tmp_path, run_id="x") as w:
        for s in range(30):
            w(
                {
                    "monitor": "layer",
                    "step": s,
                    "wall_time": 0.0,
                    "signals": ("grad_norm",),
                    "layer_names": names,
                    "values": np.array([[1.0, 2.0, 3.0 + s]], np.float32),
                    "h0": 1.0,
                    "state": "WATCH" if s > 20 else "HEALTHY",
                    "reason": f"layer rule: {EVIL} rose",
                    "config": {},
                }
            )
        w({"monitor": "collapse", "step": 0, "wall_time": 0.0, "culprit": EVIL, "config": {}})
    paths = build_report(w.run_dir, tmp_path / "out" / "report.html")
    md = paths.markdown.read_text()
    page = paths.html.read_text()
    assert EVIL not in md and "<img src=x" not in md
    assert EVIL not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in md  # still legible, as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "| culprit | " in md and "fc|2" not in md


def test_a_symlinked_rank_directory_is_refused(tmp_path):
    run = run_with_parts(tmp_path, steps=12)
    other = run_with_parts(tmp_path / "other", run_id="o", steps=5)
    (run / "table=layer" / "rank=1").symlink_to(
        other / "table=layer" / "rank=0", target_is_directory=True
    )
    before = hashes(run)
    for call in (lambda: read_run(run), lambda: recover(run), lambda: replay(run)):
        with pytest.raises(RecoveryError, match=r"rank=1 is a symbolic link"):
            call()
    assert hashes(run) == before


def test_a_journal_linked_from_outside_is_refused_by_recover(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    with RunWriter(outside, run_id="o", flush_rows=3, roll_rows=10**6) as w:
        for s in range(6):
            w(layer_row(100 + s))
        w.flush()
        stolen = outside / "copy.arrows"
        shutil.copy(w.rank_dir / "part-000000.arrows", stolen)
    run = run_with_parts(tmp_path, steps=12)
    link = run / "table=layer" / "rank=0" / "part-000009.arrows"
    link.symlink_to(stolen)
    before, outside_before = hashes(run), stolen.read_bytes()
    with pytest.raises(RecoveryError, match=r"part-000009\.arrows is a symbolic link"):
        recover(run)
    with pytest.raises(RecoveryError, match="symbolic link"):
        RunWriter(tmp_path, run_id="r", resume="allow")
    with pytest.raises(RecoveryError, match="symbolic link"):
        read_run(run, include_journal=True)
    assert hashes(run) == before and link.is_symlink()
    assert stolen.read_bytes() == outside_before
    link.unlink()
    assert read_run(run).collect()["step"].to_list() == list(range(12))


def test_a_symlinked_part_is_refused_by_readers(tmp_path):
    run = run_with_parts(tmp_path, steps=20)
    other = run_with_parts(tmp_path / "o", run_id="o", steps=10)
    (run / "table=layer" / "rank=0" / "part-000005.parquet").symlink_to(
        other / "table=layer" / "rank=0" / "part-000000.parquet"
    )
    with pytest.raises(RecoveryError, match=r"part-000005\.parquet is a symbolic link"):
        read_run(run)
    with pytest.raises(RecoveryError, match="symbolic link"):
        recover(run)
