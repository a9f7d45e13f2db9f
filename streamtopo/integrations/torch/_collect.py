"""The packing protocol (one reduction, one host copy) and the gradient-norm collector."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, is_not
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
    "each_once",
    "first_tensor",
    "group_parameters",
    "host_copy",
    "in_layer_order",
    "model_device",
    "safe_ratio",
    "stack_scalars",
    "to_device",
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
    """Base: ``_pack()`` returns the device values to reduce — a list of 0-d tensors or a list
    holding one float32 vector — and ``_unpack`` turns their reduced host copy into one value per
    layer. ``enabled`` switches hooks off between monitored steps."""

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

    def _pack(self) -> list[torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

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


def stack_scalars(values: Sequence[torch.Tensor], device: torch.device) -> torch.Tensor:
    """``torch.stack`` of 0-d tensors as float32 on ``device`` (one op when they already share
    a device and dtype, the common case; moved one by one only when they do not)."""
    try:
        out = torch.stack(list(values))
    except RuntimeError:  # tensors on several devices (model parallel)
        out = torch.stack([t.to(device) for t in values])
    return out if out.dtype == torch.float32 else out.to(torch.float32)


def host_copy(flat: torch.Tensor) -> np.ndarray:
    """The one device→host copy of a packed vector.

    On CPU the packed vector is already in host memory: it is read in place (``.numpy()``).
    On CUDA it is copied with ``non_blocking=True`` into pinned host memory (torch's caching
    host allocator reuses it) and the host waits on one CUDA event recorded after the copy:
    every reduction before it stays queued on the device behind the training step, and the host
    waits once, for exactly this copy. Other devices copy blocking.
    """
    if flat.device.type == "cpu":
        return flat.numpy()
    if flat.device.type != "cuda":
        return flat.cpu().numpy()
    buf = torch.empty(flat.shape, dtype=flat.dtype, pin_memory=True)
    buf.copy_(flat, non_blocking=True)
    done = torch.cuda.Event()
    done.record()
    done.synchronize()
    return buf.numpy()


def collect(
    collectors: Sequence[Collector], extra: torch.Tensor | Sequence[torch.Tensor] | None = None
) -> list[np.ndarray]:
    """Values of several collectors with one packed ``all_reduce`` and one host copy.

    ``extra`` (a float32 vector or a list of 0-d tensors, e.g. buffered losses) rides along in
    the same reduction and copy; its reduced, world-averaged value is returned last.

    Every collector's pack is a list of 0-d tensors or one vector; the 0-d values of all
    collectors (and losses) are stacked in one op and the vectors appended after them with one
    ``cat``, so a monitored step costs a few device ops whatever the number of layers and
    collectors, then one reduction across ranks and one host copy (see :func:`host_copy` for
    the CUDA path).
    """
    is_dist, world = distributed_world()
    scalars: list[torch.Tensor] = []
    vectors: list[torch.Tensor] = []
    where: list[tuple[bool, int, int]] = []  # per collector: (a vector?, offset, size)
    device: torch.device | None = None
    for c in collectors:
        pieces = c._pack()
        if pieces[0].dim() == 0:
            where.append((False, len(scalars), len(pieces)))
            scalars.extend(pieces)
        else:
            where.append((True, sum(v.numel() for v in vectors), pieces[0].numel()))
            vectors.append(pieces[0].to(torch.float32))
        if device is None:
            device = pieces[0].device
    extra_vector = isinstance(extra, torch.Tensor) and extra.dim() > 0
    n_extra = 0  # extra's 0-d values (at the end of the scalars)
    if extra is not None:
        if extra_vector:
            vectors.append(extra.detach().to(torch.float32).reshape(-1))
        elif isinstance(extra, torch.Tensor):
            scalars.append(extra.detach())
            n_extra = 1
        else:
            scalars.extend(extra)
            n_extra = len(extra)
    if not scalars and not vectors:
        return []
    if device is None:
        device = (scalars or vectors)[0].device
    blocks = ([stack_scalars(scalars, device)] if scalars else []) + vectors
    if len(blocks) == 1:
        flat = blocks[0]
    else:
        device = blocks[0].device
        flat = torch.cat([b if b.device == device else b.to(device) for b in blocks])
    if is_dist:
        if torch.distributed.get_backend() == "gloo" and flat.device.type != "cpu":
            flat = flat.cpu()
        torch.distributed.all_reduce(flat)
    host = host_copy(flat).astype(np.float64)  # the one device -> host copy
    n_scalars = len(scalars)
    out: list[np.ndarray] = []
    for c, (vector, offset, k) in zip(collectors, where, strict=True):
        pos = n_scalars + offset if vector else offset
        c.host_copies += 1
        out.append(c._unpack(host[pos : pos + k], world).astype(np.float32))
        c.reset()
    if extra is not None:  # the last vector, or the last scalars
        k = extra.numel() if extra_vector else n_extra
        pos = len(host) - k if extra_vector else n_scalars - k
        out.append((host[pos : pos + k] / world).astype(np.float32))
    return out


def each_once(idx: list[int], in_order: list[int]) -> bool:
    """Whether the recorded layer indices ``idx`` name every layer exactly once (any order)."""
    return idx == in_order or (len(idx) == len(in_order) and len(set(idx)) == len(idx))


def in_layer_order(host: np.ndarray, idx: list[int], in_order: list[int]) -> np.ndarray:
    """Values recorded in the order ``idx`` (each layer once), put in layer order."""
    if idx == in_order:
        return host
    out = np.empty(len(in_order), dtype=host.dtype)
    out[idx] = host
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

    The norm of every gradient comes from one ``torch._foreach_norm`` (float32 whatever the
    parameter dtype) and stays on the device until :func:`collect` copies all of them, with the
    other collectors' values, to the host in one go; there they are squared in float64 and
    summed per group. (Under ``torch.distributed``, or when a gradient is absent, the squared
    norms are summed per group on the device instead, for the packed reduction.) Call it after
    the backward pass and after ``GradScaler.unscale_`` (or after ``scaler.step``, which unscales
    in place), before ``optimizer.zero_grad()``. A parameter
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
        # the common case on the host: group g's squared norm = sum of its parameters' squares
        self._pidx_np = self._pidx.numpy().copy()
        self._gidx_np = self._gidx.numpy().copy()
        self._stash: list[torch.Tensor] | None = None
        self._per_param = False  # what the last pack holds: per-parameter norms or group sums
        self._missing = np.zeros(self.n_layers, dtype=bool)
        self.missing_ = np.zeros(self.n_layers, dtype=bool)

    def capture(self) -> None:
        """Compute this step's norms now (on device, no sync) for a later :func:`collect`.

        Use it where gradients exist but the step is not over yet (a framework's
        ``on_before_optimizer_step``); otherwise :meth:`compute` reads the current gradients.
        """
        self._stash = self._local_sums()

    def reset(self) -> None:
        self._stash = None

    def _local_sums(self) -> list[torch.Tensor]:
        grads = list(map(_GRAD, self._params))  # map + attrgetter: no per-parameter bytecode
        if all(map(is_not, grads, repeat(None))) and not distributed_world()[0]:
            # common case: one fused norm kernel for every gradient, grouped on the host
            self._per_param = True
            self._missing = np.zeros(self.n_layers, dtype=bool)
            return list(torch._foreach_norm(grads, 2, dtype=torch.float32))
        self._per_param = False
        return [self._group_sums(grads, _model_device_of(self._params))]

    def _group_sums(self, grads: list[torch.Tensor | None], device: torch.device) -> torch.Tensor:
        """[sharded squared sums per group, replicated squared sums per group] on the device:
        absent gradients, ``DTensor`` shards and several ranks."""
        G = self.n_layers
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
        sq[to_device(present, device)] = torch.stack(norms).square()
        pidx, gidx = self._pidx.to(device), self._gidx.to(device)
        shard_mask = to_device(sharded, device)[pidx]
        contrib = sq[pidx]
        out[:G].index_add_(0, gidx, torch.where(shard_mask, contrib, 0.0))
        out[G:].index_add_(0, gidx, torch.where(shard_mask, 0.0, contrib))
        return out

    def _pack(self) -> list[torch.Tensor]:
        return self._stash if self._stash is not None else self._local_sums()

    def _unpack(self, host: np.ndarray, world_size: int) -> np.ndarray:
        G = self.n_layers
        if self._per_param:  # squares in float64 on the host, summed per group
            sq = np.bincount(self._gidx_np, np.square(host)[self._pidx_np], minlength=G)
        else:
            sq = host[:G] + host[G:] / world_size
        out = np.sqrt(np.maximum(sq, 0.0))
        out[self._missing] = np.nan
        self.missing_ = self._missing.copy()  # no gradient this step: not measured
        return out


_GRAD = attrgetter("grad")


def to_device(values: Any, device: torch.device) -> torch.Tensor:
    """A host list/array as a device tensor without a device-wide sync (the non-blocking copy of
    pageable memory is staged by the driver; a blocking one would wait for the whole stream)."""
    return torch.as_tensor(values).to(device, non_blocking=True)


def _model_device_of(params: Sequence[nn.Parameter]) -> torch.device:
    return params[0].device if params else torch.device("cpu")


def _is_dtensor(t: torch.Tensor) -> bool:
    # DTensor lives in torch.distributed.tensor; only look when distributed is initialised
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)
