"""The packing protocol (one reduction, one host copy) and the gradient-norm collector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import InputError
from ._groups import layer_groups

__all__ = [
    "Collector",
    "GradNormCollector",
    "collect",
    "distributed_world",
    "first_tensor",
    "group_parameters",
    "model_device",
    "safe_ratio",
]


def group_parameters(
    model: nn.Module, groups: str | Sequence[str] = "auto"
) -> tuple[tuple[str, ...], list[nn.Parameter], list[tuple[int, int]]]:
    """``(layer_names, params, pairs)`` of the layer groups: every trainable parameter once in
    ``params``, and one ``(param index, group index)`` pair per membership, so a tied parameter
    counts in every group it belongs to. A group without a trainable parameter is an error."""
    resolved = layer_groups(model, groups)
    params: list[nn.Parameter] = []
    index: dict[int, int] = {}
    pairs: list[tuple[int, int]] = []
    for g, (name, module, recurse) in enumerate(resolved):
        own = [p for p in module.parameters(recurse=recurse) if p.requires_grad]
        if not own:
            raise InputError(f"layer group {name!r} has no parameter that requires grad")
        for p in own:
            if id(p) not in index:
                index[id(p)] = len(params)
                params.append(p)
            pairs.append((index[id(p)], g))
    return tuple(g.name for g in resolved), params, pairs


# --------------------------------------------------------------------------- packing protocol


class Collector:
    """Base: ``_pack()`` returns a float32 device vector of sums; ``_unpack`` turns the reduced
    host vector into one value per layer. ``enabled`` switches hooks off between monitored steps."""

    signal: str = ""
    layer_names: tuple[str, ...] = ()
    #: layers without an observation at the last collection (their value is NaN, but a NaN
    #: there is "not measured", not a non-finite measurement); all False unless overridden
    missing_: np.ndarray = np.zeros(0, dtype=bool)

    def __init__(self) -> None:
        self._enabled = True
        self._closed = False
        self.host_copies = 0
        self._hooks: list[tuple[nn.Module, str, Any]] = []
        self._handles: list[Any] = []

    @property
    def enabled(self) -> bool:
        """Whether hooks record. Switching off *removes* the hooks from the modules (a module
        with any forward hook takes torch's slower call path), switching on adds them back."""
        return self._enabled

    @enabled.setter
    def enabled(self, on: bool) -> None:
        on = bool(on)
        if on == self._enabled or self._closed:
            self._enabled = on
            return
        self._enabled = on
        if on:
            self._handles = [self._register(*spec) for spec in self._hooks]
        else:
            self._remove_handles()

    def _add_hook(self, module: nn.Module, kind: str, fn: Any) -> None:
        self._hooks.append((module, kind, fn))
        if self._enabled and not self._closed:
            self._handles.append(self._register(module, kind, fn))

    @staticmethod
    def _register(module: nn.Module, kind: str, fn: Any) -> Any:
        if kind == "pre":
            return module.register_forward_pre_hook(fn, with_kwargs=True)
        if kind == "forward_kw":
            return module.register_forward_hook(fn, with_kwargs=True)
        if kind == "opt_pre":  # module is a torch.optim.Optimizer here
            return module.register_step_pre_hook(fn)
        if kind == "opt_post":
            return module.register_step_post_hook(fn)
        return module.register_forward_hook(fn)

    def _remove_handles(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def n_layers(self) -> int:
        return len(self.layer_names)

    def _pack(self) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _pack_size(self) -> int:
        return 2 * self.n_layers

    def reset(self) -> None:
        """Forget the sums gathered since the last collection."""

    def compute(self) -> np.ndarray:
        """One value per layer (float32), reduced across ranks, with one host copy; resets sums."""
        return collect([self])[0]

    def close(self) -> None:
        """Remove every hook this collector registered (idempotent)."""
        self._remove_handles()
        self._hooks = []
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def distributed_world() -> tuple[bool, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return True, torch.distributed.get_world_size()
    return False, 1


def collect(collectors: Sequence[Collector], extra: torch.Tensor | None = None) -> list[np.ndarray]:
    """Values of several collectors with one packed ``all_reduce`` and one host copy.

    ``extra`` (a float32 vector, e.g. buffered losses) rides along in the same reduction and
    copy; its reduced, world-averaged value is returned last.
    """
    packs = [c._pack() for c in collectors]
    if extra is not None:
        packs.append(extra.detach().to(torch.float32).reshape(-1))
    device = packs[0].device if packs else torch.device("cpu")
    flat = torch.cat([p.to(device) for p in packs]) if len(packs) > 1 else packs[0]
    is_dist, world = distributed_world()
    if is_dist:
        if torch.distributed.get_backend() == "gloo" and flat.device.type != "cpu":
            flat = flat.cpu()
        torch.distributed.all_reduce(flat)
    host = flat.cpu().numpy().astype(np.float64)  # the one device -> host copy
    out: list[np.ndarray] = []
    pos = 0
    for c in collectors:
        c.host_copies += 1
        k = c._pack_size()
        out.append(c._unpack(host[pos : pos + k], world).astype(np.float32))
        pos += k
        c.reset()
    if extra is not None:
        out.append((host[pos:] / world).astype(np.float32))
    return out


def safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def first_tensor(out: Any) -> torch.Tensor | None:
    """The first tensor of a module output (a tensor, a tuple/list, or a dict-like)."""
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        for item in out:
            t = first_tensor(item)
            if t is not None:
                return t
    elif isinstance(out, dict):
        for item in out.values():
            t = first_tensor(item)
            if t is not None:
                return t
    return None


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# --------------------------------------------------------------------------- gradient norms


class GradNormCollector(Collector):
    """Per-layer L2 norms of the gradients, all parameters at once.

    Squared norms of every gradient come from one ``torch._foreach_norm`` (on CPU, a BLAS dot
    per gradient, which measured faster there), in float32 whatever the parameter dtype, are
    summed per group with ``index_add_`` and stay on the device until
    :func:`collect`. Call it after the backward pass and after ``GradScaler.unscale_`` (or after
    ``scaler.step``, which unscales in place), before ``optimizer.zero_grad()``. A parameter
    that belongs to two groups (tied weights) counts in both; a group whose parameters all have
    ``grad is None`` this step reports NaN.

    Parameters
    ----------
    model : torch.nn.Module
    groups : "auto", regex or list of module names
        See :func:`layer_groups`.

    Examples
    --------
    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    >>> grads = GradNormCollector(model)
    >>> for p in model.parameters():
    ...     p.grad = torch.full_like(p, 2.0)
    >>> grads.compute()  # sqrt(4 * (9 + 3)) and sqrt(4 * (3 + 1))
    array([6.928203, 4.      ], dtype=float32)
    """

    signal = "grad_norm"

    def __init__(self, model: nn.Module, groups: str | Sequence[str] = "auto") -> None:
        super().__init__()
        self.layer_names, params, pairs = group_parameters(model, groups)
        self._params = params
        self._pairs = pairs
        self._pidx = torch.tensor([p for p, _ in pairs], dtype=torch.long)
        self._gidx = torch.tensor([g for _, g in pairs], dtype=torch.long)
        self._stash: torch.Tensor | None = None
        self._dev_idx: tuple[torch.Tensor, torch.Tensor] | None = None
        self._missing = np.zeros(self.n_layers, dtype=bool)
        self.missing_ = np.zeros(self.n_layers, dtype=bool)

    def capture(self) -> None:
        """Compute this step's squared norms now (on device, no sync) for a later :func:`collect`.

        Use it where gradients exist but the step is not over yet (a framework's
        ``on_before_optimizer_step``); otherwise :meth:`compute` reads the current gradients.
        """
        self._stash = self._local_sums()

    def reset(self) -> None:
        self._stash = None

    def _local_sums(self) -> torch.Tensor:
        grads = [p.grad for p in self._params]
        G = self.n_layers
        device = _model_device_of(self._params)
        if not distributed_world()[0] and all(g is not None for g in grads):
            return self._fast_sums(grads, device)
        present = [i for i, g in enumerate(grads) if g is not None]
        out = torch.zeros(2 * G, dtype=torch.float32, device=device)
        self._missing = np.ones(G, dtype=bool)
        if not present:
            return out
        have = np.zeros(len(grads), dtype=bool)
        have[present] = True
        for p, g in self._pairs:
            if have[p]:
                self._missing[g] = False
        sharded = np.zeros(len(grads), dtype=bool)
        local: list[torch.Tensor] = []
        for i in present:
            g = grads[i]
            if _is_dtensor(g):
                sharded[i] = any(pl.is_shard() for pl in g.placements)
                g = g.to_local()
            local.append(g)
        norms = torch._foreach_norm(local, 2, dtype=torch.float32)
        devices = {n.device for n in norms}
        if len(devices) > 1:
            norms = [n.to(device) for n in norms]
        sq = torch.zeros(len(grads), dtype=torch.float32, device=device)
        sq[torch.tensor(present, device=device)] = torch.stack(norms).square()
        pidx, gidx = self._pidx.to(device), self._gidx.to(device)
        shard_mask = torch.as_tensor(sharded, device=device)[pidx]
        contrib = sq[pidx]
        out[:G].index_add_(0, gidx, torch.where(shard_mask, contrib, 0.0))
        out[G:].index_add_(0, gidx, torch.where(shard_mask, 0.0, contrib))
        return out

    def _fast_sums(self, grads: list[torch.Tensor], device: torch.device) -> torch.Tensor:
        """Common case: every gradient present, one process: no masks, cached indices."""
        G = self.n_layers
        self._missing = np.zeros(G, dtype=bool)
        sq = squared_norms(grads, device)
        if self._dev_idx is None or self._dev_idx[0].device != device:
            self._dev_idx = (self._pidx.to(device), self._gidx.to(device))
        pidx, gidx = self._dev_idx
        out = torch.zeros(2 * G, dtype=torch.float32, device=device)
        out[G:].index_add_(0, gidx, sq[pidx])  # replicated part (nothing is sharded here)
        return out

    def _pack(self) -> torch.Tensor:
        return self._stash if self._stash is not None else self._local_sums()

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:
        G = self.n_layers
        sq = host[:G] + host[G:] / world_size
        out = np.sqrt(np.maximum(sq, 0.0))
        out[self._missing] = np.nan
        self.missing_ = self._missing.copy()  # no gradient this step: not measured
        return out


def squared_norms(grads: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Squared L2 norm of each gradient, float32, stacked on ``device`` (no host sync).

    On CUDA one ``torch._foreach_norm`` launches a handful of kernels for all tensors. On CPU
    ``_foreach_norm`` is a per-tensor loop, and BLAS ``dot`` of a contiguous float32 gradient
    with itself measured 1.7x faster here (253 vs 435 µs for an MLP's 32 gradients, 8 MB).
    """
    if device.type == "cpu":
        return torch.stack(
            [
                torch.dot(g.view(-1), g.view(-1))
                if g.dtype == torch.float32 and g.is_contiguous() and g.device == device
                else torch.linalg.vector_norm(g, dtype=torch.float32).to(device).square()
                for g in grads
            ]
        )
    norms = torch._foreach_norm(grads, 2, dtype=torch.float32)
    if any(n.device != device for n in norms):
        norms = [n.to(device) for n in norms]
    return torch.stack(norms).square()


def _model_device_of(params: Sequence[nn.Parameter]) -> torch.device:
    return params[0].device if params else torch.device("cpu")


def _is_dtensor(t: torch.Tensor) -> bool:
    # DTensor lives in torch.distributed.tensor; only look when distributed is initialised
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)
