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


def test_static_report_html_and_markdown(run_dir):
    path, summary = run_dir
    paths = build_report(path, path.parent / "static.html", interactive=False)
    page = paths.html.read_text()
    pngs = re.findall(r"base64,([A-Za-z0-9+/=]+)", page)
    assert paths.figures == len(pngs) >= 2
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    md = paths.markdown.read_text()
    assert "Alarm episodes" in md and "centroid (last row of 1)" in md
    # the injected layer (index 2, named "2") is named in the first alarm episode's reason
    first_episode = md.split("Alarm episodes (why each began):")[1].strip().splitlines()[0]
    assert "cusum: 2 \\[act_norm" in first_episode, first_episode
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


def test_report_is_written_beside_the_run_never_inside(run_dir):
    import pyarrow.dataset as ds

    from streamtopo.errors import InputError

    path, _ = run_dir
    paths = build_report(path)
    assert paths.html == path.parent / "run=r.report.html" and paths.markdown.is_file()
    assert not list(path.rglob("*.html"))
    rows = ds.dataset(path / "table=layer", format="parquet", partitioning="hive").count_rows()
    assert rows == 400
    before = sorted(p.name for p in path.iterdir())
    with pytest.raises(InputError, match="outside the run directory"):
        build_report(path, path / "report.html")
    assert sorted(p.name for p in path.iterdir()) == before


def test_headline_names_the_first_alarm_step_rule_and_layer(run_dir):
    from streamtopo.io import read_run

    path, _ = run_dir
    df = read_run(path).collect()
    first = df.filter(df["state"] != "HEALTHY").row(0, named=True)
    page = build_report(path).html.read_text()
    head = page.split('<section id="headline"')[1].split("</section>")[0]
    assert "NOT HEALTHY" in head
    assert f"First alarm: step {first['step']}, {first['state']}" in head
    rule = first["reason"].split(":")[0]
    assert f"by rule &#x27;{rule}&#x27;" in head and "2" in first["culprits"]
    assert "in layers 2" in head and "No loss table" in head
    md = build_report(path).markdown.read_text()
    assert f"First alarm: step {first['step']}" in md


def test_a_healthy_run_says_so_and_the_loss_rule_lead_is_measured(tmp_path):
    rng = np.random.default_rng(1)
    with RunWriter(tmp_path, run_id="ok") as w:
        mon = LayerMonitor(n_layers=6, signals=("act_norm",), writer=w)
        for t in range(300):
            mon.check(np.exp(rng.normal(0, 0.05, 6)) * np.arange(1, 7))
            w({"monitor": "loss", "step": t, "wall_time": 0.0, "loss": 1.0 / (t + 1),
               "state": "HEALTHY", "reason": "", "config": {}})  # fmt: skip
    page = build_report(w.run_dir).html.read_text()
    head = page.split('<section id="headline"')[1].split("</section>")[0]
    assert ">HEALTHY<" in head and "Healthy: no alarm in 300 recorded steps." in head
    assert "The loss rule never fired." in head


def test_without_plotly_the_report_falls_back_to_static_figures(run_dir, monkeypatch):
    import sys

    path, _ = run_dir
    monkeypatch.setitem(sys.modules, "plotly", None)
    paths = build_report(path, path.parent / "fallback.html")
    page = paths.html.read_text()
    assert "plotly" not in page.lower().split("</title>")[0]
    assert paths.figures >= 2 and 'src="data:image/png;base64,' in page
    assert "Plotly.newPlot" not in page and 'id="headline"' in page


def test_long_lines_are_decimated_keeping_spikes_and_gaps():
    from streamtopo.report.interactive import decimate, heat_matrix

    y = np.ones(100_000)
    y[31_337], y[77_000] = 50.0, np.nan
    keep = decimate(y, 6000)
    assert len(keep) <= 6000 and 31_337 in keep and 77_000 in keep and keep[0] == 0
    assert np.array_equal(decimate(y[:100], 6000), np.arange(100))
    values = np.ones((10_000, 3))
    values[5_000, 1], values[:10, 2], values[9_999, 0] = 1e9, 0.0, np.inf
    m, nonfinite, zero, starts, lo, hi = heat_matrix(values, np.ones(10_000, bool), 100)
    assert m.shape == (100, 3) and len(starts) == 100 and lo == hi - 1e-6 == 0.0
    assert m[50, 1] == 9.0 and nonfinite[99, 0] and zero[0, 2] and not zero[1, 2]


def test_guard_interventions_and_other_tables_are_in_the_headline_and_panels(tmp_path):
    rng = np.random.default_rng(2)
    with RunWriter(tmp_path, run_id="g") as w:
        mon = LayerMonitor(n_layers=4, signals=("act_norm",), writer=w)
        for t in range(300):
            v = np.exp(rng.normal(0, 0.05, 4)) * np.arange(1, 5)
            v[1] *= 100.0 if t >= 240 else 1.0
            mon.check(v)
            if t in (250, 280):
                w({"monitor": "interventions", "step": t, "wall_time": 0.0,
                   "action": "rollback", "to_step": t - 50, "config": {}})  # fmt: skip
            if t % 10 == 0:
                w({"monitor": "attention", "step": t // 10, "wall_time": float(t),
                   "attn_entropy/h.0": 1.0, "attn_entropy/h.1": 2.0, "config": {}})  # fmt: skip
    page = build_report(w.run_dir).html.read_text()
    head = page.split('<section id="headline"')[1].split("</section>")[0]
    assert "Guard interventions: 2 (step 250: rollback; step 280: rollback)" in head
    assert "intervention 1" in page and "attention: log10 attn_entropy per layer" in page


