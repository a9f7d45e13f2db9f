"""Parts of :class:`~streamtopo.integrations.training.TrainingMonitor`: signal names, the
collectors a signal list needs, the row sink that puts every table on the training-step axis,
and small argument helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from .._validation import describe
from ..errors import InputError, InputTypeError
from ..monitors import LossRiseDetector
from . import torch as st_torch

__all__ = [
    "ATTN_ESCALATE_AFTER",
    "ATTN_SIGNALS",
    "LAYER_SIGNALS",
    "MONITORS",
    "RESUME",
    "SIGNALS",
    "SUMMARISED",
    "RowSink",
    "add_collectors",
    "at_step",
    "attention_row",
    "check_feature_monitor",
    "check_layer",
    "check_signals",
    "check_step",
    "layer_group_names",
    "make_layer",
    "make_loss",
    "missing_of",
    "out_logit_row",
    "reopen_writer",
    "state_steps",
]

SIGNALS = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit", "out_logit")
LAYER_SIGNALS = ("act_norm", "grad_norm", "update_ratio")  # one value per layer group
ATTN_SIGNALS = ("attn_entropy", "attn_logit")  # one value per attention module
# The attention monitor never turns a long WATCH into COLLAPSE: attention entropy drifts in
# healthy training (one block sharpens while the others stay), and with the layer monitor's
# escalate_after=50 it stopped 2 of 12 healthy fresh-seed transformer runs (held in WATCH for
# 399 and 464 of 700 steps). Without escalation: 0/12 healthy runs stopped, every growth run
# still raised (WATCH), 4/10 reached COLLAPSE on their own evidence (9/10 with escalation);
# benchmarks/evaluation/TRANSFORMER.md, "Escalation of the attention monitor".
ATTN_ESCALATE_AFTER = 1_000_000
MONITORS = ("layer", "attention", "loss", "centroid", "collapse")
SUMMARISED = ("layer", "attention", "centroid")  # the monitors with a summary()
STEP_LIMIT = 2**62  # steps a RunWriter accepts
RESUME = ("never", "allow", "must")  # a RunWriter's run-id policies


def layer_group_names(model: Any, groups: Any, layer_sigs: tuple[str, ...]) -> tuple[str, ...]:
    """Names of the layer groups (no hooks yet); at least two when a layer signal is on."""
    if not layer_sigs:
        return ()
    names = tuple(g.name for g in st_torch.layer_groups(model, groups))
    if len(names) < 2:
        raise InputError(
            f"groups={groups!r} gives {len(names)} layer group(s) "
            f"({list(names)}), the LayerMonitor needs at least 2"
        )
    return names


def add_collectors(
    collectors: list[Any],
    model: Any,
    signals: Sequence[str],
    groups: Any,
    force_weights: bool,
    optimizer: Any,
) -> list[Any]:
    """Append one collector per signal to ``collectors`` (appended as built, so the caller can
    close them if a later one fails); return the layer-group collectors. The attention
    collectors share one :class:`~streamtopo.integrations.torch.AttentionSampler`."""
    if "act_norm" in signals:
        collectors.append(st_torch.ActivationNormCollector(model, groups))
    if "grad_norm" in signals:
        collectors.append(st_torch.GradNormCollector(model, groups))
    if "update_ratio" in signals:
        collectors.append(st_torch.UpdateRatioCollector(model, groups, optimizer=optimizer))
    layer = list(collectors)
    attn = [s for s in signals if s in ATTN_SIGNALS]
    if attn:
        sampler = st_torch.AttentionSampler(model)
        if len(sampler.sites) < 2:
            raise InputError(
                f"signals includes {attn} but the model has {len(sampler.sites)} attention "
                "module(s) streamtopo can observe, at least 2 are needed (nn.MultiheadAttention"
                " / nn.Transformer*Layer, Hugging Face GPT-2, BERT or Llama-style attention, "
                "or an AttentionTap in custom blocks); add AttentionTaps or drop the signal"
            )
        for s in attn:
            if s == "attn_entropy":
                c = st_torch.AttentionEntropyCollector(
                    model, force_weights=force_weights, sampler=sampler
                )
            else:
                c = st_torch.AttentionLogitCollector(model, sampler=sampler)
            collectors.append(c)
    if "out_logit" in signals:
        collectors.append(st_torch.OutputLogitCollector(model))
    return layer


class RowSink:
    """The monitors' writer: every row on the training-step axis, no table repeating a step.

    The monitors number their rows with their own counters (a LayerMonitor counts monitored
    steps, a guard's rollback rewinds them). The TrainingMonitor sets :attr:`at` to the training
    step before a monitor runs, and each row with a step is stamped with it, so the layer, loss,
    attention, centroid, collapse and interventions tables share one axis. A row at or before
    its table's last written step (``check_centroid()`` twice between two steps) goes right
    after it. An ``events`` row (an ``acknowledge()``; its step is "the next check of table
    ``row['table']``") is held until that table's next row and written with that row's step,
    so replay applies it before the same row the live monitor did, after a rollback too;
    :meth:`flush` writes the held ones (at their table's last step + 1) when the run ends.

    A RunWriter's ``claim_table`` is passed on, so a second live monitor on one table is
    refused at construction through this sink too.
    """

    def __init__(self, writer: Callable[[dict[str, Any]], Any] | None) -> None:
        self.writer = writer
        self.at: int | None = None  # the training step of the rows being written
        self._last: dict[str, int] = {}  # table -> last step written
        self._held: list[dict[str, Any]] = []  # events rows waiting for their table's next row

    @property
    def written(self) -> bool:
        """Whether a row went through this sink."""
        return bool(self._last)

    def claim_table(self, table: Any, owner: object) -> None:
        """The writer's ``claim_table`` (if it has one); the refusal says how a TrainingMonitor
        names its layer and loss monitors."""
        claim = getattr(self.writer, "claim_table", None)
        if claim is None:
            return
        try:
            claim(table, owner)
        except InputError as exc:
            kind = str(table).split(".")[0]
            if kind not in ("layer", "loss"):
                raise
            raise InputError(
                f"{exc}; through a TrainingMonitor, name its {kind} monitor with "
                f"TrainingMonitor(..., {kind}={{'name': 'eval'}}) (writes table '{kind}.eval')"
            ) from None

    def __call__(self, row: dict[str, Any]) -> None:
        kind, step = row.get("monitor"), row.get("step")
        if not (isinstance(step, int) and isinstance(kind, str)):
            self.writer(row)
            return
        if kind == "events" and isinstance(row.get("table"), str):
            self._held.append(row)  # its step is that of its table's next row
            return
        step = self._stamp(kind, step)
        row["step"] = step
        self.writer(row)
        self._last[kind] = step

    @property
    def append_layer(self) -> Callable[..., None] | None:
        """The writer's field-by-field layer path (``RunWriter.append_layer``) with the step
        stamped as :meth:`__call__` stamps it; None when the writer has none (a LayerMonitor
        then sends a dict row)."""
        if getattr(self.writer, "append_layer", None) is None:
            return None
        return self._append_layer

    def _append_layer(self, table: str, step: int, *fields: Any) -> None:
        step = self._stamp(table, step)
        self.writer.append_layer(table, step, *fields)
        self._last[table] = step

    def _stamp(self, table: str, step: int) -> int:
        """The training step a row of ``table`` is written at (held events go first)."""
        if self.at is not None:
            step = self.at
        last = self._last.get(table)
        if last is not None and step <= last:
            step = last + 1
        self._write_held(table, step)
        return step

    def _write_held(self, table: str, step: int) -> None:
        while any(e["table"] == table for e in self._held):
            event = next(e for e in self._held if e["table"] == table)
            self.writer({**event, "step": step})
            self._held.remove(event)

    def flush(self) -> None:
        """Write the held events rows whose table got no row since (the run ended first)."""
        while self._held:
            table = self._held[0]["table"]
            last = self._last.get(table, self.at if self.at is not None else -1)
            self._write_held(table, last + 1)


def at_step(status: Any, step: int) -> Any:
    """``status`` with its ``step`` set to the training step (a monitor counts its own)."""
    return status if status is None or status.step == step else replace(status, step=step)


def check_step(step: Any, after: int) -> int:
    """A training step given to ``TrainingMonitor.step(step=)``: an int >= ``after`` (the
    steps strictly increase) and below 2**62 (the run writer's bound)."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
        raise InputTypeError(
            f"step must be an int (the trainer's global step) or None, got {describe(step)}"
        )
    step = int(step)
    if not after <= step < STEP_LIMIT:
        last = "" if after == 0 else f" (steps must increase; the last step was {after - 1})"
        raise InputError(f"step must be an int in [{after}, 2**62){last}, got {step}")
    return step


def attention_row(row: dict[str, Any]) -> dict[str, Any]:
    """The attention LayerMonitor's row for its own table: attention layers differ from the
    layer groups, one ``attn_entropy/<layer>`` column per layer (the ``<signal>/<layer>`` rule
    of the layer table)."""
    out = {k: row[k] for k in ("step", "wall_time", "h0", "state", "reason", "config")}
    out["monitor"] = "attention"
    for signal, values in zip(row["signals"], row["values"], strict=True):
        for name, value in zip(row["layer_names"], values, strict=True):
            out[f"{signal}/{name}"] = float(value)
    return out


def out_logit_row(step: int, names: Sequence[str], values: Any) -> dict[str, Any]:
    """The row of the output-logit statistics (a table of their own)."""
    row = {"monitor": "out_logit", "step": step, "wall_time": time.time(), "config": {}}
    row.update({k: float(v) for k, v in zip(names, values, strict=True)})
    return row


def state_steps(state: Mapping[str, Any], calls: int) -> tuple[int, Mapping[str, int]]:
    """The checked training-step entries of a ``TrainingMonitor.state_dict()``: the next step
    (``calls`` in states saved before it existed) and the step of each monitor's status."""
    step, stamps = state.get("step", calls), state.get("status_steps", {})
    if not isinstance(stamps, Mapping):
        raise InputError(f"state['status_steps'] must be a dict, got {describe(stamps)}")
    checked = [("'step'", step)] + [(f"'status_steps'][{k!r}", v) for k, v in stamps.items()]
    for key, v in checked:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise InputError(f"state[{key}] must be an int >= 0, got {describe(v)}")
    return step, stamps


def reopen_writer(writer: Any, rewind_to: int | None) -> Any:
    """Close ``writer`` (a RunWriter) and open its run and rank again with ``rewind_to``."""
    from ..io.journal import RunWriter

    kwargs = {"run_id": writer.run_id, "rank": writer.rank, "resume": writer.resume}
    writer.close()
    return RunWriter(writer.log_dir, rewind_to=rewind_to, **kwargs)


def missing_of(collector: Any) -> np.ndarray:
    """The collector's ``missing_`` flags (all False when it flags nothing)."""
    m = np.asarray(collector.missing_, dtype=bool)
    return m if m.shape == (collector.n_layers,) else np.zeros(collector.n_layers, dtype=bool)


def check_signals(signals: Any) -> tuple[str, ...]:
    if isinstance(signals, str) or not all(isinstance(s, str) for s in signals):
        raise InputTypeError(f"signals must be a sequence of str, got {describe(signals)}")
    signals = tuple(signals)
    unknown = [s for s in signals if s not in SIGNALS]
    if unknown or not signals or len(set(signals)) != len(signals):
        raise InputError(f"signals must be distinct names from {SIGNALS}, got {signals!r}")
    return signals


def check_layer(layer: Any) -> None:
    """``TrainingMonitor(layer=)``: None, a LayerMonitor, or a dict of LayerMonitor keyword
    options; checked before any hook or file exists, an unknown option refused by name."""
    import inspect

    from ..monitors.layer import LayerMonitor

    if layer is None or isinstance(layer, LayerMonitor):
        return
    if not isinstance(layer, Mapping):
        raise InputTypeError(
            f"layer must be a dict of LayerMonitor options or a LayerMonitor, got {describe(layer)}"
        )
    own = ("n_layers", "signals", "signal_name")  # set by the TrainingMonitor
    options = [p for p in inspect.signature(LayerMonitor).parameters if p not in own]
    bad = [k for k in layer if k not in options]
    if bad:
        raise InputError(
            f"layer has unknown LayerMonitor option(s) {bad!r}; expected keys from {options} "
            f"({', '.join(own)} come from the model and signals=)"
        )


def check_feature_monitor(monitor: Any, name: str) -> None:
    """``TrainingMonitor(centroid=)`` is a CentroidMonitor or None, ``collapse=`` a
    CollapseMonitor or None."""
    from ..monitors.centroid import CentroidMonitor
    from ..monitors.collapse import CollapseMonitor

    cls = CentroidMonitor if name == "centroid" else CollapseMonitor
    if monitor is not None and not isinstance(monitor, cls):
        raise InputTypeError(f"{name} must be a {cls.__name__} or None, got {describe(monitor)}")


def make_layer(layer: Any, names: tuple[str, ...], signals: tuple[str, ...], writer: Any) -> Any:
    """The layer-group LayerMonitor: built from a dict of options, or a ready one that fits."""
    from ..monitors.layer import LayerMonitor

    if isinstance(layer, LayerMonitor):
        if layer.n_layers != len(names) or tuple(layer.signals) != signals:
            raise InputError(
                f"layer monitor has n_layers={layer.n_layers}, signals={layer.signals}; "
                f"expected n_layers={len(names)}, signals={signals}"
            )
        return layer
    if layer is not None and not isinstance(layer, Mapping):
        raise InputTypeError(
            f"layer must be a dict of LayerMonitor options or a LayerMonitor, got {describe(layer)}"
        )
    kwargs = {"layer_names": names, "writer": writer, **(layer or {})}
    return LayerMonitor(len(names), signals, **kwargs)


def make_loss(loss: Any, writer: Any) -> LossRiseDetector | None:
    if isinstance(loss, LossRiseDetector):
        return loss
    if loss is True:
        return LossRiseDetector(writer=writer)
    if isinstance(loss, Mapping):
        return LossRiseDetector(**{"writer": writer, **loss})
    if loss is False or loss is None:
        return None
    raise InputTypeError(
        f"loss must be True/False, a dict or a LossRiseDetector, got {describe(loss)}"
    )
