"""The functional floor: pure, validated, stateless topology of arrays.

Every function here checks its input (raising a :class:`~streamtopo.errors.StreamtopoError`
that names the argument), calls the numba kernels of :mod:`streamtopo._kernels`, and keeps no
state between calls; the monitors (:mod:`streamtopo.monitors`) are thin stateful shells over
these functions. Layering: this package imports only ``_kernels``, ``_validation`` and
``errors`` (never monitors, io or integrations), and what another module needs from it is
public here, never an underscored name.

Modules
-------
h0
    H0 of point clouds: diagrams, totals, merge order, linkage, Betti-0 at a scale, H1 through
    ripser, persistence entropy.
cubical
    Sublevel-set persistence of images and volumes, Betti curves.
collapse
    Collapse Index components and variants; ``collapse_seed`` holds seed 000's arithmetic
    verbatim.
centroid
    Class-centroid statistics behind :class:`~streamtopo.monitors.centroid.CentroidMonitor`.
blas
    The BLAS Gram matrix (with its thread policy) behind the large-n d H0 path.
depth
    Betti profiles of one layer and the theta fit behind
    :class:`~streamtopo.monitors.depth.DepthProfile`.

The names below are re-exported so ``from streamtopo.topology import h0_diagram`` works.
"""

from __future__ import annotations

from .collapse import collapse_components, collapse_index
from .cubical import BettiCurves, betti_curves, cubical_diagram, cubical_diagrams
from .depth import LayerProfile, betti_profile, theta_fit
from .h0 import (
    METRICS,
    MergeEdges,
    betti0_at,
    h0_diagram,
    h0_total,
    h1_diagram,
    linkage,
    merge_order,
    mst_edges,
    persistence_entropy,
    prepare_points,
)

__all__ = [
    "METRICS",
    "BettiCurves",
    "LayerProfile",
    "MergeEdges",
    "betti0_at",
    "betti_curves",
    "betti_profile",
    "collapse_components",
    "collapse_index",
    "cubical_diagram",
    "cubical_diagrams",
    "h0_diagram",
    "h0_total",
    "h1_diagram",
    "linkage",
    "merge_order",
    "mst_edges",
    "persistence_entropy",
    "prepare_points",
    "theta_fit",
]
