"""Parts of :class:`~streamtopo.integrations.training.TrainingMonitor`: signal names, the
collectors a signal list needs, the row sink that keeps logged steps monotonic, and small
argument helpers."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from .._validation import describe
from ..errors import InputError, InputTypeError
from ..monitors import LossRiseDetector
from . import torch as st_torch

__all__ = [
    "ATTN_SIGNALS",
    "LAYER_SIGNALS",
    "MONITORS",
    "SIGNALS",
    "SUMMARISED",
    "RowSink",
    "add_collectors",
    "check_signals",
    "make_loss",
    "missing_of",
]

SIGNALS = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit", "out_logit")
LAYER_SIGNALS = ("act_norm", "grad_norm", "update_ratio")  # one value per layer group
ATTN_SIGNALS = ("attn_entropy", "attn_logit")  # one value per attention module
MONITORS = ("layer", "attention", "loss", "centroid", "collapse")
SUMMARISED = ("layer", "attention", "centroid")  # the monitors with a summary()


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
    """The monitors' writer: their rows, with steps that never go back.

    A guard's rollback rewinds the monitors' counters with their state; each table then
    continues after its last written step (the row's step is shifted), so no table repeats a
    step. Without a rollback the steps pass unchanged.
    """

    def __init__(self, writer: Callable[[dict[str, Any]], Any] | None) -> None:
        self.writer = writer
        self._last: dict[str, int] = {}  # table -> last step written
        self._shift: dict[str, int] = {}  # table -> added to the monitor's step

    def __call__(self, row: dict[str, Any]) -> None:
        kind, step = row.get("monitor"), row.get("step")
        if not (isinstance(step, int) and isinstance(kind, str)):
            self.writer(row)
            return
        step += self._shift.get(kind, 0)
        last = self._last.get(kind)
        if last is not None and step <= last:
            self._shift[kind] = self._shift.get(kind, 0) + last + 1 - step
            step = last + 1
        row["step"] = step
        self.writer(row)
        self._last[kind] = step


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
