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
    first_collapse_step: int | None = None
    loss_alarm_step: int | None = None
    lead: str = ""
    interventions: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


#: tables whose alarms are not the topology's: the loss rule, and the guard's own actions
NOT_TOPOLOGY = frozenset({"loss", "interventions"})


def _alarm_mask(df: Any) -> Any:
    """Per row (a boolean Series): an alarm — not HEALTHY, not calibrating, and for a table
    with an ``alert`` column (the centroid gap) only where the rule alerted (its state also
    carries test-loss patience, which is early stopping, not an alarm)."""
    mask = (df["state"] != "HEALTHY").fill_null(False)
    if "calibrating" in df.columns:
        mask = mask & ~df["calibrating"].fill_null(False)
    if "alert" in df.columns:
        mask = mask & df["alert"].fill_null(False)
    return mask


def _episode_around(tables: dict[str, Any], kinds: list[str], at: int) -> dict[str, Any] | None:
    """The topology alarm to compare with the loss rule's first alarm at step ``at``: of the
    alarm episodes (runs of consecutive alarm rows) still running at ``at`` or starting after
    it, the one that starts first. An episode that ended before ``at`` was about something
    else (e.g. a false alarm long before the failure): it earns no lead."""
    best: dict[str, Any] | None = None
    for k in kinds:
        df = tables[k]
        steps, mask = df["step"].to_list(), _alarm_mask(df).to_list()
        # the episode holding the first alarm row at or after ``at``; back to its start
        i = next(
            (i for i, (t, m) in enumerate(zip(steps, mask, strict=True)) if m and t >= at), None
        )
        if i is None:
            continue
        while i > 0 and mask[i - 1]:
            i -= 1
        if best is None or steps[i] < best["step"]:
            best = {"step": steps[i]}
    return best


def _first_alarm(df: Any, state: str | None = None) -> dict[str, Any] | None:
    """The first alarm row (see :func:`_alarm_mask`) of a table with a ``state`` column; with
    ``state``, the first alarm row in that state."""
    if df is None or "state" not in df.columns:
        return None
    mask = _alarm_mask(df)
    if state is not None:
        mask = mask & (df["state"] == state).fill_null(False)
    alarms = df.filter(mask)
    return alarms.row(0, named=True) if alarms.height else None


def _steps(n: int) -> str:
    return f"{n} step" if n == 1 else f"{n} steps"


def _rule(reason: str) -> str:
    """The rule of an alarm: its reason up to the first colon, at most 60 characters."""
    head = reason.split(":", 1)[0].strip() or reason.strip()
    return head if len(head) <= 60 else head[:57].rsplit(" ", 1)[0] + " ..."  # at a word


def _lead(first: dict[str, Any] | None, loss_first: dict[str, Any] | None) -> str:
    if loss_first is None:
        return "The loss rule never fired."
    at = int(loss_first["step"])
    if first is None:
        return f"The loss rule fired at step {at}; no topology alarm was running then or after."
    d = at - int(first["step"])
    if d > 0:
        return f"Lead: the layer monitor alarmed {_steps(d)} before the loss rule (step {at})."
    if d < 0:
        return f"Lag: the layer monitor alarmed {_steps(-d)} after the loss rule (step {at})."
    return f"Same step as the loss rule (step {at})."


def headline(tables: dict[str, Any]) -> Headline:
    """The headline of a run from its tables (polars DataFrames by kind, one rank, steps on
    the training-step axis).

    >>> import polars as pl
    >>> layer = pl.DataFrame({"step": [0, 1, 2], "state": ["HEALTHY", "WATCH", "COLLAPSE"],
    ...                       "reason": ["", "layer: fc3 z=+9.1", "layer: fc3 z=+30"],
    ...                       "culprits": [[], ["fc3"], ["fc3"]], "direction": ["", "rising", ""]})
    >>> loss = pl.DataFrame({"step": [0, 1, 2], "state": ["HEALTHY", "HEALTHY", "WATCH"]})
    >>> h = headline({"layer": layer, "loss": loss})
    >>> h.healthy, h.first_alarm_step, h.first_alarm_rule, h.first_alarm_layers
    (False, 1, 'layer', ('fc3',))
    >>> h.lead
    'Lead: the layer monitor alarmed 1 step before the loss rule (step 2).'
    >>> h.first_collapse_step, h.lines[2]
    (2, "First COLLAPSE: step 2 by rule 'layer'.")
    """
    layer, loss = tables.get("layer"), tables.get("loss")
    firsts = {
        k: r
        for k in sorted(tables, key=lambda k: (k != "layer", k))
        if k not in NOT_TOPOLOGY and (r := _first_alarm(tables[k])) is not None
    }
    kind, first = min(firsts.items(), key=lambda kv: int(kv[1]["step"]), default=(None, None))
    loss_first = _first_alarm(loss)
    healthy = first is None and loss_first is None
    n = 0 if layer is None else layer.height
    if healthy:
        verdict = (
            f"Healthy: no alarm in {n} recorded steps."
            if layer is not None
            else "Healthy: no monitor raised an alarm."
        )
    elif first is not None:
        verdict = (
            f"Not healthy: the {kind} monitor raised {first['state']} at step {first['step']}."
        )
    else:
        verdict = f"Not healthy: the loss rule fired at step {loss_first['step']}."
    h: dict[str, Any] = {"healthy": healthy, "verdict": verdict}
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
            f"'{_rule(reason)}'{where}{way}"
            + ("" if kind == "layer" else f" ({kind} monitor)")
            + "."
        )
        others = [f"{k} at step {int(r['step'])}" for k, r in firsts.items() if k != kind]
        if others:
            lines.append("Other monitors' first alarms: " + ", ".join(others) + ".")
        if first["state"] != "COLLAPSE":  # the first alarm was a WATCH: the worst came later?
            worst = [
                (k, r) for k in firsts if (r := _first_alarm(tables[k], "COLLAPSE")) is not None
            ]
            if worst:
                k, r = min(worst, key=lambda kv: int(kv[1]["step"]))
                h["first_collapse_step"] = int(r["step"])
                lines.append(
                    f"First COLLAPSE: step {int(r['step'])} by rule "
                    f"'{_rule(str(r.get('reason') or ''))}'"
                    + ("" if k == "layer" else f" ({k} monitor)")
                    + "."
                )
    if layer is not None and "calibrating" in layer.columns and layer.height:
        ready = layer.filter(~layer["calibrating"].fill_null(False))
        # blind while calibrating only under the streak rule without its early detector
        blind = "reason" in layer.columns and bool(
            layer["reason"].fill_null("").str.starts_with("warmup (").any()
        )
        how = " (no alarm possible)" if blind else " (its change detector watched meanwhile)"
        if ready.height == 0:
            lines.append(f"The layer monitor was calibrating for the whole run{how}.")
        elif int(ready["step"][0]) > int(layer["step"][0]):
            lines.append(
                f"The layer monitor was calibrating until step {int(ready['step'][0])}{how}."
            )
    if loss is not None:
        h["loss_alarm_step"] = None if loss_first is None else int(loss_first["step"])
        near = (
            None
            if loss_first is None
            else _episode_around(tables, list(firsts), int(loss_first["step"]))
        )
        h["lead"] = _lead(near, loss_first)
        lines.append(h["lead"])
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


def headline_markdown(h: Headline) -> tuple[str, list[str]]:
    """The headline for markdown: the bold verdict word, and the lines (plain text, for the
    caller's escaping)."""
    return ("**HEALTHY**" if h.healthy else "**NOT HEALTHY**"), list(h.lines)
