"""Transformer signals: attention logits and output-logit statistics (the update ratio is in
:mod:`._update`).

Notation: L attention layers (or layer groups), P parameters.

Like every collector here, values are kept on the device and reach the host with the one
packed copy of :func:`~streamtopo.integrations.torch.collect`. A value that was not observed
since the last collection (a layer that did not run, a tap without logits, no optimizer step)
is NaN **and** flagged in ``missing_`` (a bool array beside the values, refreshed by every
collection); a NaN that is not flagged missing is a genuinely non-finite value.
"""

from __future__ import annotations

from collections.abc import Callable
from math import inf
from math import nan as _NAN
from typing import Any
from weakref import ref

import numpy as np
import torch
from torch import nn

from ..._validation import describe
from ...errors import InputError, InputTypeError
from ._attention import (
    AttentionSample,
    Deferred,
    attention_sites,
    batched_logits,
    deferrable,
    sample_logits,
)
from ._collect import (
    Collector,
    distributed_world,
    each_once,
    first_tensor,
    in_layer_order,
    model_device,
    stack_scalars,
    to_device,
)

__all__ = [
    "AttentionLogitCollector",
    "AttentionSampler",
    "OutputLogitCollector",
]


class AttentionSampler:
    """The attention sites of a model and their sampled logits, shared between collectors.

    Computes each site's sample (first batch element, every head, at most ``max_queries``
    evenly spaced queries; see :mod:`streamtopo.integrations.torch._attention`) at most once
    per forward call, however many collectors (entropy, logits) read it: pass the same sampler
    to :class:`~streamtopo.integrations.torch.AttentionEntropyCollector` and
    :class:`AttentionLogitCollector`.

    Parameters
    ----------
    model : torch.nn.Module
    max_queries : int
        Query positions sampled per call (default 32).

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True)
    >>> enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    >>> AttentionSampler(enc).layer_names
    ('layers.0.self_attn', 'layers.1.self_attn')
    """

    def __init__(self, model: nn.Module, *, max_queries: int = 32) -> None:
        if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1:
            raise InputError(f"max_queries must be an int >= 1, got {max_queries!r}")
        self.sites = attention_sites(model)
        self.layer_names = tuple(s.name for s in self.sites)
        self.max_queries = max_queries
        self._last: list[tuple[Any, AttentionSample | None] | None] = [None] * len(self.sites)
        # self-attention calls queued during a forward pass (see defer) and who waits for them
        self._pending: dict[int, Deferred] = {}
        self._waiting: dict[int, list[Callable[..., None]]] = {}

    def sample(self, i: int, args: tuple, kwargs: dict, output: Any) -> AttentionSample | None:
        """Sampled logits/probabilities of the current call of site ``i`` (cached per call)."""
        key = first_tensor(output)
        last = self._last[i]
        if last is not None and key is not None and last[0]() is key:
            return last[1]
        smp = sample_logits(self.sites[i], args, kwargs, output, self.max_queries)
        self._last[i] = (ref(key), smp) if key is not None else None
        return smp

    def defer(self, i: int, args: tuple, kwargs: dict, listener: Callable[..., None]) -> bool:
        """Queue this call of site ``i`` for :meth:`flush` (True), or say it must be sampled
        now with :meth:`sample` (False: not a batchable self-attention call).

        ``listener(layers, logits, full)`` is called by :meth:`flush` with the site indices,
        their sampled logits (N, H, Q, S) and whether every query row keeps a key. The
        collectors flush from a forward hook on the model, so the logits are computed with
        the weights of this forward pass (the optimizer has not stepped yet).
        """
        waiting = self._waiting.get(i)
        if waiting is not None and listener in waiting:  # the site runs again: settle first
            self.flush()
            waiting = None
        if waiting is None:
            call = deferrable(self.sites[i], args, kwargs, self.max_queries)
            if call is None:
                return False
            self._pending[i] = call
            waiting = self._waiting[i] = []
        waiting.append(listener)
        return True

    def flush(self) -> None:
        """Compute every queued call's logits, batched over layers of equal shapes, and hand
        them to the listeners (a no-op when nothing is queued)."""
        if not self._pending:
            return
        pending, waiting = self._pending, self._waiting
        self._pending, self._waiting = {}, {}
        groups: dict[tuple, list[int]] = {}
        for i, call in pending.items():
            m = self.sites[i].module
            key = (
                tuple(call.x.shape), call.x.dtype, call.x.device, m.num_heads,
                m.in_proj_bias is None, m.in_proj_weight.dtype, id(call.qi),
                None if call.bias is None else id(call.bias),
            )  # fmt: skip
            groups.setdefault(key, []).append(i)
        with torch.no_grad():
            for layers in groups.values():
                calls = [pending[i] for i in layers]
                logits = batched_logits([self.sites[i].module for i in layers], calls)
                by_listener: dict[Any, list[int]] = {}
                for j, i in enumerate(layers):
                    for listener in waiting[i]:
                        by_listener.setdefault(listener, []).append(j)
                for listener, js in by_listener.items():
                    sub = logits if len(js) == len(layers) else logits[js]
                    listener([layers[j] for j in js], sub, calls[0].full)


