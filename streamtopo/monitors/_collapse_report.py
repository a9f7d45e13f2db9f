"""Markdown and HTML rendering of a CollapseMonitor history (matplotlib imported lazily)."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

from ..alarms import State

__all__ = ["render_report"]

_LABEL = {State.HEALTHY: "✅ OK", State.WATCH: "👀 WATCH", State.COLLAPSE: "⚠️ COLLAPSE"}


def render_report(h: dict[str, list[Any]], columns: list[str], threshold: float, fmt: str) -> str:
    """Seed 000's table (Epoch, Collapse Index, Status) plus every component with a value."""
    if not h["step"]:
        return "No monitoring data yet."
    cols = [c for c in columns if any(math.isfinite(v) for v in h[c])]
    rows = [
        [str(h["step"][i]), f"{h['ci'][i]:.4f}", _LABEL[h["state"][i]]]
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
    png = _plot_png(h, threshold)
    img = "" if png is None else f'<img alt="Collapse Index" src="data:image/png;base64,{png}">\n'
    return f"<h2>Collapse Monitor Report</h2>\n{img}{table}"


def _plot_png(h: dict[str, list[Any]], threshold: float) -> str | None:
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
