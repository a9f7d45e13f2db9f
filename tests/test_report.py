"""Report: real run directory in, HTML with inline figures and markdown summary out."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.app.cli import main
from streamtopo.io import RunWriter
from streamtopo.report import build_report, run_summary


@pytest.fixture
def run_dir(tmp_path):
    rng = np.random.default_rng(0)
    with RunWriter(tmp_path, run_id="r") as w:
        mon = LayerMonitor(n_layers=6, signals=("act_norm",), writer=w)
        for t in range(400):
            v = np.exp(rng.normal(0, 0.05, 6)) * np.arange(1, 7)
            if 250 <= t < 300:
                v[2] *= 100.0
            mon.check(v)
        w({"monitor": "centroid", "step": 399, "wall_time": 0.0, "h0_gap": 0.1, "config": {}})
        return w.run_dir, mon.summary()


def test_report_html_and_markdown(run_dir):
    path, summary = run_dir
    paths = build_report(path)
    page = paths.html.read_text()
    pngs = re.findall(r"base64,([A-Za-z0-9+/=]+)", page)
    assert paths.figures == len(pngs) >= 2
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    md = paths.markdown.read_text()
    assert "Alarm episodes" in md and "Centroid monitor" in md
    # the injected layer (index 2, named "2") is named in the first alarm episode's reason
    first_episode = md.split("Alarm episodes (why each began):")[1].strip().splitlines()[0]
    assert "2 z=" in first_episode, first_episode
    assert f"| first_collapse_step | {summary['first_collapse_step']} |" in md


def test_run_summary_counts_match_monitor(run_dir):
    from streamtopo.io import read_run

    path, summary = run_dir
    s = run_summary(read_run(path).collect().sort("step"))
    assert s["collapse_steps"] == summary["collapse_steps"]
    assert s["watch_steps"] == summary["watch_steps"]
    assert s["steps"] == 400


def test_report_cli_and_bad_path(run_dir, tmp_path, capsys):
    path, _ = run_dir
    out = tmp_path / "x" / "r.html"
    assert main(["report", str(path), "--out", str(out)]) == 0
    assert out.is_file() and out.with_suffix(".md").is_file()
    assert main(["report", str(tmp_path / "nope")]) == 1
    assert "_meta.json" in capsys.readouterr().err
