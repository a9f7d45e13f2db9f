"""Turn what a training loop hands a monitor into one float32 row, or raise before any state
changes.

Accepted per signal: a 1-D numpy array, a sequence of Python floats / numpy scalars / 0-d
tensors, or a 1-D tensor. Tensors are recognised by duck typing (``detach``/``cpu``/``numpy``),
so torch is never imported here: a 1-D tensor is moved with one ``.detach().cpu().numpy()``; a
list of 0-d tensors, or a dict of 1-D tensors (one per signal), is first stacked on its device
with the tensor's own library (``torch.stack``), so a call costs one host transfer, not one per
layer or per signal.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._validation import describe
from ..errors import InputError, InputTypeError


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "cpu") and hasattr(x, "numpy")


def _tensor_to_numpy(t: Any) -> np.ndarray:
    t = t.detach()
    if str(getattr(t, "dtype", "")) in _NO_NUMPY_DTYPES:  # numpy has no bfloat16: widen first
        t = t.float()
    return t.cpu().numpy()


# tensor dtypes numpy cannot hold: widened to float32 on the device before the host copy
_NO_NUMPY_DTYPES = frozenset({"torch.bfloat16", "torch.float8_e4m3fn", "torch.float8_e5m2"})


def _stack_tensors(items: Any) -> np.ndarray:
    """One host transfer for a sequence of 0-d (or 1-element) tensors."""
    lib = sys.modules[type(items[0]).__module__.split(".")[0]]
    stacked = lib.stack([t.detach().reshape(()) for t in items])
    return _tensor_to_numpy(stacked)


def as_vector(x: Any, name: str, n: int) -> np.ndarray:
    """Return ``x`` as a 1-D real array of length ``n`` (not copied if possible)."""
    if type(x) is np.ndarray and x.ndim == 1 and x.shape[0] == n and x.dtype.kind == "f":
        return x  # the common case, checked first
    if isinstance(x, (str, bytes)):
        raise InputTypeError(f"{name} must be {n} numbers (one per layer), got {describe(x)}")
    if isinstance(x, Mapping):
        raise InputTypeError(f"{name} must be {n} numbers (one per layer), got a dict")
    if isinstance(x, np.ma.MaskedArray):
        raise InputTypeError(
            f"{name} must be a plain array, got a masked array (its mask would be ignored); "
            "pass NaN for a non-finite value"
        )
    if _is_tensor(x):
        arr = _tensor_to_numpy(x)
    elif isinstance(x, (list, tuple)) and x and _is_tensor(x[0]):
        if not all(_is_tensor(t) for t in x):
            raise InputTypeError(f"{name} mixes tensors and other values")
        try:
            arr = _stack_tensors(x)
        except Exception as exc:
            raise InputError(
                f"{name} must be 0-d tensors (one per layer), got {describe(x)}: {exc}"
            ) from exc
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged nesting and the like
            raise InputError(
                f"{name} must be {n} numbers (one per layer), got {describe(x)}"
            ) from exc
    kind = arr.dtype.kind
    if kind not in "fiub":
        raise InputTypeError(
            f"{name} must be real numbers (one per layer), got {describe(x)} "
            f"converted to dtype {arr.dtype}"
        )
    if arr.ndim != 1:
        raise InputError(
            f"{name} must be 1-D with {n} values (one per layer), got shape {arr.shape}"
        )
    if arr.shape[0] != n:
        raise InputError(f"{name} has {arr.shape[0]} values, expected n_layers={n}")
    return arr


def fill_row(
    values: Any,
    signals: tuple[str, ...],
    n: int,
    out: np.ndarray,
    out_rows: list[np.ndarray] | None = None,
) -> None:
    """Write one step into ``out`` (S, n) float64; raises before writing on bad input.

    ``values`` is a vector (one signal), a mapping signal -> vector, or an (S, n) numpy array
    in the order of ``signals``. ``out_rows`` may hold the row views ``list(out)``, which makes
    the common dict case a little cheaper.
    """
    S = len(signals)
    if type(values) is np.ndarray and values.dtype.kind == "f":  # fast path, checked in full below
        if values.shape == out.shape or (S == 1 and values.shape == (n,)):
            out[...] = values
            return
    elif type(values) is dict and len(values) == S:
        vecs = [values.get(s) for s in signals]
        shape = (n,)
        for v in vecs:
            if type(v) is not np.ndarray or v.shape != shape or v.dtype.kind != "f":
                break
        else:
            rows_out = out_rows if out_rows is not None else list(out)
            for s in range(S):
                rows_out[s][...] = vecs[s]
            return
    if isinstance(values, np.ma.MaskedArray):
        raise InputTypeError(
            "values must be a plain array, got a masked array (its mask would be ignored); "
            "pass NaN for a non-finite value"
        )
    if _is_tensor(values):
        values = _tensor_to_numpy(values)  # (n,) or (S, n): one transfer
    if isinstance(values, Mapping):
        keys = set(values)
        if keys != set(signals):
            missing = sorted(set(signals) - keys, key=str)
            extra = sorted(keys - set(signals), key=str)
            raise InputError(
                f"values must have exactly the keys {list(signals)}, got {sorted(keys, key=str)}"
                f" (missing {missing}, unexpected {extra})"
            )
        vecs = [values[s] for s in signals]
        if S > 1 and all(_is_tensor(v) for v in vecs):
            try:  # one host transfer for every signal
                lib = sys.modules[type(vecs[0]).__module__.split(".")[0]]
                vecs = list(_tensor_to_numpy(lib.stack([v.detach() for v in vecs])))
            except Exception:  # different shapes or devices: convert one by one (and report)
                pass
        rows = [as_vector(v, f"values[{s!r}]", n) for s, v in zip(signals, vecs, strict=True)]
    elif S == 1 and not (isinstance(values, np.ndarray) and values.shape == (1, n)):
        rows = [as_vector(values, "values", n)]
    else:
        try:
            arr = np.asarray(values) if not isinstance(values, (str, bytes)) else values
        except Exception as exc:  # ragged nesting and the like
            raise InputError(
                f"values must be a dict {{signal: vector}} or an array of shape ({S}, {n}) for "
                f"signals {list(signals)}, got {describe(values)}"
            ) from exc
        if not isinstance(arr, np.ndarray) or arr.ndim != 2:
            raise InputError(
                f"values must be a dict {{signal: vector}} or an array of shape ({S}, {n}) for "
                f"signals {list(signals)}, got {describe(values)}"
            )
        if arr.shape != (S, n):
            raise InputError(f"values must have shape ({S}, {n}), got shape {arr.shape}")
        rows = [as_vector(arr[s], f"values[{s}]", n) for s in range(S)]
    for s in range(S):
        out[s] = rows[s]


def as_stream(values: Any, signals: tuple[str, ...], n: int) -> np.ndarray:
    """A recorded stream as a (T, S, n) array: from (T, S, n), (T, n) for one signal, or a dict
    ``{signal: (T, n)}``."""
    S = len(signals)
    if isinstance(values, Mapping):
        if set(values) != set(signals):
            raise InputError(
                f"values must have exactly the keys {list(signals)}, got {list(values)}"
            )
        values = np.stack([np.asarray(values[s]) for s in signals], axis=1)
    arr = np.asarray(values)
    if arr.ndim == 2 and S == 1:
        arr = arr[:, None, :]
    if arr.ndim != 3 or arr.shape[1:] != (S, n):
        raise InputError(
            f"values must have shape (T, {S}, {n}) (steps, signals, layers), got {describe(arr)}"
        )
    return arr


def missing_mask(missing: Any, n_signals: int, n_layers: int) -> np.ndarray | None:
    """``missing`` (one bool per layer, or per signal and layer) as an (n_signals, n_layers)
    bool array, or None when nothing is missing."""
    try:
        arr = np.asarray(missing)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"missing must be an array of bool, got {describe(missing)}") from exc
    if arr.dtype != np.bool_:
        raise InputTypeError(f"missing must be an array of bool, got {describe(missing)}")
    S, L = n_signals, n_layers
    if arr.shape == (L,):
        arr = np.broadcast_to(arr, (S, L))
    elif arr.shape != (S, L):
        raise InputError(
            f"missing must have shape ({L},) or ({S}, {L}) (signals, layers), got shape {arr.shape}"
        )
    return arr.copy() if arr.any() else None


def split_absent(
    bad: tuple[int, ...], mask: np.ndarray, row: np.ndarray
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Layers ``bad`` (a non-finite value in the recorded ``row``) split into (really
    non-finite: a non-finite value that is not missing, absent: only missing values)."""
    real, absent = [], []
    for i in bad:
        present = ~mask[:, i]
        (absent if np.isfinite(row[present, i]).all() else real).append(i)
    return tuple(real), tuple(absent)
