"""Betti numbers across depth (seed 003): the pure maths behind
:class:`~streamtopo.monitors.depth.DepthProfile`.

Seed 003 (arXiv 2311.04592) measures, layer by layer, the Betti numbers of a fixed probe
batch's activations, summarises each layer by a topological complexity Omega and the whole
network by theta, the slope of log Omega over normalised depth (negative = topology simplifies
with depth). This module holds the stateless part (one layer's
:func:`betti_profile`, the theta fit :func:`theta_fit`, config validation); the class that
collects layers lives in :mod:`streamtopo.monitors.depth`.

Definitions used here (the paper leaves the exact normalisation open; these are ours):

* **Cubical** (``kind="cubical"``, feature maps (N, C, H, W) or (N, H, W)): each channel map is
  filtered by value (sublevel sets, :mod:`streamtopo.topology.cubical`). With ``normalize="map"``
  (default) each map is first rescaled to [0, 1] by its own min and max, so Omega does not
  follow the activation scale of a layer; a constant map becomes all zeros (beta0 = 1, beta1 =
  0 at every level). The Betti-curve area of a map is the exact integral of
  ``beta0(t) + beta1(t)`` over the threshold window ``[thresholds[0], thresholds[-1]]``; a
  sample's area is the mean over its channels. With ``volume=True`` each sample is one 3-D
  volume (N, D, H, W) and the area sums beta0 + beta1 + beta2 (the seed's first three Betti
  numbers).
* **Rips** (``kind="rips"``, any (N, ...) array, rows flattened to (N, D)): at most
  ``max_points`` samples form one point cloud; H0 from the MST core
  (:func:`streamtopo.topology.h0.h0_diagram`), H1 from ripser when ``dims`` contains 1.
  Distances are divided by the longest finite H0 death (``normalize`` other than ``"none"``),
  so the window is [0, 1]. There is one "sample" (the cloud) per layer.
* **Omega(layer)** = mean over samples of the Betti-curve area. **theta** = least-squares slope of
  ``log Omega`` against normalised depth ``index / (L - 1)`` (index in ``layer_names``), with
  the fit's r^2.

NaN/inf activations raise :class:`~streamtopo.errors.InputError` (mask them yourself; the
message says how many there are).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from .._validation import as_real_array, check_choice, check_positive_int, describe
from ..errors import InputError, InputTypeError

__all__ = [
    "CONFIG_KEYS",
    "KINDS",
    "NORMALIZE",
    "LayerProfile",
    "betti_profile",
    "check_profile_config",
    "theta_fit",
]

KINDS = ("cubical", "rips")
NORMALIZE = ("map", "layer", "none")


class LayerProfile(NamedTuple):
    """Betti summary of one layer's activations (see :func:`betti_profile`)."""

    kind: str
    thresholds: np.ndarray  #: (T,) levels the curves are sampled at
    betti0: np.ndarray  #: (N, T) float64, mean over channels of beta0 (rips: N = 1)
    betti1: np.ndarray | None  #: (N, T) float64 or None when dim 1 was not computed
    area: np.ndarray  #: (N,) Betti-curve area per sample (sum over ``dims``)
    total_persistence: np.ndarray  #: (N,) finite H0 total persistence (mean over channels)
    betti2: np.ndarray | None = None  #: (N, T) float64 for volumes when dim 2 was computed

    @property
    def omega(self) -> float:
        """Topological complexity: mean Betti-curve area over samples."""
        return float(np.mean(self.area))


def _dims(dims: Any, allowed: tuple[int, ...]) -> tuple[int, ...]:
    if dims is None:
        return allowed
    try:
        out = tuple(sorted({int(d) for d in dims}))
    except (TypeError, ValueError):
        raise InputTypeError(f"dims must be a sequence of ints, got {describe(dims)}") from None
    if not out or any(d not in allowed for d in out):
        raise InputError(f"dims must be a non-empty subset of {allowed}, got {describe(dims)}")
    return out


