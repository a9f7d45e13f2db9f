"""The interactive panels of a report (Plotly, its JavaScript inlined: the page works offline).

Plotly over Altair/Vega-Lite, measured by ``benchmarks/bench_report.py`` on a 100k-step run:
the same file size within 5%, 2.1x faster to render in headless Chromium, 4.3x faster to build.

Every panel shares one x-axis in training steps: loss, h0 with WATCH/COLLAPSE bands and
fault/intervention markers, one heatmap per recorded per-layer signal (robust colour scale,
non-finite and zero cells in their own labelled colours, culprit layers marked), then the other
tables' numeric columns. Long runs are binned along the steps for the heatmaps (at most
``max_columns`` columns: the largest |log10| deviation of each bin is kept, and a bin with a
non-finite or zero value shows it); lines keep each bin's first, smallest and largest value
(at most 6,000 points a line), so spikes stay visible and every hovered point is a recorded
step and value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "STATE_COLOURS",
    "TRAINING_STEP_TABLES",
    "align",
    "bands",
    "decimate",
    "figure_html",
    "heat_matrix",
]

STATE_COLOURS = {"WATCH": "rgba(245,197,66,0.35)", "COLLAPSE": "rgba(224,83,61,0.35)"}
NONFINITE_COLOUR = "#ff00ff"
ZERO_COLOUR = "#9e9e9e"
_SKIP = {"step", "rank", "run", "wall_time", "config", "monitor_step"}


def bands(steps: np.ndarray, states: list[str]) -> list[tuple[int, int, str]]:
    """Contiguous WATCH/COLLAPSE spans ``(first step, last step + 1, state)``.

    >>> bands(np.arange(6), ["HEALTHY", "WATCH", "WATCH", "COLLAPSE", "HEALTHY", "WATCH"])
    [(1, 3, 'WATCH'), (3, 4, 'COLLAPSE'), (5, 6, 'WATCH')]
    """
    out = []
    start = None
    for k in range(len(states) + 1):
        cur = states[k] if k < len(states) else None
        prev = states[k - 1] if k else None
        if cur != prev:
            if start is not None and prev in STATE_COLOURS:
                out.append((int(steps[start]), int(steps[k - 1]) + 1, prev))
            start = k
    return out


def heat_matrix(
    values: np.ndarray, healthy: np.ndarray, max_columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, float]:
    """``(log10 matrix, nonfinite mask, zero mask, bin index of each column, lo, hi)`` of a
    (steps, layers) signal block, binned to at most ``max_columns`` columns; ``lo, hi`` are the
    1st and 99th percentiles of the healthy rows' finite positive values (the colour scale)."""
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        logv = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    logv[~np.isfinite(v)] = np.nan
    ref = logv[healthy] if healthy.any() else logv
    ref = ref[np.isfinite(ref)]
    lo, hi = (float(np.percentile(ref, 1)), float(np.percentile(ref, 99))) if ref.size else (0, 1)
    if hi <= lo:
        hi = lo + 1e-6
    bins = max(1, math.ceil(n / max_columns))
    starts = np.arange(0, n, bins)
    nonfinite = ~np.isfinite(v)
    zero = v == 0
    mid = 0.5 * (lo + hi)
    with np.errstate(invalid="ignore"):
        dev = np.where(np.isfinite(logv), np.abs(logv - mid), -1.0)
    out = np.empty((len(starts), v.shape[1]))
    nf = np.zeros((len(starts), v.shape[1]), bool)
    zr = np.zeros_like(nf)
    for j, a in enumerate(starts):
        block = slice(a, a + bins)
        pick = np.argmax(dev[block], axis=0) + a
        out[j] = logv[pick, np.arange(v.shape[1])]
        nf[j] = nonfinite[block].any(axis=0)
        zr[j] = zero[block].any(axis=0) & ~nf[j]
    return out, nf, zr, starts, lo, hi


