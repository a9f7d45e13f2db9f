"""Run reports: a self-contained HTML page and a markdown summary of a run directory.

``build_report(run_dir)`` reads every table of a run written by
:class:`streamtopo.io.RunWriter` (every rank, committed parts and, by default, live journals)
and writes ``<run>.report.html`` beside the run (never inside it):

- a headline card (:mod:`.headline`): healthy or not, the first alarm (step, rule, layers,
  direction), its lead or lag against the loss rule, guard interventions;
- panels on one shared x-axis in training steps (:mod:`.interactive`, Plotly with plotly.js
  inlined so the file works offline): loss, h0 with WATCH/COLLAPSE bands and fault/intervention
  markers, one heatmap per per-layer signal, the other tables (any kind) aligned below;
- the raw tables last, rounded, and every alarm episode with the reason it began.

Without plotly (``pip install "streamtopo[report]"``) the panels fall back to static
matplotlib figures (``streamtopo[plot]``). It also holds the renderings the monitors offer as
convenience methods (they delegate here, so no monitor draws or formats anything itself):
:func:`collapse_report` behind ``CollapseMonitor.report`` and :func:`plot_depth_profile` behind
``DepthProfile.plot``. Nothing here is imported by ``import streamtopo``.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ReportPaths",
    "build_report",
    "collapse_report",
    "md_escape",
    "plot_depth_profile",
    "run_summary",
]

_ALARM_COLOURS = {"WATCH": "#f5c542", "COLLAPSE": "#e0533d"}


@dataclass(frozen=True)
class ReportPaths:
    """Where :func:`build_report` wrote its files."""

    html: Path
    markdown: Path
    figures: int


def _read(run_dir: Path, meta: dict[str, Any], table: str, include_journal: bool) -> Any:
    """One table of the run as a polars DataFrame sorted by (rank, step); None if the run never
    logged that table (read errors of a table that exists are raised, not hidden)."""
    from ..io import read_run

    if table not in meta.get("tables", {}):
        return None
    df = read_run(run_dir, include_journal=include_journal, table=table).collect()
    if df.height == 0:
        return None
    return df.sort(["rank", "step"])


def run_summary(layer: Any) -> dict[str, Any]:
    """Summary of a layer table (one rank) as a dict: the columns of
    :func:`streamtopo.io.run_summary` (the one definition of ``peak_h0`` and the counts) without
    ``rank``, plus the alarm episodes ``(first step, last step, worst state, reason at the
    start)``.

    Parameters
    ----------
    layer : polars.DataFrame
        Rows of the layer table with at least ``step``, ``h0`` and ``state``, in step order.
    """
    from ..io import run_summary as summary_frame

    rows = summary_frame(layer).drop("rank").to_dicts()
    out: dict[str, Any] = rows[0] if rows else {"steps": 0}
    states = layer["state"].to_list()
    steps = layer["step"].to_list()
    alarm = [st != "HEALTHY" for st in states]
    episodes = []
    k = 0
    while k < len(states):
        if alarm[k]:
            j = k
            while j + 1 < len(states) and alarm[j + 1]:
                j += 1
            worst = "COLLAPSE" if "COLLAPSE" in states[k : j + 1] else "WATCH"
            reason = layer["reason"][k] if "reason" in layer.columns else ""
            episodes.append((steps[k], steps[j], worst, reason))
            k = j + 1
        else:
            k += 1
    out["episodes"] = episodes
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _bands(ax: Any, steps: np.ndarray, states: list[str]) -> None:
    """Shade contiguous WATCH / COLLAPSE spans."""
    start = None
    for k in range(len(states) + 1):
        cur = states[k] if k < len(states) else None
        prev = states[k - 1] if k else None
        if cur != prev:
            if start is not None and prev in _ALARM_COLOURS:
                ax.axvspan(steps[start], steps[k - 1] + 1, color=_ALARM_COLOURS[prev], alpha=0.3)
            start = k


def _layer_figures(layer: Any, meta_signals: list[str]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = []
    steps = layer["step"].to_numpy()
    states = layer["state"].to_list()
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(steps, layer["h0"].to_numpy(), lw=1, color="#1f4e79")
    _bands(ax, steps, states)
    ax.set_xlabel("step")
    ax.set_ylabel("layer h0")
    ax.set_title("Layer H0 (yellow: WATCH, red: COLLAPSE)")
    out.append(("Layer H0 over steps", _png(fig)))

    for sig in meta_signals:
        cols = [c for c in layer.columns if c.startswith(f"{sig}/")]
        if not cols:
            continue
        vals = layer.select(cols).to_numpy().astype(np.float64).T
        with np.errstate(divide="ignore", invalid="ignore"):
            img = np.log10(np.where(vals > 0, vals, np.nan))
        fig, ax = plt.subplots(figsize=(9, max(2.0, 0.18 * len(cols) + 1)))
        im = ax.imshow(
            img,
            aspect="auto",
            interpolation="nearest",
            cmap="viridis",
            extent=(steps[0], steps[-1] + 1, len(cols) - 0.5, -0.5),
        )
        ax.set_yticks(range(len(cols)))
        ax.set_yticklabels([c.split("/", 1)[1] for c in cols], fontsize=7)
        ax.set_xlabel("step")
        ax.set_title(f"log10 {sig} per layer")
        fig.colorbar(im, ax=ax, fraction=0.03)
        out.append((f"Per-layer {sig}", _png(fig)))
    return out


def _scalar_figure(df: Any, title: str, columns: list[str], relative: list[str]) -> tuple[str, str]:
    """``columns`` on one panel as they are; ``relative`` (components on different scales) on a
    second panel, each divided by its first finite value so their changes compare."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 2 if relative else 1
    fig, axes = plt.subplots(panels, 1, figsize=(9, 3 * panels), sharex=True, squeeze=False)
    steps = df["step"].to_numpy()
    states = df["state"].to_list() if "state" in df.columns else None
    for ax, cols, rel in ((axes[0, 0], columns, False), (axes[-1, 0], relative, True)):
        if rel and not relative:
            break
        for c in cols:
            y = df[c].cast(float).to_numpy()
            if rel:
                finite = y[np.isfinite(y) & (y != 0)]
                if finite.size == 0:
                    continue
                y = y / finite[0]
            ax.plot(steps, y, lw=1.2, marker=".", label=c)
        if states is not None:
            _bands(ax, steps, states)
        ax.legend(fontsize=8, ncol=min(4, max(1, len(cols))))
        ax.set_ylabel("relative to first check" if rel else "")
    axes[0, 0].set_title(title)
    axes[-1, 0].set_xlabel("step (as the monitor counts them)")
    return title, _png(fig)


