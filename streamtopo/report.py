"""Run reports: a self-contained HTML page (inline PNG figures) and a markdown summary.

``build_report(run_dir)`` reads a run directory written by :class:`streamtopo.io.RunWriter`
(every rank, committed parts and, by default, live journals) and renders:

- h0 of the layer monitor over steps, with WATCH / COLLAPSE bands, and the first alarm steps;
- a heatmap of every recorded per-layer signal (log10, layers x steps);
- the centroid monitor's h0_train / h0_test / gap (when it logged to the run);
- the collapse monitor's index and components over time (when it logged to the run);
- a summary table and every alarm episode with the reason it began (rule, layers, direction).

It also holds the renderings the monitors offer as convenience methods (they delegate here, so
no monitor draws or formats anything itself): :func:`collapse_report` behind
``CollapseMonitor.report`` and :func:`plot_depth_profile` behind ``DepthProfile.plot``.

Figures need matplotlib (``pip install "streamtopo[plot]"``); without it the report keeps every
table and says how to get the figures. Nothing here is imported by ``import streamtopo``.
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
    from .io import read_run

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
    from .io import run_summary as summary_frame

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


def build_report(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    include_journal: bool = True,
) -> ReportPaths:
    """Write ``report.html`` (self-contained) and ``report.md`` for a run directory.

    Parameters
    ----------
    run_dir : path
        A ``run=<id>`` directory written by :class:`streamtopo.io.RunWriter`.
    out : path, optional
        The HTML file to write (default ``<run_dir>/report.html``); the markdown summary goes
        beside it with the suffix ``.md``.
    include_journal : bool, default True
        Include rows still in journals (a live or crashed run), read without modifying them.

    Returns
    -------
    ReportPaths
    """
    from .errors import InputError
    from .io import read_meta

    run = Path(run_dir)
    meta_path = run / "_meta.json"
    if not meta_path.is_file():
        raise InputError(f"run_dir must be a run directory containing _meta.json, got {run}")
    meta = read_meta(run)  # checked: _meta.json is input, not truth
    html_path = Path(out) if out is not None else run / "report.html"
    md_path = html_path.with_suffix(".md")

    try:
        import matplotlib  # noqa: F401

        have_plot = True
    except ImportError:
        have_plot = False

    figures: list[tuple[str, str]] = []
    md = [f"# streamtopo report: {md_escape(run.name)}", ""]
    body = [f"<h1>streamtopo report: {html.escape(run.name)}</h1>"]
    if not have_plot:
        note = 'Figures need matplotlib: pip install "streamtopo[plot]"'
        md += [note, ""]
        body.append(f"<p><em>{html.escape(note)}</em></p>")

    layer = _read(run, meta, "layer", include_journal)
    if layer is not None:
        signals = list(meta.get("tables", {}).get("layer", {}).get("signals", [])) or sorted(
            {c.split("/", 1)[0] for c in layer.columns if "/" in c}
        )
        for rank in sorted(set(layer["rank"].to_list())):
            import polars as pl

            part = layer.filter(pl.col("rank") == rank)
            summ = run_summary(part)
            episodes = summ.pop("episodes")
            md += [f"## Layer monitor (rank {rank})", "", _md_table(list(summ.items())), ""]
            body.append(f"<h2>Layer monitor (rank {rank})</h2>")
            body.append(_html_table(list(summ.items())))
            if episodes:
                lines = [f"steps {a}–{b}: {worst} — {r}" for a, b, worst, r in episodes[:20]]
                more = len(episodes) - len(lines)
                if more > 0:
                    lines.append(f"... and {more} more")
                md += ["Alarm episodes (why each began):", ""]
                md += [f"- {md_escape(x)}" for x in lines] + [""]
                body.append("<h3>Alarm episodes (why each began)</h3><ul>")
                body += [f"<li>{html.escape(x)}</li>" for x in lines]
                body.append("</ul>")
            if have_plot:
                for title, png in _layer_figures(part, signals):
                    figures.append((f"{title} (rank {rank})", png))
    else:
        md += ["No layer-monitor rows in this run.", ""]
        body.append("<p>No layer-monitor rows in this run.</p>")

    for kind, title in (("centroid", "Centroid monitor"), ("collapse", "Collapse monitor")):
        df = _read(run, meta, kind, include_journal)
        if df is None:
            continue
        cols = _numeric(df, {"step", "rank", "wall_time"})
        last = df.tail(1).to_dicts()[0]
        rows = [(k, last[k]) for k in df.columns if k not in ("run", "wall_time")]
        md += [f"## {title} (last check)", "", _md_table(rows), ""]
        body.append(f"<h2>{title} (last check)</h2>")
        body.append(_html_table(rows))
        if have_plot and cols:
            if kind == "centroid":
                main = [c for c in ("h0_train", "h0_test", "h0_gap", "gap_noise") if c in cols]
                rel: list[str] = []
            else:  # collapse: the index itself, then its components relative to their start
                main = [c for c in ("ci",) if c in cols]
                skip = {"ci", "z", "n_points", "n_dropped", "checked"}
                rel = [c for c in cols if c not in skip and not c.startswith("score_")][:8]
            figures.append(_scalar_figure(df, f"{title} over steps", main or cols[:8], rel))

    for title, png in figures:
        body.append(f"<h2>{html.escape(title)}</h2>")
        body.append(f'<img alt="{html.escape(title)}" src="data:image/png;base64,{png}"/>')

    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>streamtopo report: {html.escape(run.name)}</title>"
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
        "img{max-width:100%}</style></head><body>" + "\n".join(body) + "</body></html>"
    )
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return ReportPaths(html=html_path, markdown=md_path, figures=len(figures))


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
    from .alarms import State

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
    from .alarms import State

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