def decimate(y: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of ``y`` to draw: all of them up to ``max_points``, else the first, smallest and
    largest finite value of each bin (spikes survive; a bin with a non-finite value keeps it,
    so the line shows the gap).

    >>> y = np.ones(30_000); y[12_345] = 9.0
    >>> keep = decimate(y, 3000)
    >>> len(keep) <= 3000, 12_345 in keep
    (True, True)
    """
    n = len(y)
    if n <= max_points:
        return np.arange(n)
    bins = math.ceil(n / (max_points // 3))
    y = np.asarray(y, dtype=np.float64)
    finite = np.isfinite(y)
    lo_y, hi_y = np.where(finite, y, np.inf), np.where(finite, y, -np.inf)
    pad = (-n) % bins
    shape = (-1, bins)
    lo = np.pad(lo_y, (0, pad), constant_values=np.inf).reshape(shape).argmin(axis=1)
    hi = np.pad(hi_y, (0, pad), constant_values=-np.inf).reshape(shape).argmax(axis=1)
    bad = np.pad(~finite, (0, pad)).reshape(shape).argmax(axis=1)
    base = np.arange(0, n, bins)
    idx = np.concatenate([base, base + lo, base + hi, base + bad])
    return np.unique(idx[idx < n])


def _line(*, x: Any, y: Any, max_points: int = 6000, **kw: Any) -> Any:
    """An SVG line (no WebGL: it draws the same in every browser, GPU or not) of at most
    ``max_points`` points, picked by :func:`decimate`."""
    import plotly.graph_objects as go

    x, y = np.asarray(x), np.asarray(y)
    keep = decimate(y, max_points)
    return go.Scatter(x=x[keep], y=y[keep], **kw)


#: tables whose ``step`` is the training step; every other table counts its own checks and is
#: placed on the training-step axis by its wall time
TRAINING_STEP_TABLES = frozenset({"layer", "loss", "interventions"})


def _seconds(df: Any) -> np.ndarray:
    import polars as pl

    col = df["wall_time"]
    if col.dtype == pl.Datetime or isinstance(col.dtype, pl.Datetime):
        return col.dt.epoch("us").cast(pl.Float64).fill_null(np.nan).to_numpy() / 1e6
    return col.cast(pl.Float64).to_numpy()


def align(tables: dict[str, Any]) -> dict[str, Any]:
    """Tables on the training-step axis: a table outside :data:`TRAINING_STEP_TABLES` gets, as
    ``step``, the last layer-table step recorded at or before its row's wall time (its own step
    kept as ``monitor_step``). Unchanged without a layer table with wall times."""
    import polars as pl

    layer = tables.get("layer")
    if layer is None or "wall_time" not in layer.columns or layer.height == 0:
        return tables
    wall = _seconds(layer)
    order = np.argsort(wall, kind="stable")
    wall, steps = wall[order], layer["step"].to_numpy()[order]
    if not np.isfinite(wall).all():
        return tables
    out = dict(tables)
    for kind, df in tables.items():
        if kind in TRAINING_STEP_TABLES or "wall_time" not in df.columns or df.height == 0:
            continue
        at = np.searchsorted(wall, _seconds(df), side="right") - 1
        mapped = steps[np.clip(at, 0, len(steps) - 1)]
        out[kind] = df.rename({"step": "monitor_step"}).with_columns(
            pl.Series("step", mapped, pl.Int64)
        )
    return out


def wide_positive(y: np.ndarray, decades: float = 3.0) -> bool:
    """Whether a series is positive where finite and spans more than ``decades`` orders of
    magnitude (then a log axis shows both its healthy part and a divergence).

    >>> wide_positive(np.array([2.3, 0.1, np.nan, 1e14])), wide_positive(np.array([2.3, 0.1]))
    (True, False)
    >>> wide_positive(np.array([-1.0, 1e9]))
    False
    """
    y = y[np.isfinite(y)]
    if y.size == 0 or (y <= 0).any():
        return False
    return bool(np.log10(y.max() / y.min()) > decades)


def _numeric(df: Any) -> list[str]:
    import polars as pl

    ok = (pl.Float64, pl.Float32, pl.Int64, pl.Int32, pl.Boolean)
    return [c for c, t in zip(df.columns, df.dtypes, strict=True) if c not in _SKIP and t in ok]


def _placed(kind: str) -> str:
    return "" if kind in TRAINING_STEP_TABLES else " — placed by wall time"


def _label(name: str) -> str:
    """A layer name for an axis: a bare index (``nn.Sequential``) reads as ``layer 6``."""
    return f"layer {name}" if name.isdigit() else name


def figure_html(
    tables: dict[str, Any],
    *,
    markers: dict[str, int] | None = None,
    max_columns: int = 2000,
    div_id: str = "streamtopo-panels",
) -> str:
    """The panels as one ``<div>`` with plotly.js inlined (no network needed)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    tables = align(tables)
    layer, loss = tables.get("layer"), tables.get("loss")
    panels: list[tuple[str, Any]] = [("loss", None)]
    signals: list[str] = []
    if layer is not None:
        panels.append(("h0", None))
        signals = sorted(
            {c.split("/", 1)[0] for c in layer.columns if "/" in c},
            key=lambda s: [c.split("/", 1)[0] for c in layer.columns if "/" in c].index(s),
        )
        panels += [("heat", ("layer", s)) for s in signals]
    for kind, df in tables.items():
        if kind in ("layer", "loss") or df is None:
            continue
        wide = sorted({c.split("/", 1)[0] for c in df.columns if "/" in c})
        panels += [("heat", (kind, s)) for s in wide]
        if [c for c in _numeric(df) if "/" not in c]:
            panels.append(("lines", kind))
    heights = [2.0 if p[0] == "heat" else 1.0 for p in panels]
    titles = []
    for what, arg in panels:
        if what == "loss":
            titles.append("loss" + ("" if loss is not None else " (no loss table in this run)"))
        elif what == "h0":
            titles.append("layer h0 (yellow: WATCH, red: COLLAPSE)")
        elif what == "heat":
            titles.append(
                f"{arg[0]}: log10 {arg[1]} per layer (magenta: non-finite, grey: zero, ▶ culprit)"
            )
        else:
            titles.append(f"{arg} monitor" + _placed(arg))
    fig = make_subplots(
        rows=len(panels),
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.35 / max(len(panels), 1) / 2,
        row_heights=heights,
        subplot_titles=titles,
    )
    culprits: set[str] = set()
    if layer is not None and "culprits" in layer.columns:  # named when the first alarm began
        alarms = layer.filter(layer["state"] != "HEALTHY")["culprits"]
        culprits.update(alarms[0] if len(alarms) and alarms[0] is not None else ())
    healthy = (layer["state"] == "HEALTHY").to_numpy() if layer is not None else np.array([], bool)
    spans = [] if layer is None else bands(layer["step"].to_numpy(), layer["state"].to_list())
    for r, (what, arg) in enumerate(panels, start=1):
        if what == "loss" and loss is not None:
            y = "loss" if "loss" in loss.columns else _numeric(loss)[0]
            fig.add_trace(
                _line(x=loss["step"].to_numpy(), y=loss[y].to_numpy(), name="loss",
                             mode="lines", line={"width": 1}),
                row=r, col=1,
            )  # fmt: skip
            if "ema" in loss.columns:
                fig.add_trace(
                    _line(x=loss["step"].to_numpy(), y=loss["ema"].to_numpy(),
                                 name="loss EMA", mode="lines", line={"width": 1}),
                    row=r, col=1,
                )  # fmt: skip
            if wide_positive(loss[y].cast(float).to_numpy()):
                # a divergence (1e14) would flatten the healthy part into a line at 0
                fig.update_yaxes(type="log", title_text="log scale", row=r, col=1)
        elif what == "h0":
            fig.add_trace(
                _line(x=layer["step"].to_numpy(), y=layer["h0"].to_numpy(), name="h0",
                             mode="lines", line={"width": 1, "color": "#1f4e79"}),
                row=r, col=1,
            )  # fmt: skip
        elif what == "heat":
            kind, sig = arg
            df = tables[kind]
            cols = [c for c in df.columns if c.startswith(f"{sig}/")]
            ok = healthy if kind == "layer" else np.ones(df.height, bool)
            m, nf, zr, starts, lo, hi = heat_matrix(df.select(cols).to_numpy(), ok, max_columns)
            x = df["step"].to_numpy()[starts]
            names = [c.split("/", 1)[1] for c in cols]
            ticks = [("▶ " + _label(n)) if n in culprits else _label(n) for n in names]
            fig.add_trace(
                go.Heatmap(z=m.T, x=x, y=ticks, zmin=lo, zmax=hi, colorscale="Viridis",
                           name=sig, showscale=False,
                           hovertemplate="step %{x}<br>%{y}<br>log10 " + sig
                           + " %{z:.3g}<extra></extra>"),
                row=r, col=1,
            )  # fmt: skip
            fig.update_yaxes(type="category", row=r, col=1)
            for mask, colour, label in ((nf, NONFINITE_COLOUR, "non-finite"),
                                        (zr, ZERO_COLOUR, "zero")):  # fmt: skip
                if mask.any():
                    z = np.where(mask, 1.0, np.nan).T
                    fig.add_trace(
                        go.Heatmap(z=z, x=x, y=ticks, zmin=0, zmax=1, showscale=False,
                                   colorscale=[[0, colour], [1, colour]], name=label,
                                   hovertemplate="step %{x}<br>%{y}<br>" + label
                                   + "<extra></extra>"),
                        row=r, col=1,
                    )  # fmt: skip
        elif what == "lines":
            df = tables[arg]
            for c in [c for c in _numeric(df) if "/" not in c][:8]:
                fig.add_trace(
                    _line(x=df["step"].to_numpy(), y=df[c].cast(float).to_numpy(),
                                 name=f"{arg}.{c}", mode="lines+markers",
                                 marker={"size": 3}, line={"width": 1}),
                    row=r, col=1,
                )  # fmt: skip
            if "state" in df.columns:
                for a, b, state in bands(df["step"].to_numpy(), df["state"].to_list()):
                    fig.add_vrect(x0=a, x1=b, fillcolor=STATE_COLOURS[state], line_width=0,
                                  row=r, col=1)  # fmt: skip
    h0_row = next((i for i, p in enumerate(panels, start=1) if p[0] == "h0"), None)
    if h0_row is not None:
        for a, b, state in spans[:500]:
            fig.add_vrect(x0=a, x1=b, fillcolor=STATE_COLOURS[state], line_width=0,
                          row=h0_row, col=1)  # fmt: skip
    for label, step in (markers or {}).items():
        fig.add_vline(x=step, line={"color": "#c62828", "dash": "dash", "width": 1})
        fig.add_annotation(x=step, y=1.0, yref="paper", text=label, showarrow=False,
                           font={"color": "#c62828", "size": 11}, xanchor="left")  # fmt: skip
    fig.update_xaxes(showspikes=True, spikemode="across", spikethickness=1)
    fig.update_xaxes(title_text="training step", row=len(panels), col=1)
    fig.update_layout(
        height=max(500, 230 * sum(heights)),
        hovermode="x unified" if layer is None else "closest",
        margin={"l": 140, "r": 20, "t": 40, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom"},
        template="plotly_white",
    )
    return fig.to_html(full_html=False, include_plotlyjs=True, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})  # fmt: skip
