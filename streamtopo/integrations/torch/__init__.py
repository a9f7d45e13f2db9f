"""Per-layer training signals from a ``torch.nn.Module``, with one host copy per monitored step.

This package is the only place in streamtopo that imports ``torch``. Notation: G layer
groups, P parameters.

Every collector keeps its running sums in small float32 tensors on the model's device, so a
training step never waits on the host. :func:`collect` packs the sums of any number of collectors
into one vector, reduces it across ranks with **one** ``all_reduce`` when ``torch.distributed`` is
initialised, and copies it to the host **once**:

>>> import torch
>>> from streamtopo.integrations.torch import GradNormCollector, layer_groups
>>> _ = torch.manual_seed(0)
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
>>> [g.name for g in layer_groups(model)]
['0', '2']
>>> grads = GradNormCollector(model)
>>> model(torch.randn(16, 4)).square().mean().backward()
>>> norms = grads.compute()          # float32 array, one value per layer group
>>> norms.shape, bool((norms > 0).all())
((2,), True)

What a monitored step costs
---------------------------
The hooks record 0-d device tensors (an activation norm, a sampled attention statistic) and
never read them. :func:`collect` takes the gradient norms of every parameter with one
``torch._foreach_norm``, stacks every collector's values (and the buffered losses) in one op,
and makes the step's only host read: on CPU the stacked vector is read in place; on CUDA it is
copied with ``non_blocking=True`` into a pinned host buffer and the host waits on one CUDA
event recorded after the copy — every reduction before it stays queued on the device, nothing
else synchronises (no ``.item()``, no blocking host→device copy of indices or counts: those
stay on the host, where the per-group sums, square roots and ratios are taken in float64).
``tests/test_torch_host_syncs.py`` counts the host reads of a training loop with every signal:
one per monitored step, none between.

Layer groups (``groups=``)
--------------------------
``"auto"``
    The model's top-level children, where containers are opened: a ``nn.ModuleList``,
    ``nn.Sequential`` or ``nn.ModuleDict`` is replaced by its entries, and a module that holds a
    ``nn.ModuleList`` somewhere inside (``transformer`` holding ``h``, ``encoder`` holding
    ``layers``) is replaced by its children, recursively. Entries of a ``ModuleList`` or
    ``Sequential`` — transformer blocks, residual blocks — stay whole, even when they are
    containers themselves, unless they are a stack of blocks (a direct ``nn.ModuleList`` of
    ≥ 2 entries holding ≥ 50% of their parameters, like ``nn.TransformerEncoder`` placed in a
    ``Sequential``). Modules without parameters (ReLU, Dropout) are skipped; parameters
    registered directly on an opened module form a group named after it (``"root"`` for the
    model itself). If this yields one group, it is opened again.
a regex
    Every module whose qualified name matches it completely (``re.fullmatch``), outermost only:
    ``r"blocks\\.\\d+"``.
a list of module names
    Exactly these modules (``model.get_submodule(name)``), in this order.

Transformer signals
-------------------
:class:`AttentionEntropyCollector` (``attn_entropy``) and :class:`AttentionLogitCollector`
(``attn_logit``, max |q·k|/√d per attention layer) read every attention module found by
:func:`attention_sites` — ``nn.MultiheadAttention`` whatever ``need_weights`` its caller
passes, Hugging Face GPT-2 / BERT-style / Llama-style attention (rotary embeddings included),
and :class:`AttentionTap` in custom blocks — recomputing the logits from the module's inputs on
a sample (first batch element, every head, ≤ 32 queries); share one :class:`AttentionSampler`
between the two so the sample is computed once. :class:`UpdateRatioCollector`
(``update_ratio``, ‖ΔW‖/‖W‖ per layer group around ``optimizer.step()``, on a fixed sample of
≤ 1024 elements per parameter by default) and
:class:`OutputLogitCollector` (``out_logit``: max |logit| and mean logit of the LM head)
complete the set. Values not observed since the last collection are NaN *and* flagged in the
collector's ``missing_`` mask; an unflagged NaN is a genuinely non-finite value.

Distributed
-----------
Under ``torch.distributed``, gradient norms are global: squared norms of sharded gradients
(``DTensor`` shards, as produced by FSDP2's ``fully_shard``) are summed over ranks, replicated
gradients (DDP, where every rank already holds the averaged gradient) are averaged, so every
rank sees the norm of the full gradient. Activation norms and attention entropies become
means over the whole global batch (sums and element counts are reduced together).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..._validation import describe
from ...errors import InputError, InputTypeError
from ._attention import AttentionSample, AttentionSite, AttentionTap, attention_sites
from ._collect import GradNormCollector, collect, distributed_world
from ._groups import LayerGroup, layer_groups
from ._hooks import ActivationNormCollector, AttentionEntropyCollector, FeatureCollector
from ._snapshot import TorchState, copy_tree, decode_tree, encode_tree
from ._transformer import AttentionLogitCollector, AttentionSampler, OutputLogitCollector
from ._update import UpdateRatioCollector

__all__ = [
    "ActivationNormCollector",
    "AttentionEntropyCollector",
    "AttentionLogitCollector",
    "AttentionSample",
    "AttentionSampler",
    "AttentionSite",
    "AttentionTap",
    "FeatureCollector",
    "GradNormCollector",
    "LayerGroup",
    "LossBuffer",
    "OutputLogitCollector",
    "TorchState",
    "UpdateRatioCollector",
    "attention_sites",
    "collect",
    "copy_tree",
    "decode_tree",
    "encode_tree",
    "labels_to_numpy",
    "layer_groups",
    "rank",
]


# --------------------------------------------------------------------------- small helpers


def rank() -> int:
    """This process's rank under ``torch.distributed`` (0 when not distributed)."""
    is_dist, _ = distributed_world()
    return torch.distributed.get_rank() if is_dist else 0


