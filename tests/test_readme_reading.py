"""README "Reading your run": the polars and DuckDB snippets run on a real run directory."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from streamtopo import LayerMonitor
from streamtopo.io import RunWriter

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _section() -> str:
    text = README.read_text()
    return text.split("## Reading your run", 1)[1].split("\n## ", 1)[0]


def _block(needle: str) -> str:
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", _section(), re.S) if needle in b]
    return block


def test_polars_and_duckdb_snippets_read_the_run(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    with RunWriter(tmp_path / "runs", run_id="exp1") as w:
        mon = LayerMonitor(n_layers=5, signals=("act_norm",), writer=w)
        for t in range(300):
            v = np.exp(rng.normal(0, 0.05, 5)) * np.arange(1, 6)
            if t >= 250:
                v[2] *= 100.0
            mon.check(v)
    monkeypatch.chdir(tmp_path)
    import streamtopo

    scope: dict = {"streamtopo": streamtopo}
    exec(compile(_block("read_run"), "README polars", "exec"), scope)
    alarms = scope["layer"].filter(scope["pl"].col("state") != "HEALTHY").collect()
    assert alarms.height > 0 and alarms["step"].min() >= 250
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_block("import duckdb"), "README duckdb", "exec"), {})
    rows = [r.split("│")[1:4] for r in out.getvalue().splitlines() if "│" in r]
    counts = {state.strip(): int(n) for state, n, _ in rows[2:]}
    assert counts["HEALTHY"] + sum(v for k, v in counts.items() if k != "HEALTHY") == 300
    assert set(counts) - {"HEALTHY"} and counts["HEALTHY"] >= 250


def test_linked_examples_exist():
    for name in re.findall(r"`(\w+\.py)`", _section()):
        assert (ROOT / "examples" / name).is_file(), name
