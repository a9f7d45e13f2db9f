"""The hooks a :class:`~streamtopo.integrations.training.TrainingMonitor` puts on the model.

One collector per signal (the attention collectors share one
:class:`~streamtopo.integrations.torch.AttentionSampler`) and, when a centroid or collapse
monitor needs them, the penultimate-feature reader. They are switched on for the monitored
steps only (the feature reader on every step when a centroid monitor is fed), and their values
reach the host in one copy per monitored step. :meth:`ModelHooks.close` removes them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .._validation import describe
from ..errors import InputError, InputTypeError
from . import torch as st_torch
from ._training_parts import ATTN_SIGNALS

__all__ = ["ModelHooks", "add_collectors", "check_labels", "layer_group_names", "missing_of"]


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


def missing_of(collector: Any) -> np.ndarray:
    """The collector's ``missing_`` flags (all False when it flags nothing)."""
    m = np.asarray(collector.missing_, dtype=bool)
    return m if m.shape == (collector.n_layers,) else np.zeros(collector.n_layers, dtype=bool)


def check_labels(labels: Any, feats: Any, n_classes: int | None) -> np.ndarray:
    """``labels`` as a host int array, checked against ``feats`` (the last forward pass's
    features) and ``n_classes`` (the centroid monitor's, or None)."""
    try:
        y = st_torch.labels_to_numpy(labels)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"labels must be class labels, got {describe(labels)}") from exc
    if y.ndim != 1 or y.dtype.kind not in "iu" or len(y) != len(feats):
        raise InputError(
            f"labels must be a 1-D integer array of {len(feats)} labels (one per row of the "
            f"last forward pass's features), got {describe(labels)}"
        )
    n = n_classes
    if n is not None and y.size and (y.min() < 0 or y.max() >= n):
        bad = y[(y < 0) | (y >= n)]
        raise InputError(
            f"labels must be in [0, n_classes={n}) (the centroid monitor's classes), got "
            f"{bad.size} label(s) out of range (e.g. {int(bad[0])})"
        )
    return y


class ModelHooks:
    """The collectors of ``signals`` on ``model`` and, with ``features``, the feature reader
    at ``feature_layer`` (read on every step when ``features_always``, else on monitored steps
    only). A failure while building removes the hooks already placed, then raises.

    Attributes
    ----------
    collectors : list
        One collector per signal, in the order of :func:`add_collectors`.
    layer : list
        The layer-group collectors (one value per layer group).
    attn, out_logit
        The first attention collector (its layers are the attention sites) and the
        output-logit collector, or None.
    features : FeatureCollector or None
        The penultimate-feature reader.
    """

    def __init__(
        self,
        model: Any,
        signals: Sequence[str],
        groups: Any,
        feature_layer: str,
        force_weights: bool,
        *,
        features: bool,
        features_always: bool,
        optimizer: Any,
    ) -> None:
        self.collectors: list[Any] = []
        self.layer: list[Any] = []
        self.features: Any = None
        self.attn: Any = None
        self.out_logit: Any = None
        self.armed = True  # the hooks are on (as built)
        self._features_always = features_always
        try:
            self.layer = add_collectors(
                self.collectors, model, signals, groups, force_weights, optimizer
            )
            for c in self.collectors:
                if c.signal in ATTN_SIGNALS and self.attn is None:
                    self.attn = c  # the first attention collector: its layers are the sites
                if c.signal == "out_logit":
                    self.out_logit = c
            if features:
                self.features = st_torch.FeatureCollector(model, feature_layer)
        except BaseException:
            self.close()
            raise

    def labels_for(self, labels: Any, n_classes: int | None) -> np.ndarray | None:
        """``labels`` as a host int array checked against the last forward pass's features
        (:func:`check_labels`); None without labels or features."""
        if labels is None or self.features is None:
            return None
        feats = self.features.features_
        if feats is None:
            return None
        return check_labels(labels, feats, n_classes)

    def arm(self, on: bool, *, force: bool = False) -> None:
        """Switch the hooks on (the next call is monitored) or off; a no-op when they already
        are (the calls between monitored steps)."""
        if on == self.armed and not force:
            return
        self.armed = on
        for c in self.collectors:
            c.enabled = on
        if self.features is not None:
            self.features.enabled = on or self._features_always

    def capture_grads(self) -> None:
        """Read the gradients now (on device, no sync) for the coming collection."""
        for c in self.layer:
            if isinstance(c, st_torch.GradNormCollector):
                c.capture()

    def collect(self, extra: Any) -> list[Any]:
        """Every collector's values (and ``extra``, last) in one host copy."""
        return st_torch.collect(self.collectors, extra=extra)

    def by_signal(self, values: Sequence[Any]) -> dict[str, Any]:
        """Signal name -> the values :meth:`collect` gave for it."""
        return {c.signal: v for c, v in zip(self.collectors, values, strict=False)}

    def missing(self) -> dict[str, np.ndarray]:
        """Signal name -> the layers its collector did not observe this step."""
        return {c.signal: missing_of(c) for c in self.collectors}

    def reset(self) -> None:
        """Drop the collectors' sums."""
        for c in self.collectors:
            c.reset()

    def close(self) -> None:
        """Remove every hook (idempotent)."""
        for c in self.collectors:
            c.close()
        if self.features is not None:
            self.features.close()
