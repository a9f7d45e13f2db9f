"""Capture and restore of a torch training state for :class:`streamtopo.guard.Guard`.

A snapshot is a tree of dicts/lists/tuples whose leaves are CPU tensors, numpy arrays, numbers,
strings and None: the model's and the optimizer's ``state_dict()`` (deep-copied to the CPU, so
the live training never writes into it), the LR scheduler's, the GradScaler's, the monitors', and
the RNG states (python, numpy, torch, CUDA when initialised).

On disk (``Guard(dir=...)``) the tree is written with ``torch.save`` after numpy values become
tagged tensors or lists (python's RNG state becomes a list), so it loads with
``torch.load(weights_only=True)`` — no pickle of arbitrary objects, in either direction.

Learning-rate cut
-----------------
:meth:`TorchState.set_lr_scale` registers an optimizer step pre-hook that multiplies every
param group's ``lr`` by the scale just before ``optimizer.step()`` and a post-hook that puts the
original values back right after. Outside the step, ``pg["lr"]`` is always what the scheduler
or the user's own loop set, so (a) an LR scheduler keeps its schedule (its ``base_lrs`` and
``last_epoch`` are untouched) and the cut composes with it, (b) a loop that assigns
``pg["lr"] = f(step)`` every step keeps working and is still cut, and (c) a checkpoint of the
optimizer saved during the cool-down holds the uncut rates. The hooks exist only while a cut is in
force.
"""

from __future__ import annotations

import copy
import os
import random
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..._validation import describe
from ...errors import InputError, InputTypeError

__all__ = ["TorchState", "copy_tree", "decode_tree", "encode_tree"]

_ND = "__streamtopo_ndarray__"


