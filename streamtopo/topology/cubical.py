"""Sublevel-set persistence of images and volumes (cubical complexes).

A map ``f`` on an H x W grid (or D x H x W) is filtered by value: at level t the complex holds
the pixels with ``f <= t``. Two cubical complexes can be built from the same pixels, and the
``connectivity`` argument picks one:

=============  ===========  ==================================================================
connectivity   construction  complex
=============  ===========  ==================================================================
8 (2-D),       T             each pixel is a closed square (voxel: closed cube); squares that
26 (3-D)                     share only a corner are joined. ``cripser.compute_ph(...,
                             filtration="T")``, ``gudhi.CubicalComplex(top_dimensional_cells=)``
4 (2-D),       V             each pixel is a vertex; an edge / square enters when all its
6 (3-D)                      pixels have. ``cripser.compute_ph(..., filtration="V")``,
                             ``gudhi.CubicalComplex(vertices=)``
=============  ===========  ==================================================================

The default is the T-construction (8 / 26), gudhi's default for images: pixels that touch at a
corner count as connected, as the closed squares of the image plane do. Cubical Ripser's own
default (used by seed 003) is the V-construction: pass ``connectivity=4`` (6 in 3-D) for it.

H0 comes from a union-find over pixels sorted by value with the elder rule. The top homology
minus one (H1 of an image, H2 of a volume) comes from the same union-find on ``-f`` by Alexander
duality (holes are bounded components of the complement, connected the dual way). Betti curves
add the Euler characteristic of the same complex: in 2-D ``chi = beta0 - beta1``, in 3-D
``chi = beta0 - beta1 + beta2``. Diagrams and curves agree exactly with cripser and gudhi for the
matching construction (tested).

Diagrams are ``(n, 2)`` float64 arrays ``(birth, death)``, finite bars by ascending death, the
one essential bar ``(min f, inf)`` last; zero-length bars (birth == death) are left out, as
gudhi and cripser do. NaN or infinite pixels are an error: mask them to a value of your choice
first (for example ``np.nan_to_num(x, nan=x_max)`` to add them last).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._validation import as_real_array, describe
from ..errors import InputError, InputTypeError

__all__ = [
    "CONNECTIVITY",
    "BettiCurves",
    "as_thresholds",
    "betti_curves",
    "cubical_diagram",
    "cubical_diagrams",
    "full_connectivity",
]

# grid dimension -> (V-construction connectivity, T-construction connectivity)
CONNECTIVITY: dict[int, tuple[int, int]] = {2: (4, 8), 3: (6, 26)}


class BettiCurves(NamedTuple):
    """Betti curves of M maps at T thresholds (see :func:`betti_curves`)."""

    thresholds: np.ndarray  #: (T,) float64, strictly ascending
    betti0: np.ndarray  #: (M, T) int64
    betti1: np.ndarray  #: (M, T) int64
    area0: np.ndarray  #: (M,) integral of beta0 over [thresholds[0], thresholds[-1]]
    area1: np.ndarray  #: (M,) integral of beta1 over the same window
    total_persistence: np.ndarray  #: (M,) sum of finite H0 bar lengths
    betti2: np.ndarray | None = None  #: (M, T) int64 for 3-D grids, None in 2-D
    area2: np.ndarray | None = None  #: (M,) integral of beta2 (3-D)


def _as_maps(x: Any, name: str, grid_ndim: int) -> np.ndarray:
    """Validate and return ``x`` as a C-contiguous float64 (M, P) array of flat maps."""
    if grid_ndim not in CONNECTIVITY:
        raise InputError(f"grid_ndim must be 2 or 3, got {describe(grid_ndim)}")
    arr = as_real_array(x, name, "an array of real numbers")
    if arr.ndim < grid_ndim:
        raise InputError(
            f"{name} must have at least {grid_ndim} dimensions (the {grid_ndim}-D grid last), "
            f"got {describe(arr)}"
        )
    if arr.size == 0:
        raise InputError(f"{name} must not be empty, got {describe(arr)}")
    flat = np.ascontiguousarray(arr.reshape(-1, int(np.prod(arr.shape[-grid_ndim:]))), np.float64)
    if not np.isfinite(flat).all():
        bad = int(np.count_nonzero(~np.isfinite(flat)))
        raise InputError(
            f"{name} must be finite, got {bad} NaN/inf pixel(s) in {describe(arr)}; "
            "mask them first (e.g. np.nan_to_num(x, nan=x_max))"
        )
    return flat


def _grid(shape: tuple[int, ...], grid_ndim: int) -> tuple[int, int, int]:
    g = shape[-grid_ndim:]
    return (1, g[0], g[1]) if grid_ndim == 2 else (g[0], g[1], g[2])


def full_connectivity(connectivity: int | None, grid_ndim: int) -> bool:
    """True for the T-construction (8 / 26), False for the V-construction (4 / 6)."""
    if grid_ndim not in CONNECTIVITY:
        raise InputError(f"grid_ndim must be 2 or 3, got {describe(grid_ndim)}")
    v, t = CONNECTIVITY[grid_ndim]
    if connectivity is None:
        return True
    if isinstance(connectivity, bool) or connectivity not in (v, t):
        raise InputError(
            f"connectivity must be {v} or {t} for a {grid_ndim}-D grid, "
            f"got {describe(connectivity)}"
        )
    return connectivity == t


def as_thresholds(thresholds: Any) -> np.ndarray:
    try:
        t = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputTypeError(
            f"thresholds must be a 1-D array of numbers, got {describe(thresholds)}"
        ) from None
    if t.ndim != 1 or t.size < 2:
        raise InputError(f"thresholds must be 1-D with at least 2 values, got {describe(t)}")
    if not np.isfinite(t).all() or not (np.diff(t) > 0).all():
        raise InputError("thresholds must be finite and strictly ascending")
    return np.ascontiguousarray(t)


def cubical_diagram(image: Any, connectivity: int | None = None, dim: int = 0) -> np.ndarray:
    """Sublevel-set persistence diagram of one 2-D image or 3-D volume.

    Parameters
    ----------
    image : array_like, shape (H, W) or (D, H, W)
        Finite pixel values.
    connectivity : {None, 4, 8} for 2-D, {None, 6, 26} for 3-D
        8 / 26 (default): T-construction; 4 / 6: V-construction (see the module docstring).
    dim : int
        0 (components), or the top dimension minus one: 1 (holes) in 2-D, 2 (voids) in 3-D,
        computed by Alexander duality (see :func:`cubical_diagrams`).

    Returns
    -------
    numpy.ndarray, shape (n, 2)
        ``(birth, death)`` rows by ascending (death, birth); for dim 0 the essential bar
        ``(min, inf)`` is last (higher dimensions have none on a finite grid).

    Examples
    --------
    >>> img = [[0.0, 5.0, 1.0],
    ...        [5.0, 5.0, 5.0],
    ...        [2.0, 5.0, 3.0]]
    >>> cubical_diagram(img, connectivity=4)
    array([[ 1.,  5.],
           [ 2.,  5.],
           [ 3.,  5.],
           [ 0., inf]])
    >>> ring = np.ones((5, 5)); ring[1:4, 1:4] = 0.0; ring[2, 2] = 0.5
    >>> cubical_diagram(ring, dim=1)
    array([[0. , 0.5]])
    """
    arr = np.asarray(image) if not isinstance(image, np.ndarray) else image
    if getattr(arr, "ndim", None) not in (2, 3):
        raise InputError(f"image must be 2-D (H, W) or 3-D (D, H, W), got {describe(arr)}")
    return cubical_diagrams(arr[None], connectivity, grid_ndim=arr.ndim, dim=dim)[0]


def cubical_diagrams(
    maps: Any, connectivity: int | None = None, *, grid_ndim: int = 2, dim: int = 0
) -> list[np.ndarray]:
    """Persistence diagrams of many maps in one kernel call (no per-map Python overhead).

    ``dim=0`` runs the union-find directly. ``dim = grid_ndim - 1`` (H1 in 2-D, H2 in 3-D) uses
    Alexander duality: the holes (voids) of ``{f <= t}`` are the bounded components of its
    complement ``{f > t}``, which are connected with the dual connectivity (T-construction
    8 / 26 <-> 4 / 6 for the complement, and the reverse). So the H0 of ``-f``, padded with an
    always-present outside, gives every such bar ``(b, d)`` as ``(-d, -b)``; the outside's
    essential bar is dropped. (Tested equal to cripser and gudhi.)

    Parameters
    ----------
    maps : array_like, shape (..., H, W) or (..., D, H, W)
        Any number of leading dimensions; the last ``grid_ndim`` are the grid.
    connectivity : int, optional
        As in :func:`cubical_diagram`.
    grid_ndim : {2, 3}
    dim : {0, grid_ndim - 1}

    Returns
    -------
    list of numpy.ndarray
        One diagram per map, in C order of the leading dimensions; views into one packed array.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.array([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    >>> [d.tolist() for d in cubical_diagrams(maps, connectivity=4)]
    [[[0.0, 1.0], [0.0, inf]], [[0.0, inf]]]
    """
    full = full_connectivity(connectivity, grid_ndim)
    if isinstance(dim, bool) or dim not in (0, grid_ndim - 1):
        raise InputError(f"dim must be 0 or {grid_ndim - 1} for a {grid_ndim}-D grid, got {dim!r}")
    flat = _as_maps(maps, "maps", grid_ndim)
    D, H, W = _grid(np.shape(maps), grid_ndim)
    if dim == 0:
        pairs, start = _h0_packed(flat, D, H, W, grid_ndim, full)
    else:
        pairs, start = _top_packed(flat, D, H, W, grid_ndim, full)
    return [pairs[start[m] : start[m + 1]] for m in range(flat.shape[0])]


def _h0_packed(
    flat: np.ndarray, D: int, H: int, W: int, grid_ndim: int, full: bool
) -> tuple[np.ndarray, np.ndarray]:
    """H0 pairs of every row of ``flat`` packed in one array; row m owns start[m]:start[m+1]."""
    from .._kernels.cubical import h0_pairs_batch, neighbour_offsets

    M, P = flat.shape
    out = np.empty((M * P, 2), dtype=np.float64)
    start = np.empty(M + 1, dtype=np.int64)
    order = np.argsort(flat, axis=1)  # numpy's vectorised sort beats a per-map sort in numba
    h0_pairs_batch(flat, order, D, H, W, neighbour_offsets(grid_ndim, full), out, start)
    used = int(start[M])
    return (out[:used].copy() if 2 * used < out.shape[0] else out[:used]), start


def _top_packed(
    flat: np.ndarray, D: int, H: int, W: int, grid_ndim: int, full: bool
) -> tuple[np.ndarray, np.ndarray]:
    """H_{top-1} pairs by duality: H0 of ``-f`` on the grid padded with a -inf outside."""
    M = flat.shape[0]
    grid = (D, H, W) if grid_ndim == 3 else (H, W)
    pad = [(0, 0)] + [(1, 1)] * grid_ndim
    g = np.pad(-flat.reshape(M, *grid), pad, constant_values=-np.inf).reshape(M, -1)
    Dp, Hp, Wp = (D + 2 if grid_ndim == 3 else 1), H + 2, W + 2
    pairs, start = _h0_packed(g, Dp, Hp, Wp, grid_ndim, not full)
    # every map's last pair is the outside's essential bar: drop it, flip the rest
    keep = np.ones(pairs.shape[0], dtype=bool)
    keep[start[1:] - 1] = False
    owner = np.repeat(np.arange(M), np.diff(start))[keep]
    top = np.empty((int(keep.sum()), 2), dtype=np.float64)
    top[:, 0] = -pairs[keep, 1]
    top[:, 1] = -pairs[keep, 0]
    order = np.lexsort((top[:, 0], top[:, 1], owner))
    counts = np.bincount(owner, minlength=M)
    new_start = np.zeros(M + 1, dtype=np.int64)
    np.cumsum(counts, out=new_start[1:])
    return top[order], new_start


def betti_curves(
    maps: Any,
    thresholds: Any,
    connectivity: int | None = None,
    *,
    grid_ndim: int = 2,
) -> BettiCurves:
    """Betti curves, their areas and total persistence of many maps in one kernel call.

    ``betti0[m, j]`` counts the components of ``{f_m <= thresholds[j]}``. In 2-D
    ``betti1 = betti0 - chi`` counts its holes (Euler characteristic of the complex chosen by
    ``connectivity``). In 3-D ``betti2`` counts its voids (bounded components of the
    complement, by duality as in :func:`cubical_diagrams`) and ``betti1 = betti0 + betti2 -
    chi`` its tunnels. ``area*`` are the exact integrals of the step functions over
    ``[thresholds[0], thresholds[-1]]`` (not a Riemann sum over the thresholds).
    ``total_persistence`` sums the finite H0 bar lengths (essential bar excluded).

    Parameters
    ----------
    maps : array_like, shape (..., H, W) or (..., D, H, W)
    thresholds : array_like, shape (T,)
        Strictly ascending, finite, T >= 2.
    connectivity : int, optional
        As in :func:`cubical_diagram`.
    grid_ndim : {2, 3}

    Examples
    --------
    >>> ring = np.ones((5, 5)); ring[1:4, 1:4] = 0.0; ring[2, 2] = 1.0
    >>> c = betti_curves(ring, [0.0, 0.5, 1.0])
    >>> c.betti0.tolist(), c.betti1.tolist(), c.area1.tolist()
    ([[1, 1, 1]], [[1, 1, 0]], [1.0])
    >>> shell = np.zeros((3, 3, 3)); shell[1, 1, 1] = 1.0  # a hollow cube until t = 1
    >>> betti_curves(shell, [0.0, 1.0], grid_ndim=3).betti2.tolist()
    [[1, 0]]
    """
    from .._kernels.cubical import neighbour_offsets, summaries_batch

    full = full_connectivity(connectivity, grid_ndim)
    t = as_thresholds(thresholds)
    flat = _as_maps(maps, "maps", grid_ndim)
    D, H, W = _grid(np.shape(maps), grid_ndim)
    M = flat.shape[0]
    T = t.shape[0]
    b0 = np.empty((M, T), dtype=np.int64)
    chi = np.empty((M, T), dtype=np.int64)
    area0 = np.empty(M, dtype=np.float64)
    areachi = np.empty(M, dtype=np.float64)
    tp = np.empty(M, dtype=np.float64)
    offs = neighbour_offsets(grid_ndim, full)
    order = np.argsort(flat, axis=1)
    summaries_batch(
        flat, order, D, H, W, offs, full, True, t, t[0], t[-1], b0, chi, area0, areachi, tp
    )
    if grid_ndim == 2:
        # beta1 >= 0 exactly; the area difference may round a hair below zero
        return BettiCurves(t, b0, b0 - chi, area0, np.maximum(area0 - areachi, 0.0), tp)
    pairs, start = _top_packed(flat, D, H, W, grid_ndim, full)
    b2, area2 = _packed_curves(pairs, start, t)
    area1 = np.maximum(area0 + area2 - areachi, 0.0)
    return BettiCurves(t, b0, b0 + b2 - chi, area0, area1, tp, b2, area2)


def _packed_curves(
    pairs: np.ndarray, start: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Betti curves at t (M, T) and exact areas over [t[0], t[-1]] of packed diagrams."""
    M, T = start.shape[0] - 1, t.shape[0]
    owner = np.repeat(np.arange(M), np.diff(start))
    diff = np.zeros((M, T + 1), dtype=np.int64)
    np.add.at(diff, (owner, np.searchsorted(t, pairs[:, 0])), 1)
    np.add.at(diff, (owner, np.searchsorted(t, pairs[:, 1])), -1)
    curves = np.cumsum(diff[:, :T], axis=1)
    length = np.clip(np.minimum(pairs[:, 1], t[-1]) - np.maximum(pairs[:, 0], t[0]), 0.0, None)
    return curves, np.bincount(owner, weights=length, minlength=M).astype(np.float64)