def _numeric(x: Any, name: str) -> np.ndarray:
    arr = as_real_array(x, name, "an array of real numbers")
    if arr.size == 0:
        raise InputError(f"{name} must not be empty, got {describe(arr)}")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(
            f"{name} must be finite, got {bad} NaN/inf value(s) in {describe(arr)}; mask them first"
        )
    return arr


def _levels(thresholds: Any, lo: float, hi: float) -> np.ndarray:
    """An int T gives T evenly spaced levels over [lo, hi]; an array is used as given."""
    if isinstance(thresholds, (int, np.integer)) and not isinstance(thresholds, bool):
        n = check_positive_int(thresholds, "thresholds", minimum=2)
        if hi <= lo:
            hi = lo + 1.0
        return np.linspace(lo, hi, n)
    from .cubical import as_thresholds

    return as_thresholds(thresholds)


def _cubical(
    arr: np.ndarray, thresholds: Any, connectivity: int | None, normalize: str, dims: Any, volume
) -> LayerProfile:
    from .cubical import betti_curves

    grid = 3 if volume else 2
    if volume and arr.ndim != 4:
        raise InputError(
            f"activations must be 4-D (N, D, H, W) for kind='cubical', volume=True, "
            f"got {describe(arr)}"
        )
    if not volume and arr.ndim not in (3, 4):
        raise InputError(
            f"activations must be (N, H, W) or (N, C, H, W) for kind='cubical', got {describe(arr)}"
        )
    use = _dims(dims, (0, 1) if grid == 2 else (0, 1, 2))
    n = arr.shape[0]
    maps = arr.reshape(n, -1, *arr.shape[-grid:]).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # checked just below
        if normalize == "map":
            axes = tuple(range(2, maps.ndim))
            lo = maps.min(axis=axes, keepdims=True)
            span = maps.max(axis=axes, keepdims=True) - lo
            maps = (maps - lo) / np.where(span > 0, span, 1.0)
            t = _levels(thresholds, 0.0, 1.0)
        elif normalize == "layer":
            lo, hi = float(maps.min()), float(maps.max())
            maps = (maps - lo) / (hi - lo if hi > lo else 1.0)
            t = _levels(thresholds, 0.0, 1.0)
        else:
            t = _levels(thresholds, float(maps.min()), float(maps.max()))
    if not np.isfinite(maps).all():  # a value range wider than float64 (|x| near 1e308)
        raise InputError(
            f"activations span a range that overflows float64 when normalised "
            f"(normalize={normalize!r}); rescale them first"
        )
    c = betti_curves(maps, t, connectivity, grid_ndim=grid)
    ch = maps.shape[1]
    b0 = c.betti0.reshape(n, ch, -1).mean(axis=1)
    area = np.zeros(n * ch)
    if 0 in use:
        area += c.area0
    b1 = b2 = None
    if 1 in use:
        area += c.area1
        b1 = c.betti1.reshape(n, ch, -1).mean(axis=1)
    if 2 in use:
        area += c.area2
        b2 = c.betti2.reshape(n, ch, -1).mean(axis=1)
    tp = c.total_persistence.reshape(n, ch).mean(axis=1)
    return LayerProfile("cubical", t, b0, b1, area.reshape(n, ch).mean(axis=1), tp, b2)


def _bars_curve(dgm: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, float]:
    """Betti curve of a diagram at levels t and its exact area over [t[0], t[-1]]."""
    b, d = dgm[:, 0], dgm[:, 1]
    curve = ((b[None, :] <= t[:, None]) & (t[:, None] < d[None, :])).sum(axis=1)
    area = np.clip(np.minimum(d, t[-1]) - np.maximum(b, t[0]), 0.0, None).sum()
    return curve.astype(np.float64), float(area)


