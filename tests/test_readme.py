"""The README's quick start runs as written and does what it says."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_opens_with_the_two_commands():
    lines = [ln for ln in README.read_text().splitlines() if ln.startswith("python3 -m venv")]
    assert len(lines) >= 2
    assert lines[0].endswith("streamtopo demo")
    assert lines[1].endswith("python -m pytest")


def test_quick_start_names_the_diverging_layer():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_python_blocks()[0], "README quick start", "exec"), {})
    first, second = out.getvalue().splitlines()[:2]
    step, *_ = first.split()
    assert int(step) == 300, first  # the change detector: a x50 jump at once
    assert "WATCH ('7',) cusum: 7 [" in first and "jump x" in first
    step, state, culprits, rule = second.split()[:4]  # the streak rule: |z| > 6 for 8
    assert state == "COLLAPSE" and 305 <= int(step) <= 310 and culprits == "('7',)", second
    assert rule.startswith("topology"), second


def test_the_log_reading_snippet_reads_the_run_layout(tmp_path, monkeypatch):
    import polars as pl

    from streamtopo.io import RunWriter
    from tests.journal_rows import layer_row

    (block,) = [b for b in _python_blocks() if "table=layer" in b and "table=loss" in b]
    monkeypatch.chdir(tmp_path)
    with RunWriter("runs", run_id="exp1") as w:
        for s in range(5):
            w(layer_row(s))
            w({"monitor": "loss", "step": s, "wall_time": 0.0, "config": {}, "loss": 1.0 / (s + 1)})
    out = io.StringIO()
    scope: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(block, "README logs", "exec"), scope)
    assert "shape: (5, 3)" in out.getvalue()
    assert scope["layer_rows"].num_rows == 5
    assert isinstance(scope["layer"], pl.LazyFrame)
