"""Layer groups: which modules of a model are the "layers" a LayerMonitor sees."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from torch import nn

from ..._validation import describe
from ...errors import InputError, InputTypeError

__all__ = ["LayerGroup", "layer_groups"]

_CONTAINERS = (nn.ModuleList, nn.Sequential, nn.ModuleDict)


class LayerGroup(NamedTuple):
    """One layer: its name, its module, and whether its parameters include the children's
    (``recurse=False`` for the parameters registered directly on an opened module)."""

    name: str
    module: nn.Module
    recurse: bool


def layer_groups(model: nn.Module, groups: str | Sequence[str] = "auto") -> list[LayerGroup]:
    """Resolve ``groups`` to a list of :class:`LayerGroup` (see the module docstring).

    Examples
    --------
    >>> import torch
    >>> enc = torch.nn.TransformerEncoder(
    ...     torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), num_layers=3,
    ...     enable_nested_tensor=False)
    >>> model = torch.nn.ModuleDict({"emb": torch.nn.Embedding(10, 8), "enc": enc,
    ...                              "head": torch.nn.Linear(8, 10)})
    >>> [g.name for g in layer_groups(model)]
    ['emb', 'enc.layers.0', 'enc.layers.1', 'enc.layers.2', 'head']
    >>> [g.name for g in layer_groups(model, r"enc\\.layers\\.\\d")]
    ['enc.layers.0', 'enc.layers.1', 'enc.layers.2']
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    if isinstance(groups, str) and groups == "auto":
        out = _auto_groups(model)
    elif isinstance(groups, str):
        try:
            pattern = re.compile(groups)
        except re.error as exc:
            raise InputError(
                f"groups is not a valid regular expression: {groups!r} ({exc})"
            ) from exc
        out = []
        for name, module in model.named_modules():
            if (
                name
                and pattern.fullmatch(name)
                and not any(name.startswith(prev.name + ".") for prev in out)
            ):
                out.append(LayerGroup(name, module, True))
        if not out:
            raise InputError(f"groups={groups!r} matches no module name of the model")
    elif isinstance(groups, Sequence) and all(isinstance(g, str) for g in groups):
        out = []
        for name in groups:
            try:
                out.append(LayerGroup(name, model.get_submodule(name), True))
            except AttributeError as exc:
                raise InputError(
                    f"groups names {name!r}, which is not a module of the model"
                ) from exc
        if len(set(groups)) != len(groups):
            raise InputError(f"groups has duplicate names: {list(groups)}")
    else:
        raise InputTypeError(
            "groups must be 'auto', a regex string or a list of module names, "
            f"got {describe(groups)}"
        )
    if not out:
        raise InputError("the model has no module with parameters to group into layers")
    return out


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _holds_block_list(module: nn.Module) -> bool:
    return any(isinstance(m, nn.ModuleList) for m in module.modules() if m is not module)


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _is_stack(module: nn.Module) -> bool:
    """A stack of blocks (``nn.TransformerEncoder`` and the like): a direct ``nn.ModuleList``
    child of at least two entries holds most (≥ 50%) of the module's parameters. A block whose
    attention heads sit in a ModuleList keeps most parameters in its MLP, so it stays whole."""
    total = _n_params(module)
    return total > 0 and any(
        isinstance(c, nn.ModuleList) and len(c) >= 2 and 2 * _n_params(c) >= total
        for c in module.children()
    )


def _auto_groups(model: nn.Module) -> list[LayerGroup]:
    out: list[LayerGroup] = []

    def join(prefix: str, name: str) -> str:
        return f"{prefix}.{name}" if prefix else name

    def open_(prefix: str, module: nn.Module) -> None:
        if next(module.parameters(recurse=False), None) is not None:
            out.append(LayerGroup(prefix or "root", module, False))
        for name, child in module.named_children():
            numbered = isinstance(module, (nn.ModuleList, nn.Sequential))
            visit(join(prefix, name), child, in_container=numbered)

    def visit(prefix: str, module: nn.Module, in_container: bool) -> None:
        if (
            not in_container and (isinstance(module, _CONTAINERS) or _holds_block_list(module))
        ) or (in_container and _is_stack(module)):
            open_(prefix, module)
        elif _has_params(module):
            out.append(LayerGroup(prefix, module, True))

    open_("", model)
    # one big group is no layer structure: open it while that gives several
    while len(out) == 1 and out[0].recurse:
        only = out.pop()
        open_(only.name, only.module)
        if len(out) < 2:
            out[:] = [only]
            break
    return out