def _numeric(df: Any, skip: set[str]) -> list[str]:
    import polars as pl

    return [
        c
        for c, t in zip(df.columns, df.dtypes, strict=True)
        if c not in skip and t in (pl.Float64, pl.Float32, pl.Int64)
    ]


# characters with a markdown meaning inside a line (`_` only at a word edge: inside a word it is
# no emphasis, so `first_collapse_step` stays readable). Escaped text is always placed after
# "| ", "- " or a heading's words, never at the start of a line, so line-start markers
# (#, -, 1.) need no escape and numbers such as -1.5 stay as they are.
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~])|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def md_escape(value: Any) -> str:
    """Text for markdown: HTML special characters as entities (a layer named
    ``<img src=x onerror=...>`` stays text in any renderer), markdown punctuation
    backslash-escaped, line breaks as spaces.

    >>> print(md_escape("<img src=x onerror=alert(1)>"))
    &lt;img src=x onerror=alert(1)&gt;
    >>> print(md_escape("a|b *c* first_step _x_"))
    a\\|b \\*c\\* first_step \\_x\\_
    """
    text = html.escape(" ".join(str(value).splitlines()), quote=False)
    return _MD_SPECIAL.sub(lambda m: "\\" + m.group(0), text)


def _md_table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| key | value |", "|---|---|"]
    lines += [f"| {md_escape(k)} | {md_escape(v)} |" for k, v in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    """A value for a table: floats rounded to 4 significant digits, lists joined."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _report_path(run: Path, out: str | os.PathLike[str] | None) -> Path:
    """Where the HTML goes: ``out``, or ``<run>.report.html`` beside the run; never inside it
    (a report inside the run would be read as part of it by dataset readers)."""
    from ..errors import InputError

    path = Path(out) if out is not None else run.parent / f"{run.name}.report.html"
    if path.resolve().is_relative_to(run.resolve()):
        raise InputError(
            f"out must be outside the run directory {run} (a report inside it would be read "
            f"as part of the run), got {path}"
        )
    return path


def _interactive_available() -> bool:
    try:
        import plotly  # noqa: F401
    except ImportError:
        return False
    return True


def build_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    include_journal: bool = True,
    markers: dict[str, int] | None = None,
    interactive: bool | None = None,
) -> ReportPaths:
    """Write a self-contained HTML report and a markdown summary of a run directory.

    The page opens with a headline (healthy or not, the first alarm with its step, rule, layers
    and direction, its lead or lag against the loss rule, guard interventions), then panels on
    one shared x-axis in training steps (loss, h0 with WATCH/COLLAPSE bands and markers, one
    heatmap per per-layer signal, the other tables), then the raw tables, rounded.

    Parameters
    ----------
    run_dir : path
        A ``run=<id>`` directory written by :class:`streamtopo.io.RunWriter`.
    out : path, optional
        The HTML file to write (default ``<run_dir>.report.html`` beside the run; never inside
        it); the markdown summary goes beside it with the suffix ``.md``.
    include_journal : bool, default True
        Include rows still in journals (a live or crashed run), read without modifying them.
    markers : dict of str to int, optional
        Labelled steps drawn on every panel (e.g. ``{"fault": 300}``); guard interventions
        are added from an ``interventions`` table.
    interactive : bool, optional
        Plotly panels (zoom, hover, linked axes; plotly.js inlined, the file works offline;
        ``pip install "streamtopo[report]"``). None: when plotly is installed; otherwise static
        matplotlib figures (``streamtopo[plot]``).

    Returns
    -------
    ReportPaths
    """
    from ..errors import InputError
    from ..io import read_meta
    from .headline import headline, headline_html, headline_markdown

    run = Path(run_dir)
    meta_path = run / "_meta.json"
    if not meta_path.is_file():
        raise InputError(f"run_dir must be a run directory containing _meta.json, got {run}")
    meta = read_meta(run)  # checked: _meta.json is input, not truth
    html_path = _report_path(run, out)
    md_path = html_path.with_suffix(".md")
    if interactive is None:
        interactive = _interactive_available()
    elif not isinstance(interactive, bool):
        raise InputError(f"interactive must be a bool or None, got {interactive!r}")

    import polars as pl

    tables = {k: _read(run, meta, k, include_journal) for k in sorted(meta.get("tables", {}))}
    tables = {k: v for k, v in tables.items() if v is not None}
    ranks = sorted(set(tables["layer"]["rank"].to_list())) if "layer" in tables else [0]
    first_rank = {k: v.filter(pl.col("rank") == ranks[0]) for k, v in tables.items()}
    first_rank = {k: v for k, v in first_rank.items() if v.height} or tables
    from .interactive import align

    head = headline(align(first_rank))
    marks = dict(markers or {})
    if "interventions" in first_rank:
        for i, step in enumerate(first_rank["interventions"]["step"].to_list()[:50]):
            marks[f"intervention {i + 1}"] = int(step)

    md = [f"# streamtopo report: {md_escape(run.name)}", ""]
    word, lines = headline_markdown(head)
    md += [f"- {word}", *(f"- {md_escape(x)}" for x in lines), ""]
    body = [f"<h1>streamtopo report: {html.escape(run.name)}</h1>", headline_html(head)]
    if len(ranks) > 1:
        body.append(f"<p>Headline and panels: rank {ranks[0]} of ranks {ranks}.</p>")
    figures = 0
    if interactive:
        from .interactive import figure_html

        body.append(figure_html(first_rank, markers=marks))
        figures = 1
    else:
        static, note = _static_figures(first_rank, meta)
        if note:
            md += [note, ""]
            body.append(f"<p><em>{html.escape(note)}</em></p>")
        for title, png in static:
            body.append(f"<h2>{html.escape(title)}</h2>")
            body.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"/>')
        figures = len(static)

    body.append("<h2>Raw tables</h2>")
    if "layer" in tables:
        for rank in ranks:
            part = tables["layer"].filter(pl.col("rank") == rank)
            summ = run_summary(part)
            episodes = summ.pop("episodes")
            rows = [(k, _fmt(v)) for k, v in summ.items()]
            md += [f"## Layer monitor (rank {rank})", "", _md_table(rows), ""]
            body.append(f"<h3>Layer monitor (rank {rank})</h3>")
            body.append(_html_table(rows))
            if episodes:
                lines = [f"steps {a}–{b}: {worst} — {r}" for a, b, worst, r in episodes[:20]]
                more = len(episodes) - len(lines)
                if more > 0:
                    lines.append(f"... and {more} more")
                md += ["Alarm episodes (why each began):", ""]
                md += [f"- {md_escape(x)}" for x in lines] + [""]
                body.append("<h4>Alarm episodes (why each began)</h4><ul>")
                body += [f"<li>{html.escape(x)}</li>" for x in lines]
                body.append("</ul>")
    else:
        md += ["No layer-monitor rows in this run.", ""]
        body.append("<p>No layer-monitor rows in this run.</p>")
    for kind, df in tables.items():
        if kind == "layer":
            continue
        last = df.tail(1).to_dicts()[0]
        rows = [(k, _fmt(last[k])) for k in df.columns if k not in ("run", "wall_time")]
        md += [f"## {kind} (last row of {df.height})", "", _md_table(rows), ""]
        body.append(f"<h3>{html.escape(kind)} (last row of {df.height})</h3>")
        body.append(_html_table(rows))

    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>streamtopo report: {html.escape(run.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1300px;margin:1em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "img{max-width:100%}</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return ReportPaths(html=html_path, markdown=md_path, figures=figures)


def _static_figures(tables: dict[str, Any], meta: dict[str, Any]) -> tuple[list, str]:
    """The matplotlib fallback: ``([(title, png)], note)``."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return [], 'Figures need plotly or matplotlib: pip install "streamtopo[report]"'
    figures: list[tuple[str, str]] = []
    note = 'Static figures: pip install "streamtopo[report]" for zoom and hover.'
    layer = tables.get("layer")
    if layer is not None:
        signals = list(meta.get("tables", {}).get("layer", {}).get("signals", [])) or sorted(
            {c.split("/", 1)[0] for c in layer.columns if "/" in c}
        )
        figures += _layer_figures(layer, signals)
    for kind, df in tables.items():
        if kind == "layer":
            continue
        cols = _numeric(df, {"step", "rank", "wall_time"})
        if not cols:
            continue
        if kind == "centroid":
            main = [c for c in ("h0_train", "h0_test", "h0_gap", "gap_noise") if c in cols]
            rel: list[str] = []
        elif kind == "collapse":  # the index itself, then its components relative to their start
            main = [c for c in ("ci",) if c in cols]
            skip = {"ci", "z", "n_points", "n_dropped", "checked"}
            rel = [c for c in cols if c not in skip and not c.startswith("score_")][:8]
        else:
            main, rel = [], []
        figures.append(_scalar_figure(df, f"{kind} over steps", main or cols[:8], rel))
    return figures, note


def _html_table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


# -- renderings the monitors delegate to ---------------------------------------------------
def collapse_report(h: dict[str, list[Any]], columns: list[str], threshold: float, fmt: str) -> str:
    """Seed 000's table (Epoch, Collapse Index, Status) plus every component with a value, of a
    CollapseMonitor history ``h`` (lists keyed by step, ci, state, reason and each column);
    ``fmt="html"`` adds an inline PNG of the index when matplotlib is installed."""
    from ..alarms import State

    label = {State.HEALTHY: "✅ OK", State.WATCH: "👀 WATCH", State.COLLAPSE: "⚠️ COLLAPSE"}
    if not h["step"]:
        return "No monitoring data yet."
    cols = [c for c in columns if any(math.isfinite(v) for v in h[c])]
    rows = [
        [str(h["step"][i]), f"{h['ci'][i]:.4f}", label[h["state"][i]]]
        + [f"{h[c][i]:.4g}" for c in cols]
        for i in range(len(h["step"]))
    ]
    head = ["Epoch", "Collapse Index", "Status", *cols]
    if fmt == "markdown":
        out = "## Collapse Monitor Report\n\n| " + " | ".join(head) + " |\n"
        out += "|" + "|".join("---" for _ in head) + "|\n"
        return out + "".join("| " + " | ".join(r) + " |\n" for r in rows)
    esc = html.escape
    table = "<table>\n<tr>" + "".join(f"<th>{esc(c)}</th>" for c in head) + "</tr>\n"
    for i, r in enumerate(rows):
        cells = "".join(f"<td>{esc(v)}</td>" for v in r)
        table += f'<tr title="{esc(h["reason"][i])}">{cells}</tr>\n'
    table += "</table>\n"
    png = _collapse_png(h, threshold)
    img = "" if png is None else f'<img alt="Collapse Index" src="data:image/png;base64,{png}">\n'
    return f"<h2>Collapse Monitor Report</h2>\n{img}{table}"


def _collapse_png(h: dict[str, list[Any]], threshold: float) -> str | None:
    from ..alarms import State

    try:
        from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend
    except ImportError:
        return None
    fig = Figure(figsize=(6, 3), dpi=80)
    ax = fig.add_subplot()
    ax.plot(h["step"], h["ci"], marker="o", label="CI")
    ax.axhline(threshold, color="grey", linestyle="--", label="threshold")
    bad = [i for i, s in enumerate(h["state"]) if s is State.COLLAPSE]
    if bad:
        ax.plot([h["step"][i] for i in bad], [h["ci"][i] for i in bad], "rx", label="COLLAPSE")
    ax.set_xlabel("step")
    ax.set_ylabel("Collapse Index")
    ax.legend(loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_depth_profile(profile: Any, ax: Any = None) -> Any:
    """Plot log omega against normalised depth with the theta fit of a
    :class:`~streamtopo.monitors.depth.DepthProfile` (needs matplotlib).

    Returns the matplotlib Figure (a new one, not registered with pyplot, when ``ax`` is
    None).
    """
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - the plot extra is installed in CI
        raise ImportError(
            "DepthProfile.plot needs matplotlib: pip install streamtopo[plot]"
        ) from exc
    df = profile.omega()
    if ax is None:
        fig = Figure(figsize=(5, 3.5))
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    ax.semilogy(df["depth"].to_numpy(), df["omega"].to_numpy(), "o-", label="omega")
    for name, x, y in zip(df["layer"], df["depth"], df["omega"], strict=True):
        ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if df.height >= 2 and (df["omega"].to_numpy() > 0).all():
        fit = profile.theta()
        xs = np.linspace(0.0, 1.0, 50)
        ys = np.exp(fit["intercept"][0] + fit["theta"][0] * xs)
        ax.semilogy(xs, ys, "--", label=f"theta={fit['theta'][0]:.3g}, r2={fit['r2'][0]:.2f}")
    ax.set_xlabel("normalised depth")
    ax.set_ylabel("omega (Betti-curve area)")
    ax.legend(fontsize=8)
    return fig