class LossBuffer:
    """Losses of the steps between two monitored steps, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self._items: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._items)

    def add(self, loss: Any) -> None:
        """Append a loss: a tensor with one element (read detached) or a real number."""
        self._items.append(self.prepare(loss))

    def append(self, item: torch.Tensor) -> None:
        """Append a loss already checked by :meth:`prepare`."""
        self._items.append(item)

    @staticmethod
    def prepare(loss: Any) -> torch.Tensor:
        """Check a loss and return it as a 0-d float32 tensor (nothing is buffered)."""
        if type(loss) is torch.Tensor and loss.ndim == 0 and loss.dtype is torch.float32:
            return loss.detach()  # the usual loss: no further checks needed
        if isinstance(loss, torch.Tensor):
            if loss.numel() != 1:
                raise InputError(
                    f"loss must have one element, got a tensor of shape {tuple(loss.shape)}"
                )
            loss = loss.detach()
            if loss.dim():
                loss = loss.reshape(())
            return loss if loss.dtype == torch.float32 else loss.to(torch.float32)
        if isinstance(loss, (int, float, np.number)) and not isinstance(loss, bool):
            return torch.tensor(float(loss), dtype=torch.float32)
        raise InputTypeError(f"loss must be a number or a one-element tensor, got {describe(loss)}")

    def take(self) -> torch.Tensor | None:
        """All buffered losses as one float32 vector (on the device of the first), then empty."""
        if not self._items:
            return None
        device = self._items[0].device
        out = torch.stack([t.to(device) for t in self._items])
        self._items.clear()
        return out

    def take_items(self) -> list[torch.Tensor] | None:
        """All buffered losses as a list of 0-d tensors (for :func:`collect`, which stacks them
        with the collectors' values in one op), then empty."""
        if not self._items:
            return None
        out = self._items
        self._items = []
        return out

    def clear(self) -> None:
        self._items.clear()


def labels_to_numpy(labels: Any) -> np.ndarray:
    """Class labels (tensor, array or list) as an int64 host array."""
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    return np.asarray(labels)