def _check_sampler(model: nn.Module, sampler: Any, max_queries: int) -> AttentionSampler:
    if sampler is None:
        return AttentionSampler(model, max_queries=max_queries)
    if not isinstance(sampler, AttentionSampler):
        raise InputTypeError(f"sampler must be an AttentionSampler, got {describe(sampler)}")
    return sampler


class _MaxCollector(Collector):
    """Per-layer maximum over the calls since the last collection; [max, observed] packed so a
    sum-reduction across ranks gives the mean over ranks of each rank's maximum. One process
    with each layer seen once: the recorded 0-d maxima go to :func:`collect` as they are."""

    def _init_buffers(self, device: torch.device) -> None:
        self._device = device
        self._vals: list[torch.Tensor] = []
        self._idx: list[int] = []
        self._in_order = list(range(self.n_layers))
        self._as_recorded = False
        self.missing_ = np.ones(self.n_layers, dtype=bool)

    def reset(self) -> None:
        self._vals.clear()
        self._idx.clear()

    def _pack(self) -> list[torch.Tensor]:
        L = self.n_layers
        self._as_recorded = each_once(self._idx, self._in_order) and not distributed_world()[0]
        if self._as_recorded:
            return list(self._vals)
        out = torch.zeros(2 * L, dtype=torch.float32, device=self._device)
        if self._vals:
            device = self._vals[0].device
            v = stack_scalars(self._vals, device)
            if self._idx == self._in_order:
                maxima = v
            else:
                idx = to_device(self._idx, device)
                maxima = torch.full((L,), float("-inf"), device=device).scatter_reduce(
                    0, idx, v, "amax"
                )
            seen_np = np.zeros(L, dtype=np.float32)
            seen_np[self._idx] = 1.0
            seen = to_device(seen_np, device)
            out = torch.cat([torch.where(seen > 0, maxima, 0.0), seen])
        return [out]

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:
        L = self.n_layers
        if self._as_recorded:
            self.missing_ = np.zeros(L, dtype=bool)
            return in_layer_order(host, self._idx, self._in_order).copy()
        seen = host[L:]
        self.missing_ = seen == 0
        out = np.full(L, np.nan)
        np.divide(host[:L], seen, out=out, where=seen > 0)
        return out


class AttentionLogitCollector(_MaxCollector):
    """Largest attention logit per attention layer, max |q·k| · scale (Wortsman et al. 2023).

    The logit is the pre-softmax score the softmax sees: q·k/√d_head for
    ``nn.MultiheadAttention`` and Llama/BERT-style modules (after rotary embeddings and
    qk-norms), times the module's own ``scaling`` for Hugging Face modules. Masked keys are
    excluded. Sampling (bounded cost): the first batch element, every head, at most
    ``max_queries`` evenly spaced queries with all their keys, recomputed from the module's
    inputs and q/k projection weights in a forward hook — nothing changes in the forward pass
    and ``need_weights`` does not matter. The layer value is the maximum over the calls since
    the last collection; under ``torch.distributed`` it is the mean over ranks of each rank's
    maximum. Non-finite logits give NaN/inf; a layer without an observation (it did not run,
    or an :class:`AttentionTap` given no ``logits``) is NaN and flagged in ``missing_``.

    Parameters
    ----------
    model : torch.nn.Module
    training_only : bool
        Ignore forwards in eval mode (default True).
    max_queries : int
        Sampled query positions per call (ignored when ``sampler`` is given).
    sampler : AttentionSampler, optional
        Share the sampled logits with an :class:`AttentionEntropyCollector`.

    Examples
    --------
    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> layer = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    >>> enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    >>> logits = AttentionLogitCollector(enc)
    >>> _ = enc(torch.randn(4, 6, 8))
    >>> values = logits.compute()
    >>> values.shape, bool((values > 0).all()), logits.missing_.tolist()
    ((2,), True, [False, False])
    >>> logits.close()
    """

    signal = "attn_logit"

    def __init__(
        self,
        model: nn.Module,
        *,
        training_only: bool = True,
        max_queries: int = 32,
        sampler: AttentionSampler | None = None,
    ) -> None:
        super().__init__()
        self.sampler = _check_sampler(model, sampler, max_queries)
        self.layer_names = self.sampler.layer_names
        self.training_only = bool(training_only)
        self._init_buffers(model_device(model))
        for i, site in enumerate(self.sampler.sites):
            self._add_hook(site.module, "forward_kw", self._make_hook(i))
        # queued self-attention calls are computed at the end of the model's forward pass
        self._add_hook(model, "forward", lambda *_: self.sampler.flush())

    def _pack(self) -> list[torch.Tensor]:
        self.sampler.flush()  # calls queued without a forward hook of the model (rare)
        return super()._pack()

    def _on_batch(self, layers: list[int], logits: torch.Tensor, full: bool) -> None:
        # masked keys (-inf) count as 0: max |logit| of the others, per layer (NaN and +inf
        # stay: a non-finite logit is data); nan_to_num + abs_ + amax cost ~1/10 of
        # masked_fill + an inf-norm over several dimensions
        a = torch.nan_to_num(logits, nan=_NAN, posinf=inf, neginf=0.0).abs_()
        self._vals.extend(a.reshape(len(layers), -1).amax(1).unbind())
        self._idx.extend(layers)

    def _make_hook(self, i: int):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if not self.enabled or (self.training_only and not module.training):
                return
            if self.sampler.defer(i, args, kwargs, self._on_batch):
                return
            smp = self.sampler.sample(i, args, kwargs, output)
            if smp is None or smp.logits is None:
                return
            s = smp.logits  # masked keys (-inf) count as 0: max |logit| of the others
            self._vals.append(torch.linalg.vector_norm(s.masked_fill(torch.isneginf(s), 0.0), inf))
            self._idx.append(i)

        return hook


