"""The headline of a report: the answer first (verdict, first alarm, lead or lag against the
loss rule, guard interventions), computed from the run's tables, library-free."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Headline", "headline", "headline_html", "headline_markdown"]


@dataclass(frozen=True)
class Headline:
    """What a reader needs first. Steps are training steps as the tables record them."""

    healthy: bool
    verdict: str
    first_alarm_step: int | None = None
    first_alarm_state: str | None = None
    first_alarm_rule: str | None = None
    first_alarm_layers: tuple[str, ...] = ()
    first_alarm_direction: str = ""
    loss_alarm_step: int | None = None
    lead: str = ""
    interventions: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _first_alarm(df: Any) -> dict[str, Any] | None:
    """The first non-HEALTHY row of a table with a ``state`` column (None: there is none)."""
    if df is None or "state" not in df.columns:
        return None
    alarms = df.filter(df["state"] != "HEALTHY")
    if "calibrating" in alarms.columns:
        alarms = alarms.filter(~alarms["calibrating"].fill_null(False))
    return alarms.row(0, named=True) if alarms.height else None


def _rule(reason: str) -> str:
    head = reason.split(":", 1)[0].strip()
    return head if head and len(head) <= 40 else reason[:60]


def headline(tables: dict[str, Any]) -> Headline:
    """The headline of a run from its tables (polars DataFrames by kind, one rank).

    >>> import polars as pl
    >>> layer = pl.DataFrame({"step": [0, 1, 2], "state": ["HEALTHY", "WATCH", "COLLAPSE"],
    ...                       "reason": ["", "layer: fc3 z=+9.1", ""],
    ...                       "culprits": [[], ["fc3"], ["fc3"]], "direction": ["", "rising", ""]})
    >>> loss = pl.DataFrame({"step": [0, 1, 2], "state": ["HEALTHY", "HEALTHY", "WATCH"]})
    >>> h = headline({"layer": layer, "loss": loss})
    >>> h.healthy, h.first_alarm_step, h.first_alarm_rule, h.first_alarm_layers
    (False, 1, 'layer', ('fc3',))
    >>> h.lead
    'Lead: the topology alarm came 1 steps before the loss rule (step 2).'
    """
    layer, loss = tables.get("layer"), tables.get("loss")
    first = _first_alarm(layer)
    loss_first = _first_alarm(loss)
    states = [] if layer is None else layer["state"].to_list()
    collapsed = "COLLAPSE" in states
    final = states[-1] if states else None
    healthy = first is None and loss_first is None
    if layer is None:
        verdict = "No layer-monitor rows in this run: no verdict from the topology."
        healthy = loss_first is None
    elif healthy:
        verdict = f"Healthy: no alarm in {len(states)} recorded steps."
    else:
        what = "COLLAPSE" if collapsed else ("WATCH" if first is not None else "loss rule")
        end = f"final state {final}" if final else ""
        verdict = f"Not healthy: {what} raised; {end}."
    h = dict(healthy=healthy, verdict=verdict)
    lines = [verdict]
    if first is not None:
        reason = str(first.get("reason") or "")
        layers = tuple(first.get("culprits") or ())
        direction = str(first.get("direction") or "")
        h.update(
            first_alarm_step=int(first["step"]),
            first_alarm_state=str(first["state"]),
            first_alarm_rule=_rule(reason),
            first_alarm_layers=layers,
            first_alarm_direction=direction,
        )
        where = f" in layers {', '.join(layers[:6])}" if layers else ""
        way = f" ({direction})" if direction else ""
        lines.append(
            f"First alarm: step {int(first['step'])}, {first['state']} by rule "
            f"'{_rule(reason)}'{where}{way}."
        )
    if loss is not None:
        if loss_first is None:
            lead = "The loss rule never fired."
        else:
            h["loss_alarm_step"] = int(loss_first["step"])
            if first is None:
                lead = (
                    f"The loss rule fired at step {int(loss_first['step'])}; the topology did not."
                )
            else:
                d = int(loss_first["step"]) - int(first["step"])
                lead = (
                    f"Lead: the topology alarm came {d} steps before the loss rule "
                    f"(step {int(loss_first['step'])})."
                    if d > 0
                    else f"Lag: the topology alarm came {-d} steps after the loss rule "
                    f"(step {int(loss_first['step'])})."
                    if d < 0
                    else f"Same step as the loss rule (step {int(loss_first['step'])})."
                )
        h["lead"] = lead
        lines.append(lead)
    else:
        lines.append("No loss table in this run: no lead/lag against the loss rule.")
    inter = tables.get("interventions")
    if inter is not None:
        items = []
        for row in inter.head(10).iter_rows(named=True):
            what = row.get("action") or row.get("kind") or row.get("reason") or "intervention"
            items.append(f"step {row['step']}: {what}")
        h["interventions"] = items
        lines.append(
            f"Guard interventions: {inter.height}" + (f" ({'; '.join(items)})" if items else "")
        )
    return Headline(**h, lines=lines)


def headline_html(h: Headline) -> str:
    """The headline card as HTML (every value escaped)."""
    colour = "#2e7d32" if h.healthy else "#c62828"
    word = "HEALTHY" if h.healthy else "NOT HEALTHY"
    rows = "".join(f"<li>{html.escape(x)}</li>" for x in h.lines[1:])
    return (
        f'<section id="headline" style="border-left:8px solid {colour};padding:0.5em 1em;'
        'background:#fafafa;margin-bottom:1em">'
        f'<div style="font-size:1.6em;font-weight:bold;color:{colour}">{word}</div>'
        f"<p>{html.escape(h.verdict)}</p><ul>{rows}</ul></section>"
    )


def headline_markdown(h: Headline) -> list[str]:
    """The headline as markdown lines (escaped by the caller's md_escape)."""
    return [("**HEALTHY**" if h.healthy else "**NOT HEALTHY**"), *h.lines]
