"""Betti numbers across depth: how a network simplifies the topology of its activations.

Seed 003 (arXiv 2311.04592) measures, layer by layer, the Betti numbers of a fixed probe
batch's activations, summarises each layer by a topological complexity Omega and the whole
network by theta, the slope of log Omega over normalised depth (negative = topology simplifies
with depth). :class:`DepthProfile` collects one :class:`LayerProfile` per layer and fits theta;
the definitions and the maths (:func:`betti_profile`, the theta fit) live in the functional floor,
:mod:`streamtopo.topology.depth`, and are re-exported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl

from .._validation import describe
from ..errors import InputError, StreamtopoError
from ..topology.depth import (
    KINDS,
    LayerProfile,
    betti_profile,
    check_profile_config,
    theta_fit,
)

__all__ = ["DepthProfile", "LayerProfile", "betti_profile"]


class DepthProfile:
    """Omega per layer and theta across depth for a fixed list of layers.

    A profile, not a monitor: each layer is added once and there is no per-step ``check``
    and no alarm, so it does not take the :class:`~streamtopo.monitors.Monitor` contract.

    Parameters
    ----------
    layer_names : sequence of str
        Layers in forward order; a layer's normalised depth is ``index / (len - 1)``.
    writer : callable, optional
        Called with a plain dict row (``monitor="depth"``) after each :meth:`add`.
    **profile_kwargs
        Passed to :func:`betti_profile` (kind, thresholds, connectivity, normalize, dims, ...),
        the same for every layer; must be JSON-serialisable (it is the saved config).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> dp = DepthProfile(["conv1", "conv2", "conv3"], thresholds=16)
    >>> for k, name in enumerate(["conv1", "conv2", "conv3"]):
    ...     x = rng.normal(size=(4, 2, 16, 16))
    ...     _ = dp.add(name, x if k == 0 else x.cumsum(-1).cumsum(-2) * k)  # smoother deeper
    >>> dp.omega()["layer"].to_list()
    ['conv1', 'conv2', 'conv3']
    >>> bool(dp.theta()["theta"][0] < 0)
    True
    """

    def __init__(
        self,
        layer_names: Sequence[str],
        *,
        writer: Callable[[dict], Any] | None = None,
        **profile_kwargs: Any,
    ) -> None:
        names = list(layer_names) if not isinstance(layer_names, str) else None
        if not names or not all(isinstance(n, str) for n in names):
            raise InputError(
                f"layer_names must be a non-empty sequence of str, got {describe(layer_names)}"
            )
        if len(set(names)) != len(names):
            raise InputError(f"layer_names must be unique, got {names}")
        self.layer_names: tuple[str, ...] = tuple(names)
        self.writer = writer
        self.config: dict[str, Any] = check_profile_config(profile_kwargs)
        self.reset()

    # -- state ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every added layer."""
        self.step_ = 0
        self.profiles_: dict[str, LayerProfile] = {}

    def add(self, layer: str, activations: Any) -> LayerProfile:
        """Compute and store the profile of ``layer`` (each layer once)."""
        if layer not in self.layer_names:
            raise InputError(f"layer must be one of {self.layer_names}, got {describe(layer)}")
        if layer in self.profiles_:
            raise InputError(
                f"layer {layer!r} was already added; call reset() to start a new profile"
            )
        prof = betti_profile(activations, **self.config)
        self.profiles_[layer] = prof
        self.step_ += 1
        if self.writer is not None:
            self.writer(
                {
                    "monitor": "depth",
                    "step": self.step_,
                    "wall_time": time.time(),
                    "layer": layer,
                    "depth": self._depth(layer),
                    "omega": prof.omega,
                    "n_samples": int(prof.area.shape[0]),
                    "config": dict(self.config),
                }
            )
        return prof

    def _depth(self, layer: str) -> float:
        L = len(self.layer_names)
        return self.layer_names.index(layer) / (L - 1) if L > 1 else 0.0

    # -- results -------------------------------------------------------------------------------
    def omega(self) -> pl.DataFrame:
        """One row per added layer, in ``layer_names`` order: layer, index, depth (normalised),
        omega (mean area), omega_std (over samples), n_samples, betti0_mean, betti1_mean,
        betti2_mean (mean Betti number over samples and levels; null when not computed)."""
        rows = []
        for i, name in enumerate(self.layer_names):
            p = self.profiles_.get(name)
            if p is None:
                continue
            rows.append(
                {
                    "layer": name,
                    "index": i,
                    "depth": self._depth(name),
                    "omega": p.omega,
                    "omega_std": float(np.std(p.area)),
                    "n_samples": int(p.area.shape[0]),
                    "betti0_mean": float(np.mean(p.betti0)),
                    "betti1_mean": None if p.betti1 is None else float(np.mean(p.betti1)),
                    "betti2_mean": None if p.betti2 is None else float(np.mean(p.betti2)),
                }
            )
        schema = {
            "layer": pl.String, "index": pl.Int64, "depth": pl.Float64, "omega": pl.Float64,
            "omega_std": pl.Float64, "n_samples": pl.Int64, "betti0_mean": pl.Float64,
            "betti1_mean": pl.Float64, "betti2_mean": pl.Float64,
        }  # fmt: skip
        return pl.DataFrame(rows, schema=schema)

    def theta(self) -> pl.DataFrame:
        """Least-squares fit ``log(omega) = intercept + theta * depth`` over the added layers.

        Returns one row: theta, intercept, r2 (1.0 when every log omega is equal, the fit being
        exact), n_layers. Needs at least two layers with omega > 0.
        """
        df = self.omega()
        if df.height < 2:
            raise InputError(
                f"theta needs at least 2 added layers, got {df.height} "
                f"(added: {list(self.profiles_)})"
            )
        om = df["omega"].to_numpy()
        if not (om > 0).all():
            zero = df.filter(pl.col("omega") <= 0)["layer"].to_list()
            raise StreamtopoError(f"log(omega) is undefined: omega <= 0 for layers {zero}")
        slope, intercept, r2 = theta_fit(df["depth"].to_numpy(), om)
        return pl.DataFrame(
            {"theta": [slope], "intercept": [intercept], "r2": [r2], "n_layers": [df.height]}
        )

    def plot(self, ax: Any = None) -> Any:
        """Plot log omega against depth with the theta fit (needs matplotlib); see
        :func:`streamtopo.report.plot_depth_profile`, which draws it."""
        from ..report import plot_depth_profile

        return plot_depth_profile(self, ax)

    # -- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict plus numpy arrays (no pickle needed)."""
        layers = {}
        for name, p in self.profiles_.items():
            d = {
                "kind": p.kind,
                "thresholds": p.thresholds.copy(),
                "betti0": p.betti0.copy(),
                "area": p.area.copy(),
                "total_persistence": p.total_persistence.copy(),
            }
            for key, curve in (("betti1", p.betti1), ("betti2", p.betti2)):
                if curve is not None:
                    d[key] = curve.copy()
            layers[name] = d
        return {
            "layer_names": list(self.layer_names),
            "config": dict(self.config),
            "step": self.step_,
            "layers": layers,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; raises (leaving this object unchanged) on mismatch."""
        try:
            names = list(state["layer_names"])
            step = int(state["step"])
            layers = dict(state["layers"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"state is not a DepthProfile state_dict: {exc!r}") from None
        if names != list(self.layer_names):
            raise InputError(f"state has layer_names {names}, expected {list(self.layer_names)}")
        profiles = {}
        for name, d in layers.items():
            if name not in self.layer_names:
                raise InputError(f"state has unknown layer {name!r}")
            try:
                b1 = d.get("betti1")
                b2 = d.get("betti2")
                prof = LayerProfile(
                    str(d["kind"]),
                    np.array(d["thresholds"], dtype=np.float64),
                    np.array(d["betti0"], dtype=np.float64),
                    None if b1 is None else np.array(b1, dtype=np.float64),
                    np.array(d["area"], dtype=np.float64),
                    np.array(d["total_persistence"], dtype=np.float64),
                    None if b2 is None else np.array(b2, dtype=np.float64),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(f"state for layer {name!r} is malformed: {exc!r}") from None
            n, T = prof.area.shape[0], prof.thresholds.shape[0]
            shapes_ok = (
                prof.kind in KINDS
                and prof.area.ndim == 1
                and prof.betti0.shape == (n, T)
                and (prof.betti1 is None or prof.betti1.shape == (n, T))
                and (prof.betti2 is None or prof.betti2.shape == (n, T))
                and prof.total_persistence.shape == (n,)
            )
            if not shapes_ok:
                raise InputError(f"state for layer {name!r} has inconsistent shapes or kind")
            profiles[name] = prof
        config = check_profile_config(dict(state.get("config", self.config)))
        self.step_ = step
        self.profiles_ = profiles
        self.config = config
