"""Report library choice: file size and headless-Chromium render time of the same interactive
panels for a 100k-step run, Plotly (plotly.js inlined) against Altair/Vega-Lite (vega, vega-lite
and vega-embed inlined by vl-convert), measured in one run.

Both pages draw the same data, reduced the report's way: the loss and h0 lines decimated to at
most 6,000 points (each bin's first, smallest and largest value) and one per-layer heatmap per
signal binned to 2,000 step columns. Render
time is the wall time of ``chromium --headless --screenshot`` on the file (start-up included,
measured on an empty page too and printed), median of ``--rounds``.

    python benchmarks/bench_report.py [--steps 100000] [--layers 16] [--rounds 3]

Needs chromium, plotly, and for the comparison altair + vl-convert-python (not in any extra).
Measured 2026-12-06 on the shared 2-core machine (loaded; medians of 3)::

    100000 steps, 16 layers x 2 signals; chromium on an empty page 1.53 s (start-up, included below)
    library   file MB  build s  render s
    plotly       5.94     2.18      3.57
    altair       5.65     9.26      7.58
    ratio altair/plotly: file 0.95x, build 4.25x, render 2.13x

Choice: Plotly. Same file size within 5% (plotly.js is 4.8 MB of it, paid once), 2.1x faster
to render (3.0x net of Chromium's start-up) and 4.3x faster to build; and inlining needs no
extra native package (Altair needs vl-convert-python to inline vega for offline use).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,2000",
]  # fmt: skip


def synthetic(steps: int, layers: int, signals: tuple[str, ...]) -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(0)
    step = np.arange(steps)
    cols = {"step": step}
    for s in signals:
        level = rng.normal(size=layers)
        for j in range(layers):
            cols[f"{s}/block{j}"] = np.exp(level[j] + 0.05 * rng.normal(size=steps)).astype(
                np.float32
            )
    h0 = 1 + 0.01 * rng.normal(size=steps).cumsum() ** 2 / steps
    state = np.where(step > int(0.9 * steps), "COLLAPSE", "HEALTHY")
    layer = pl.DataFrame({**cols, "h0": h0, "state": state, "reason": [""] * steps})
    loss = pl.DataFrame({"step": step, "loss": np.exp(-step / steps) + 0.01 * rng.random(steps)})
    return {"layer": layer, "loss": loss}


def plotly_page(tables: dict[str, pl.DataFrame], path: Path) -> None:
    from streamtopo.report.interactive import figure_html

    path.write_text(f"<!doctype html><html><body>{figure_html(tables)}</body></html>")


def altair_page(tables: dict[str, pl.DataFrame], path: Path, max_columns: int = 2000) -> None:
    import altair as alt

    from streamtopo.report.interactive import decimate, heat_matrix

    alt.data_transformers.disable_max_rows()
    layer, loss = tables["layer"], tables["loss"]
    x = alt.X("step:Q", title="training step")
    lines = [
        alt.Chart(loss[decimate(loss["loss"].to_numpy(), 6000)])
        .mark_line()
        .encode(x=x, y="loss:Q", tooltip=["step", "loss"]),
        alt.Chart(layer.select("step", "h0")[decimate(layer["h0"].to_numpy(), 6000)])
        .mark_line()
        .encode(x=x, y="h0:Q", tooltip=["step", "h0"]),
    ]
    charts = [
        c.properties(width=1200, height=150).add_params(
            alt.selection_interval(bind="scales", encodings=["x"], name=f"zoom{i}")
        )
        for i, c in enumerate(lines)
    ]
    healthy = (layer["state"] == "HEALTHY").to_numpy()
    for sig in sorted({c.split("/", 1)[0] for c in layer.columns if "/" in c}):
        cols = [c for c in layer.columns if c.startswith(f"{sig}/")]
        m, _, _, starts, lo, hi = heat_matrix(layer.select(cols).to_numpy(), healthy, max_columns)
        steps = layer["step"].to_numpy()[starts]
        long = pl.DataFrame(
            {
                "step": np.repeat(steps, len(cols)),
                "layer": np.tile([c.split("/", 1)[1] for c in cols], len(steps)),
                "value": m.reshape(-1),
            }
        )
        charts.append(
            alt.Chart(long)
            .mark_rect()
            .encode(
                x=alt.X("step:Q", bin=alt.Bin(maxbins=max_columns)),
                y="layer:N",
                color=alt.Color("value:Q", scale=alt.Scale(domain=[lo, hi], clamp=True)),
                tooltip=["step", "layer", "value"],
            )
            .properties(width=1200, height=300)
        )
    alt.vconcat(*charts).save(str(path), format="html", inline=True)


def render_seconds(chromium: str, page: Path, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as profile:
            shot = Path(profile) / "shot.png"
            t0 = time.perf_counter()
            subprocess.run(
                [chromium, *FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}",
                 "--virtual-time-budget=30000", page.as_uri()],
                check=True, capture_output=True, timeout=600,
            )  # fmt: skip
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--layers", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("bench_report: needs chromium (apt-get install -y chromium)")
    tables = synthetic(args.steps, args.layers, ("grad_norm", "act_norm"))
    out = Path(tempfile.mkdtemp())
    empty = out / "empty.html"
    empty.write_text("<!doctype html><html><body>empty</body></html>")
    rows = []
    for name, build in (("plotly", plotly_page), ("altair", altair_page)):
        page = out / f"{name}.html"
        t0 = time.perf_counter()
        build(tables, page)
        build_s = time.perf_counter() - t0
        rows.append(
            (name, page.stat().st_size, build_s, render_seconds(chromium, page, args.rounds))
        )
    base = render_seconds(chromium, empty, args.rounds)
    print(f"{args.steps} steps, {args.layers} layers x 2 signals; chromium on an empty page "
          f"{base:.2f} s (start-up, included below)")  # fmt: skip
    print(f"{'library':8s} {'file MB':>8s} {'build s':>8s} {'render s':>9s}")
    for name, size, build_s, render in rows:
        print(f"{name:8s} {size / 1e6:8.2f} {build_s:8.2f} {render:9.2f}")
    (_, p_size, p_build, p_render), (_, a_size, a_build, a_render) = rows
    print(
        f"ratio altair/plotly: file {a_size / p_size:.2f}x, build {a_build / p_build:.2f}x, "
        f"render {a_render / p_render:.2f}x"
    )


if __name__ == "__main__":
    main()
