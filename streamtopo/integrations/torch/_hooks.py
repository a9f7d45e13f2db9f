"""Forward-hook collectors: activation norms, attention entropy, penultimate features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..._validation import describe
from ...errors import InputError, InputTypeError
from ._attention import AttentionTap
from ._collect import (
    Collector,
    distributed_world,
    each_once,
    first_tensor,
    in_layer_order,
    model_device,
    safe_ratio,
    stack_scalars,
    to_device,
)
from ._groups import layer_groups
from ._transformer import AttentionSampler

__all__ = [
    "ActivationNormCollector",
    "AttentionEntropyCollector",
    "AttentionTap",
    "FeatureCollector",
]

# --------------------------------------------------------------------------- forward-hook sums


class _SumCountCollector(Collector):
    """Keeps, per layer, a sum and an element count; the value is sum / count.

    Hooks only append one 0-d device tensor and a layer index (cheap: no indexing or in-place
    ops on the hot path). Counts are host integers (element counts are known without looking at
    the data). In the common case — one process, each layer seen once since the last
    collection — :meth:`_pack` hands the recorded 0-d values to :func:`collect` as they are (it
    stacks every collector's values in one op) and the rest is host arithmetic; otherwise they
    are summed per layer on the device and, under ``torch.distributed``, the counts join them
    for the one reduction.
    """

    _square = False  # activations record norms (squared when summed), attention records sums

    def _init_buffers(self, device: torch.device) -> None:
        self._device = device
        self._vals: list[torch.Tensor] = []
        self._idx: list[int] = []
        self._scales: list[float] = []
        self._counts = [0] * self.n_layers
        self._in_order = list(range(self.n_layers))
        self._packed = "sums"  # "values" (each layer once, as recorded), "sums", "sums+counts"
        self.missing_ = np.ones(self.n_layers, dtype=bool)

    def _record(self, i: int, value: torch.Tensor, count: int, scale: float = 1.0) -> None:
        """Add ``scale * value`` (a 0-d device tensor; the product is formed at collection) and
        ``count`` elements to layer ``i``."""
        self._vals.append(value)
        self._idx.append(i)
        self._scales.append(scale)
        self._counts[i] += count

    def reset(self) -> None:
        self._vals.clear()
        self._idx.clear()
        self._scales.clear()
        self._counts = [0] * self.n_layers

    def _pack(self) -> list[torch.Tensor]:
        L = self.n_layers
        is_dist = distributed_world()[0]
        if not is_dist and each_once(self._idx, self._in_order):
            self._packed = "values"
            return list(self._vals)
        if self._vals:
            device = self._vals[0].device
            v = stack_scalars(self._vals, device)
            if self._square:
                v = v.square()
            if any(c != 1.0 for c in self._scales):
                v = v * to_device(np.asarray(self._scales, dtype=np.float32), device)
            if self._idx == self._in_order:
                sums = v
            else:
                idx = to_device(self._idx, device)
                sums = torch.zeros(L, dtype=torch.float32, device=device).index_add_(0, idx, v)
        else:
            device = self._device
            sums = torch.zeros(L, dtype=torch.float32, device=device)
        if not is_dist:
            self._packed = "sums"
            return [sums]
        self._packed = "sums+counts"
        counts = to_device(np.asarray(self._counts, dtype=np.float32), device)
        return [torch.cat([sums, counts])]

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:
        G = self.n_layers
        if self._packed == "sums+counts":
            sums, counts = host[:G], host[G:]
        else:
            counts = np.asarray(self._counts, dtype=np.float64)
            sums = host
            if self._packed == "values":
                sums = np.square(host) if self._square else host * np.asarray(self._scales)
                sums = in_layer_order(sums, self._idx, self._in_order)
        self.missing_ = counts == 0
        return safe_ratio(sums, counts)


_norm = torch.linalg.vector_norm
_LOG_FLOOR = -0.5 * torch.finfo(torch.float32).max  # below every finite log-probability


class ActivationNormCollector(_SumCountCollector):
    """Per-layer RMS of each layer group's output, sqrt(mean(x²)), from forward hooks.

    Outputs are read detached (no graph is kept, outputs are returned unchanged) and reduced on
    the device with ``torch.linalg.vector_norm`` into running sums, so several forwards between
    two collections (gradient accumulation) are pooled into one RMS per layer. Forwards in eval
    mode are ignored unless ``training_only=False``. A layer that did not run reports NaN. For a
    tuple or dict output, the first tensor is used.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    >>> with torch.no_grad():
    ...     for m in model:
    ...         _ = m.weight.copy_(torch.eye(2)), m.bias.zero_()
    >>> acts = ActivationNormCollector(model)
    >>> _ = model(torch.tensor([[3.0, 4.0]]))
    >>> acts.compute()  # RMS of (3, 4) twice
    array([3.535534, 3.535534], dtype=float32)
    >>> acts.close()
    """

    signal = "act_norm"
    _square = True

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:
        return np.sqrt(np.maximum(super()._unpack(host, world_size), 0.0))

    def __init__(
        self,
        model: nn.Module,
        groups: str | Sequence[str] = "auto",
        *,
        training_only: bool = True,
    ) -> None:
        super().__init__()
        resolved = layer_groups(model, groups)
        self.layer_names = tuple(g.name for g in resolved)
        self.training_only = bool(training_only)
        self._init_buffers(model_device(model))
        for i, group in enumerate(resolved):
            self._add_hook(group.module, "forward", self._make_hook(i))

    def _make_hook(self, i: int) -> Callable[..., None]:
        vals, idx, scales, f32, norm = self._vals, self._idx, self._scales, torch.float32, _norm

        def hook(module: nn.Module, args: Any, output: Any) -> None:
            # runs in every forward of every layer: _record inlined, no property lookups
            if not self._enabled or (self.training_only and not module.training):
                return
            x = output if type(output) is torch.Tensor else first_tensor(output)
            if x is None or not x.is_floating_point():
                return
            x = x.detach()
            vals.append(norm(x) if x.dtype is f32 else norm(x, dtype=f32))
            idx.append(i)
            scales.append(1.0)
            self._counts[i] += x.numel()

        return hook


# --------------------------------------------------------------------------- attention entropy


class AttentionEntropyCollector(_SumCountCollector):
    """Mean entropy (nats) of the attention distributions of each attention layer.

    Layers are the sites of :func:`~streamtopo.integrations.torch.attention_sites`, in module
    order: every ``nn.MultiheadAttention`` (so ``nn.TransformerEncoderLayer`` /
    ``nn.TransformerDecoderLayer``), Hugging Face GPT-2, BERT-style and Llama-style attention
    modules, and every :class:`AttentionTap`. For each query row, H = −Σ p log p over the keys
    (0 log 0 = 0, so masked keys count as absent); the layer value is a mean over rows, heads
    and calls. Where the probabilities are at hand they are used whole: an
    :class:`AttentionTap`'s input, and the weights an ``nn.MultiheadAttention`` returns when
    its caller passes ``need_weights=True`` (with ``average_attn_weights=True``, torch's
    default, that is the entropy of the head-averaged distribution). Otherwise — an encoder
    layer calling with ``need_weights=False``, a Hugging Face module on the fused SDPA path —
    the probabilities are recomputed from the module's inputs and q/k projection weights on a
    sample: the first batch element, every head, at most ``max_queries`` evenly spaced queries
    (see :class:`AttentionSampler`); each call then counts as one row-mean. Rows whose keys are
    all masked are left out. ``force_weights=True`` instead makes every
    ``nn.MultiheadAttention`` compute its full per-head weights (a forward pre-hook sets
    ``need_weights=True, average_attn_weights=False`` and strips them again when the caller did
    not ask); that disables torch's fused path and costs time. A layer without an observation
    is NaN and flagged in ``missing_``.

    Examples
    --------
    >>> import torch
    >>> class Block(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.tap = AttentionTap()
    ...     def forward(self, scores):
    ...         return self.tap(scores.softmax(-1))
    >>> model = torch.nn.Sequential(Block(), Block())
    >>> ent = AttentionEntropyCollector(model)
    >>> _ = model(torch.zeros(1, 4, 4))       # uniform over 4 keys: entropy log 4
    >>> ent.layer_names, ent.compute().round(4)
    (('0.tap', '1.tap'), array([1.3863, 1.3863], dtype=float32))
    """

    signal = "attn_entropy"

    def __init__(
        self,
        model: nn.Module,
        *,
        training_only: bool = True,
        force_weights: bool = False,
        max_queries: int = 32,
        sampler: AttentionSampler | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        if sampler is None:
            sampler = AttentionSampler(model, max_queries=max_queries)
        elif not isinstance(sampler, AttentionSampler):
            raise InputTypeError(f"sampler must be an AttentionSampler, got {describe(sampler)}")
        self.sampler = sampler
        self.layer_names = sampler.layer_names
        self.training_only = bool(training_only)
        self.force_weights = bool(force_weights)
        self._init_buffers(model_device(model))
        for i, site in enumerate(sampler.sites):
            m = site.module
            if site.kind == "tap":
                self._add_hook(m, "forward", self._make_tap_hook(i))
                continue
            asked: list[bool] = [True]
            if self.force_weights and site.kind == "mha":
                self._add_hook(m, "pre", self._make_force(asked))
            self._add_hook(m, "forward_kw", self._make_hook(i, asked, site.kind == "mha"))
        # queued self-attention calls are computed at the end of the model's forward pass
        self._add_hook(model, "forward", lambda *_: self.sampler.flush())

    def _pack(self) -> list[torch.Tensor]:
        self.sampler.flush()  # calls queued without a forward hook of the model (rare)
        return super()._pack()

    def _on_batch(self, layers: list[int], s: torch.Tensor, full: bool) -> None:
        if not full:
            for j, i in enumerate(layers):
                self._add_sampled(i, s[j])
            return
        _, H, Q, _ = s.shape
        # Σ -p log p per layer: p from softmax (exact zeros on masked keys), log p from
        # log_softmax with its -inf clamped to a finite floor, so masked keys add exactly 0
        # (no xlogy / entr pass; exp of the floor instead of softmax would take a slow path)
        lp = s.log_softmax(-1).clamp_min_(_LOG_FLOOR)
        p = s.softmax(-1).reshape(len(layers), -1)
        h = torch.linalg.vecdot(p, lp.reshape(len(layers), -1)).neg_()
        for i, v in zip(layers, h.unbind(), strict=True):
            self._record(i, v, 1, 1.0 / (H * Q))  # the mean row entropy

    def _active(self, module: nn.Module) -> bool:
        return self.enabled and not (self.training_only and not module.training)

    def _add(self, i: int, probs: torch.Tensor) -> None:
        p = probs.detach().to(torch.float32)
        rows = p.numel() // max(p.shape[-1], 1)
        self._record(i, -torch.special.xlogy(p, p).sum(), rows)

    def _add_sampled(self, i: int, logits: torch.Tensor, full_rows: bool = False) -> None:
        if full_rows:  # no query row entirely masked: no row filter needed
            # the mean row entropy: the sum of -p log p, divided by the rows on the host
            rows = logits.numel() // max(logits.shape[-1], 1)
            self._record(i, torch.special.entr(logits.softmax(-1)).sum(), 1, 1.0 / rows)
            return
        valid = ~torch.isneginf(logits).all(-1)
        p = logits.masked_fill(~valid[..., None], 0.0).softmax(-1)
        h = -torch.special.xlogy(p, p).sum(-1)
        self._record(i, (h * valid).sum() / valid.sum(), 1)

    def _make_force(self, asked: list[bool]) -> Callable[..., Any]:
        def pre(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
            if not self._active(module):
                return args, kwargs
            # need_weights is the 5th positional parameter of MultiheadAttention.forward
            asked[0] = bool(args[4]) if len(args) > 4 else bool(kwargs.get("need_weights", True))
            if len(args) > 4:
                args = (*args[:4], True, *args[5:])
            else:
                kwargs = {**kwargs, "need_weights": True}
            kwargs = {**kwargs, "average_attn_weights": False}
            if len(args) > 6:  # average_attn_weights given positionally
                args = (*args[:6], *args[7:])
            return args, kwargs

        return pre

    def _make_hook(self, i: int, asked: list[bool], mha: bool) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
            if not self._active(module):
                return None
            weights = None
            if mha and isinstance(output, tuple) and len(output) > 1:
                weights = output[1]
            if weights is not None:
                self._add(i, weights)
                if self.force_weights and not asked[0]:
                    return (output[0], None)
                return None
            if self.sampler.defer(i, args, kwargs, self._on_batch):
                return None
            smp = self.sampler.sample(i, args, kwargs, output)
            if smp is not None and smp.logits is not None:
                self._add_sampled(i, smp.logits, smp.full_rows)
            return None

        return hook

    def _make_tap_hook(self, i: int) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            if self._active(module) and isinstance(output, torch.Tensor):
                self._add(i, output)

        return hook


# --------------------------------------------------------------------------- penultimate features


class FeatureCollector:
    """Penultimate features of the last forward pass, for CentroidMonitor / CollapseMonitor.

    ``layer="auto"`` hooks the model's last ``nn.Linear`` (in module order) and keeps its
    *input* — the penultimate representation. Given a module name, it keeps that module's
    output (or its input with ``use_input=True``). Features are detached and flattened to
    (batch, d); they stay on the device until :meth:`take` copies them to the host.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> feats = FeatureCollector(model)
    >>> _ = model(torch.ones(5, 4))
    >>> feats.layer_name, feats.take().shape
    ('2', (5, 3))
    >>> feats.close()
    """

    def __init__(
        self, model: nn.Module, layer: str = "auto", *, use_input: bool | None = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        if layer == "auto":
            linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
            if not linears:
                raise InputError("layer='auto' needs an nn.Linear head; name the feature layer")
            name, module = linears[-1]
            use_input = True if use_input is None else use_input
        else:
            try:
                module = model.get_submodule(layer)
            except AttributeError as exc:
                raise InputError(f"layer {layer!r} is not a module of the model") from exc
            name = layer
            use_input = False if use_input is None else use_input
        self.layer_name = name or "root"
        self.use_input = bool(use_input)
        self.enabled = True
        self.host_copies = 0
        self.features_: torch.Tensor | None = None
        self.training_: bool | None = None
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self.enabled:
            return
        x = first_tensor(args) if self.use_input else first_tensor(output)
        if x is None:
            return
        self.features_ = x.detach().reshape(x.shape[0], -1) if x.dim() > 1 else x.detach()[None]
        self.training_ = module.training

    def take(self) -> np.ndarray:
        """The last captured features as a float32 (batch, d) host array (one host copy)."""
        if self.features_ is None:
            raise InputError("no features captured yet: run a forward pass first")
        self.host_copies += 1
        return self.features_.to(torch.float32).cpu().numpy()

    def reset(self) -> None:
        self.features_ = None
        self.training_ = None

    def close(self) -> None:
        """Remove the hook (idempotent)."""
        self._handle.remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