def _rips(
    arr: np.ndarray, thresholds: Any, normalize: str, dims: Any, max_points, seed, metric
) -> LayerProfile:
    from .h0 import h0_diagram, h1_diagram

    check_choice(metric, "metric", ("euclidean", "cosine"))
    use = _dims(dims, (0, 1))
    if 1 in use and metric != "euclidean":
        raise InputError(f"dims containing 1 needs metric='euclidean' (ripser), got {metric!r}")
    X = arr.reshape(arr.shape[0], -1).astype(np.float64)
    if max_points is not None:
        check_positive_int(max_points, "max_points", minimum=2)
        if X.shape[0] > max_points:
            idx = np.random.default_rng(seed).choice(X.shape[0], size=max_points, replace=False)
            X = X[np.sort(idx)]
    h0 = h0_diagram(X, metric)
    h1 = np.zeros((0, 2))
    if 1 in use:
        with warnings.catch_warnings():
            # embeddings routinely have more features than samples; rows are the points
            warnings.filterwarnings("ignore", message=".*more columns than rows")
            h1 = h1_diagram(X, max_points=None)
    finite = h0[:-1, 1]
    longest = float(finite.max()) if finite.size else 0.0
    scale = longest if normalize != "none" and longest > 0 else 1.0
    h0 = h0 / scale
    h1 = h1 / scale
    if normalize != "none":
        hi = 1.0
    else:
        hi = max(longest, float(h1[:, 1].max()) if h1.size else 0.0)
    t = _levels(thresholds, 0.0, hi)
    b0, area = _bars_curve(h0, t)
    if 0 not in use:
        area = 0.0
    b1 = None
    if 1 in use:
        b1c, a1 = _bars_curve(h1, t)
        b1 = b1c[None, :]
        area += a1
    tp = float(finite.sum() / scale)
    return LayerProfile("rips", t, b0[None, :], b1, np.array([area]), np.array([tp]))


def betti_profile(
    activations: Any,
    kind: str = "cubical",
    thresholds: int | Sequence[float] | np.ndarray = 64,
    *,
    connectivity: int | None = None,
    normalize: str = "map",
    dims: Sequence[int] | None = None,
    volume: bool = False,
    max_points: int | None = 500,
    seed: int = 0,
    metric: str = "euclidean",
) -> LayerProfile:
    """Betti curves and their areas for one layer's activations.

    Parameters
    ----------
    activations : array_like
        ``kind="cubical"``: feature maps (N, C, H, W) (each channel a 2-D map) or (N, H, W);
        with ``volume=True``, (N, D, H, W) volumes. ``kind="rips"``: (N, ...) rows flattened.
    kind : {"cubical", "rips"}
    thresholds : int or array_like
        Number of evenly spaced levels over the window (64 by default: beyond that the curves
        barely change for 8-bit-like maps, and areas are exact integrals regardless), or the
        levels themselves (strictly ascending), in normalised units unless ``normalize="none"``.
    connectivity : int, optional
        Cubical only: 8 (T-construction, default) or 4 (V) in 2-D; 26 or 6 in 3-D.
    normalize : {"map", "layer", "none"}
        Cubical: rescale each map (or the whole layer) to [0, 1], or keep raw values (window =
        layer min..max). Rips: "map"/"layer" divide distances by the longest finite H0 death.
    dims : sequence of int, optional
        Betti numbers summed into the area: default (0, 1) for 2-D cubical, (0, 1, 2) for
        volumes (the seed's first three Betti numbers), (0,) for Rips (H1 of a Rips complex
        needs ripser and is slower).
    volume : bool
        Cubical: treat each sample as one 3-D volume instead of C 2-D maps.
    max_points, seed, metric
        Rips only: sample size (without replacement, ``seed``) and metric of the point cloud.

    Returns
    -------
    LayerProfile
        ``omega`` is the mean area over samples.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.zeros((2, 1, 4, 4)); maps[:, 0, ::3, ::3] = -1.0  # four separate corners
    >>> p = betti_profile(maps, thresholds=[0.0, 0.5, 1.0])
    >>> p.betti0.tolist(), p.omega
    ([[4.0, 4.0, 1.0], [4.0, 4.0, 1.0]], 4.0)
    >>> betti_profile(np.eye(3), kind="rips", thresholds=3).betti0.tolist()
    [[3.0, 3.0, 1.0]]
    """
    check_choice(kind, "kind", KINDS)
    check_choice(normalize, "normalize", NORMALIZE)
    arr = _numeric(activations, "activations")
    if kind == "cubical":
        return _cubical(arr, thresholds, connectivity, normalize, dims, bool(volume))
    if connectivity is not None or volume:
        raise InputError("connectivity and volume apply to kind='cubical' only")
    if arr.ndim < 2:
        raise InputError(
            f"activations must be (N, D) or (N, ...) for kind='rips', got {describe(arr)}"
        )
    return _rips(
        arr, thresholds, normalize, (0,) if dims is None else dims, max_points, seed, metric
    )