class OutputLogitCollector(Collector):
    """Statistics of a language-model head's logits: max |logit| and mean logit.

    ``compute()`` returns two values, in ``layer_names`` order ``("max_abs", "mean")``:
    the largest |logit| and the mean logit (over vocabulary and positions) of the sample — the
    quantities of Wortsman et al.'s output-logit divergence (the mean drifts far below zero,
    the max grows). Sampling: the first batch element of a (batch, seq, vocab) output; of a
    2-D (rows, vocab) output, the first 512 rows. Over several forwards the maximum of the max
    and the mean of the means are kept; under ``torch.distributed`` both are averaged over
    ranks. ``missing_`` flags a collection with no forward of the head.

    Parameters
    ----------
    model : torch.nn.Module
    head : "auto" or str
        ``"auto"``: the model's ``get_output_embeddings()`` (Hugging Face) when it returns a
        module, else its last ``nn.Linear`` in module order; or the name of the head module.
    training_only : bool
        Ignore forwards in eval mode (default True).

    Examples
    --------
    >>> import torch
    >>> head = torch.nn.Linear(2, 3, bias=False)
    >>> with torch.no_grad():
    ...     _ = head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -4.0], [1.0, 1.0]]))
    >>> model = torch.nn.Sequential(head)
    >>> out = OutputLogitCollector(model)
    >>> _ = model(torch.tensor([[[1.0, 1.0]]]))   # logits (1, -4, 2)
    >>> out.layer_names, out.compute().round(4)
    (('max_abs', 'mean'), array([ 4.    , -0.3333], dtype=float32))
    >>> out.close()
    """

    signal = "out_logit"
    layer_names = ("max_abs", "mean")

    def __init__(self, model: nn.Module, head: str = "auto", *, training_only: bool = True) -> None:
        super().__init__()
        if not isinstance(model, nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        if head == "auto":
            module = None
            get = getattr(model, "get_output_embeddings", None)
            if callable(get):
                module = get()
            if not isinstance(module, nn.Module):
                linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
                if not linears:
                    raise InputError(
                        "head='auto' found no output embedding and no nn.Linear; name the "
                        "language-model head module"
                    )
                module = linears[-1][1]
        elif isinstance(head, str):
            try:
                module = model.get_submodule(head)
            except AttributeError as exc:
                raise InputError(f"head {head!r} is not a module of the model") from exc
        else:
            raise InputTypeError(f"head must be 'auto' or a module name, got {describe(head)}")
        self.head_name = next(n for n, m in model.named_modules() if m is module) or "root"
        self.training_only = bool(training_only)
        self._device = model_device(model)
        self._max: list[torch.Tensor] = []
        self._mean: list[torch.Tensor] = []
        self._as_recorded = False
        self.missing_ = np.ones(2, dtype=bool)
        self._add_hook(module, "forward", self._hook)

    def _hook(self, module: nn.Module, args: Any, output: Any) -> None:
        if not self.enabled or (self.training_only and not module.training):
            return
        x = first_tensor(output)
        if x is None or not x.is_floating_point() or x.dim() < 2:
            return
        x = x.detach()
        x = x[0] if x.dim() >= 3 else x[:512]
        self._max.append(torch.linalg.vector_norm(x, float("inf"), dtype=torch.float32))
        self._mean.append(x.mean(dtype=torch.float32))

    def reset(self) -> None:
        self._max.clear()
        self._mean.clear()

    def _pack(self) -> list[torch.Tensor]:
        self._as_recorded = False
        if not self._max:
            return [torch.zeros(4, dtype=torch.float32, device=self._device)]
        # one forward in one process: its two statistics as they are ("seen" is known here);
        # under torch.distributed every rank packs the same four values whatever it saw
        self._as_recorded = len(self._max) == 1 and not distributed_world()[0]
        if self._as_recorded:
            return [self._max[0], self._mean[0]]
        mx = torch.stack(self._max).amax()
        mean = torch.stack(self._mean).mean()
        one = torch.ones((), dtype=torch.float32, device=mx.device)
        return [mx, mean, one, one]

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:
        if self._as_recorded:
            self.missing_ = np.zeros(2, dtype=bool)
            return host.copy()
        seen = host[2:]
        self.missing_ = seen == 0
        out = np.full(2, np.nan)
        np.divide(host[:2], seen, out=out, where=seen > 0)
        return out