class TorchState:
    """Everything a restart needs, captured and restored in place (see the module docs).

    Parameters
    ----------
    model : torch.nn.Module
    optimizer : torch.optim.Optimizer
        Its parameters must all be parameters of ``model``.
    scheduler : LR scheduler, optional
        Must drive ``optimizer`` (when it says which optimizer it drives).
    scaler : torch.amp.GradScaler, optional
    monitors : sequence
        Objects with ``state_dict()``/``load_state_dict()``.
    rng : bool
        Capture/restore python, numpy, torch and CUDA RNG states.

    Examples
    --------
    >>> import torch
    >>> from streamtopo.integrations.torch import TorchState
    >>> model = torch.nn.Linear(2, 1)
    >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> state = TorchState(model, opt)
    >>> snap = state.capture()
    >>> with torch.no_grad():
    ...     _ = model.weight.add_(1.0)
    >>> state.restore(snap)
    >>> bool(torch.equal(model.weight, snap["model"]["weight"]))
    True
    """

    def __init__(
        self,
        model: Any,
        optimizer: Any,
        scheduler: Any = None,
        scaler: Any = None,
        monitors: Sequence[Any] = (),
        *,
        rng: bool = True,
    ) -> None:
        if not isinstance(model, torch.nn.Module):
            raise InputTypeError(f"model must be a torch.nn.Module, got {describe(model)}")
        if optimizer is None:
            raise InputError(
                "the guard needs optimizer= (a rollback restores the optimizer state and cuts its "
                "learning rate), got None"
            )
        inner = _innermost(optimizer)
        if not isinstance(inner, torch.optim.Optimizer):
            raise InputTypeError(
                f"optimizer must be a torch.optim.Optimizer, got {describe(optimizer)}"
            )
        owned = {id(p) for p in model.parameters()}
        foreign = [p for g in inner.param_groups for p in g["params"] if id(p) not in owned]
        if foreign:
            raise InputError(
                f"optimizer holds {len(foreign)} parameter(s) that are not parameters of model "
                f"(first of shape {tuple(foreign[0].shape)}); give the model the optimizer trains"
            )
        for name, obj in (("scheduler", scheduler), ("scaler", scaler)):
            if obj is not None and not _stateful(obj):
                raise InputTypeError(
                    f"{name} must have state_dict() and load_state_dict(), got {describe(obj)}"
                )
        driven = getattr(scheduler, "optimizer", None)
        if driven is not None and _innermost(driven) is not inner:
            raise InputError("scheduler drives another optimizer than optimizer=")
        if isinstance(monitors, (str, bytes)) or not isinstance(monitors, Sequence):
            raise InputTypeError(f"monitors must be a sequence, got {describe(monitors)}")
        for i, m in enumerate(monitors):
            if not _stateful(m):
                raise InputTypeError(
                    f"monitors[{i}] must have state_dict() and load_state_dict(), got {describe(m)}"
                )
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.monitors = tuple(monitors)
        self.rng = bool(rng)
        self.rank = (
            torch.distributed.get_rank()
            if torch.distributed.is_available() and torch.distributed.is_initialized()
            else 0
        )
        self._inner = inner
        self._scale = 1.0
        self._hooks: list[Any] = []
        self._saved_lrs: list[Any] | None = None

    # ------------------------------------------------------------------------------ capture
    def capture(self) -> dict[str, Any]:
        """A deep CPU copy of the whole training state."""
        return {
            "model": copy_tree(self.model.state_dict()),
            "optimizer": copy_tree(self.optimizer.state_dict()),
            "scheduler": None if self.scheduler is None else copy_tree(self.scheduler.state_dict()),
            "scaler": None if self.scaler is None else copy_tree(self.scaler.state_dict()),
            "monitors": [copy_tree(m.state_dict()) for m in self.monitors],
            "rng": _rng_state() if self.rng else None,
        }

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Load ``snapshot`` into the live objects (copies again: the snapshot stays intact)."""
        self.model.load_state_dict(snapshot["model"])  # copies into the live parameters
        # optimizer.load_state_dict keeps tensors that already have the right device and dtype:
        # give it copies so later in-place updates cannot write into the held snapshot
        self.optimizer.load_state_dict(copy_tree(snapshot["optimizer"]))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(copy_tree(snapshot["scheduler"]))
        if self.scaler is not None:
            self.scaler.load_state_dict(copy_tree(snapshot["scaler"]))
        for m, sd in zip(self.monitors, snapshot["monitors"], strict=True):
            m.load_state_dict(copy_tree(sd))
        if self.rng and snapshot.get("rng") is not None:
            _set_rng_state(snapshot["rng"])
        self._saved_lrs = None

    def save(self, snapshot: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
        """Write ``snapshot`` (``.tmp`` then ``os.replace``); loads with ``weights_only=True``."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(encode_tree(snapshot), tmp)
        os.replace(tmp, path)

    def load(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Read a snapshot written by :meth:`save` (``torch.load(weights_only=True)``)."""
        return decode_tree(torch.load(path, map_location="cpu", weights_only=True))

    def check_saveable(self) -> None:
        """Raise now if a monitor's state cannot be written without pickle."""
        for i, m in enumerate(self.monitors):
            try:
                encode_tree(m.state_dict())
            except InputTypeError as exc:
                raise InputTypeError(f"monitors[{i}]: {exc}") from None

    # ------------------------------------------------------------------------------ LR cut
    def set_lr_scale(self, scale: float) -> None:
        """Scale every learning rate inside ``optimizer.step()`` from now on (1.0 = off)."""
        self._scale = float(scale)
        if self._scale == 1.0:
            self.close()
        elif not self._hooks:
            self._hooks = [
                self._inner.register_step_pre_hook(self._pre_step),
                self._inner.register_step_post_hook(self._post_step),
            ]

    def _pre_step(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self._saved_lrs is not None:  # the previous step raised before its post-hook
            self._post_step(opt, args, kwargs)
        self._saved_lrs = [g["lr"] for g in opt.param_groups]
        for g in opt.param_groups:
            g["lr"] = g["lr"] * self._scale

    def _post_step(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self._saved_lrs is not None:
            for g, lr in zip(opt.param_groups, self._saved_lrs, strict=True):
                g["lr"] = lr
            self._saved_lrs = None

    def close(self) -> None:
        """Remove the LR hooks (idempotent)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []


# ---------------------------------------------------------------------------------- trees
def copy_tree(obj: Any) -> Any:
    """Deep copy with every tensor detached and copied to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, Mapping):
        return _with_metadata(obj, type(obj)((k, copy_tree(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return [copy_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(copy_tree(v) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj.copy()
    return copy.deepcopy(obj)


def encode_tree(obj: Any, where: str = "state") -> Any:
    """Make a tree loadable with ``torch.load(weights_only=True)``: numpy → tagged tensor/list.

    Raises :class:`~streamtopo.errors.InputTypeError` naming the path of a leaf that has no such
    form (an arbitrary object).
    """
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in "biufc":
            return {_ND: torch.from_numpy(np.ascontiguousarray(obj).copy()), "dtype": obj.dtype.str}
        if obj.dtype.kind in "US":
            return {_ND: obj.tolist(), "dtype": obj.dtype.str}
        raise InputTypeError(
            f"{where} is an array of dtype {obj.dtype}: not storable without pickle"
        )
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Mapping):
        out = OrderedDict((k, encode_tree(v, f"{where}[{k!r}]")) for k, v in obj.items())
        return _with_metadata(obj, out)
    if isinstance(obj, list):
        return [encode_tree(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(encode_tree(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, (torch.dtype, torch.device)):
        return obj
    raise InputTypeError(f"{where} is {describe(obj)}: not storable without pickle")


def decode_tree(obj: Any) -> Any:
    """Inverse of :func:`encode_tree`."""
    if isinstance(obj, Mapping):
        if _ND in obj:
            raw, dtype = obj[_ND], np.dtype(obj["dtype"])
            if isinstance(raw, torch.Tensor):
                return raw.numpy().astype(dtype, copy=True)
            return np.array(raw, dtype=dtype)
        return _with_metadata(obj, OrderedDict((k, decode_tree(v)) for k, v in obj.items()))
    if isinstance(obj, list):
        return [decode_tree(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(decode_tree(v) for v in obj)
    return obj


# ---------------------------------------------------------------------------------- RNG
def _rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # noqa: NPY002 - the global RNG
    out: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = list(torch.cuda.get_rng_state_all())
    return out


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    keys = np.asarray(npy["keys"].numpy() if isinstance(npy["keys"], torch.Tensor) else npy["keys"])
    np.random.set_state(  # noqa: NPY002 - the global RNG
        (npy["name"], keys.astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )
    torch.set_rng_state(state["torch"].clone())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _with_metadata(src: Any, out: Any) -> Any:
    # a module's state_dict carries per-module versions in ``_metadata`` (BatchNorm reads them)
    meta = getattr(src, "_metadata", None)
    if meta is not None:
        out._metadata = copy.deepcopy(meta)
    return out


def _stateful(obj: Any) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def _innermost(optimizer: Any) -> Any:
    # Lightning's LightningOptimizer and accelerate's AcceleratedOptimizer wrap the torch optimizer
    # in ``.optimizer``; the step hooks must sit on the one whose step() really runs
    seen = 0
    while not _is_plain(optimizer) and hasattr(optimizer, "optimizer") and seen < 8:
        optimizer, seen = optimizer.optimizer, seen + 1
    return optimizer


def _is_plain(optimizer: Any) -> bool:
    return isinstance(optimizer, torch.optim.Optimizer) and not hasattr(optimizer, "optimizer")