def theta_fit(depth: Any, omega: Any) -> tuple[float, float, float]:
    """Least-squares fit ``log(omega) = intercept + theta * depth``.

    Parameters
    ----------
    depth, omega : array_like
        Normalised depth and Omega of each layer (at least two layers, every omega > 0: the
        caller checks, naming the layers).

    Returns
    -------
    (theta, intercept, r2)
        ``r2`` is 1.0 when every log omega is equal (the fit is exact).

    Examples
    --------
    >>> import numpy as np
    >>> theta, intercept, r2 = theta_fit([0.0, 0.5, 1.0], np.exp([1.0, 0.5, 0.0]))
    >>> round(theta, 12), round(intercept, 12), r2
    (-1.0, 1.0, 1.0)
    """
    x = np.asarray(depth, dtype=np.float64)
    y = np.log(np.asarray(omega, dtype=np.float64))
    xm, ym = x.mean(), y.mean()
    sxx = float(np.sum((x - xm) ** 2))
    slope = float(np.sum((x - xm) * (y - ym)) / sxx)
    intercept = float(ym - slope * xm)
    ss_res = float(np.sum((y - intercept - slope * x) ** 2))
    ss_tot = float(np.sum((y - ym) ** 2))
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return slope, intercept, r2


CONFIG_KEYS = (
    "kind", "thresholds", "connectivity", "normalize", "dims", "volume", "max_points", "seed",
    "metric",
)  # fmt: skip


def check_profile_config(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Validate :func:`betti_profile` keyword arguments once; return a JSON-friendly copy."""
    from .cubical import full_connectivity

    unknown = sorted(set(kwargs) - set(CONFIG_KEYS))
    if unknown:
        raise InputTypeError(f"unknown betti_profile argument(s) {unknown}; known: {CONFIG_KEYS}")
    cfg = dict(kwargs)
    kind = check_choice(cfg.get("kind", "cubical"), "kind", KINDS)
    check_choice(cfg.get("normalize", "map"), "normalize", NORMALIZE)
    t = cfg.get("thresholds", 64)
    t = _levels(t, 0.0, 1.0)
    if not isinstance(cfg.get("thresholds", 64), (int, np.integer)):
        cfg["thresholds"] = [float(v) for v in t]
    volume = bool(cfg.get("volume", False))
    if kind == "cubical":
        grid = 3 if volume else 2
        if cfg.get("connectivity") is not None:
            full_connectivity(cfg["connectivity"], grid)
        if cfg.get("dims") is not None:
            cfg["dims"] = list(_dims(cfg["dims"], (0, 1) if grid == 2 else (0, 1, 2)))
    else:
        if cfg.get("connectivity") is not None or volume:
            raise InputError("connectivity and volume apply to kind='cubical' only")
        if cfg.get("dims") is not None:
            cfg["dims"] = list(_dims(cfg["dims"], (0, 1)))
        if cfg.get("max_points") is not None:
            check_positive_int(cfg["max_points"], "max_points", minimum=2)
    return cfg