def test_headline_counts_the_centroid_gap_rule_not_its_test_loss_patience():
    import polars as pl

    from streamtopo.report.headline import headline

    layer = pl.DataFrame({"step": [0, 1, 2, 3], "state": ["HEALTHY"] * 4,
                          "calibrating": [True, True, False, False]})  # fmt: skip
    centroid = pl.DataFrame({"step": [1, 2, 3], "state": ["WATCH", "WATCH", "COLLAPSE"],
                             "alert": [False, False, True],
                             "reason": ["loss", "loss", "gap"]})  # fmt: skip
    h = headline({"layer": layer, "centroid": centroid})
    assert not h.healthy and h.first_alarm_step == 3 and "(centroid monitor)" in h.lines[1]
    assert (
        "The layer monitor was calibrating until step 2 (its change detector watched meanwhile)."
        in h.lines
    )
    blind = layer.with_columns(
        pl.Series("reason", ["warmup (0/2 baseline values)"] * 2 + ["ok"] * 2)
    )
    h_blind = headline({"layer": blind, "centroid": centroid})
    assert "The layer monitor was calibrating until step 2 (no alarm possible)." in h_blind.lines
    patience_only = centroid.with_columns(pl.lit(False).alias("alert"))
    h = headline({"layer": layer, "centroid": patience_only})
    assert h.healthy and h.verdict == "Healthy: no alarm in 4 recorded steps."


def test_the_lead_ignores_an_alarm_that_ended_before_the_loss_rule_fired():
    """A monitor's false alarm long before the failure is not a lead (the demo's collapse
    monitor at step 300, the loss rule at 366, the layer monitor at 367 said 'a lead of 66')."""
    import polars as pl

    from streamtopo.report.headline import headline

    steps = list(range(400))
    late = [t >= 367 for t in steps]
    layer = pl.DataFrame(
        {
            "step": steps,
            "state": ["COLLAPSE" if x else "HEALTHY" for x in late],
            "reason": ["layer: 3 z=+9" if x else "ok" for x in late],
        }
    )
    collapse = pl.DataFrame({"step": [200, 300, 320], "state": ["HEALTHY", "WATCH", "HEALTHY"],
                             "reason": ["ok", "persistence_entropy fell", "ok"]})  # fmt: skip
    loss = pl.DataFrame(
        {"step": steps, "state": ["WATCH" if t >= 366 else "HEALTHY" for t in steps]}
    )
    h = headline({"layer": layer, "collapse": collapse, "loss": loss})
    assert h.first_alarm_step == 300  # the first alarm is still reported as such
    assert h.lead == "Lag: the layer monitor alarmed 1 step after the loss rule (step 366)."
    # the first alarm was a WATCH: the headline also names the first COLLAPSE and its rule
    assert h.first_collapse_step == 367
    assert "First COLLAPSE: step 367 by rule 'layer'." in h.lines
    running = pl.DataFrame({"step": [300, 366, 380], "state": ["WATCH", "WATCH", "WATCH"],
                            "reason": ["x", "x", "x"]})  # fmt: skip
    h = headline({"layer": layer, "collapse": running, "loss": loss})
    assert h.lead == "Lead: the layer monitor alarmed 66 steps before the loss rule (step 366)."
    assert h.first_collapse_step == 367  # the collapse monitor never reached COLLAPSE
    h = headline({"layer": layer.with_columns(state=pl.lit("HEALTHY")), "collapse": collapse,
                  "loss": loss})  # fmt: skip
    assert h.lead == "The loss rule fired at step 366; no topology alarm was running then or after."


def test_a_diverging_loss_is_drawn_on_a_log_axis():
    """A loss from 2.3 down to 0.01 and then 1e14 (the demo's LR spike): a linear axis draws
    the healthy part as a flat line at 0; the loss panel switches to a log axis then only."""
    import polars as pl

    from streamtopo.report.interactive import figure_html

    steps = list(range(50))
    layer = pl.DataFrame({"step": steps, "state": ["HEALTHY"] * 50, "h0": [1.0] * 50,
                          "wall_time": [float(t) for t in steps]})  # fmt: skip
    diverged = [2.3 * 0.9**t for t in range(45)] + [1e14] * 5
    for losses, log_axis in ((diverged, True), (diverged[:45], False)):
        loss = pl.DataFrame({"step": steps[: len(losses)], "loss": losses})
        html = figure_html({"layer": layer, "loss": loss})
        assert ('"type":"log"' in html) is log_axis
        assert ("log scale" in html) is log_axis
