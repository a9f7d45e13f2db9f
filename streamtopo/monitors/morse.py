"""MorseMonitor: H0 of a fixed set of points kept exact under sparse edits (incremental Morse
pairing, MMHM).

Rows are identities (fixed probe samples, class centroids). Between updates only some rows move;
the minimum spanning tree is repaired locally (``streamtopo._kernels.incremental``) instead of
rebuilt, and the result equals a from-scratch computation exactly: same deaths multiset, same
β0 at the scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .._validation import as_float_matrix, check_choice, describe
from ..alarms import State
from ..errors import InputError, InputTypeError, StreamtopoError
from ..topology.h0 import mst_unsorted, pow2_scale, prepare_points
from ._base import Monitor
from ._status import MonitorStatus

__all__ = ["MorseMonitor", "MorsePairs", "MorseStatus"]

_METRICS = ("euclidean", "cosine")
# Rows sampled for the default scale (median pairwise distance) when n is larger than this.
_SCALE_SAMPLE = 2048
# Keep the exact count of edges within the scale up to date only while the moved rows are at
# most this fraction of n (2kn distance evaluations); past it the count is recomputed lazily.
_EDGE_COUNT_FRACTION = 1 / 8


class MorsePairs(NamedTuple):
    """The H0 gradient pairing in merge order: ``vertex[e]`` is born at 0 and killed by the tree
    edge ``(i[e], j[e])`` at ``death[e]`` (elder rule: the component with the smaller vertex id
    survives). The vertex missing from ``vertex`` (0) is the one essential class."""

    vertex: np.ndarray
    i: np.ndarray
    j: np.ndarray
    death: np.ndarray


@dataclass(frozen=True, slots=True)
class MorseStatus(MonitorStatus):
    """What :meth:`MorseMonitor.check` reports after moving the points.

    MorseMonitor has no alarm rule (it keeps H0 exact; a rule on ``h0`` belongs to the monitor
    that reads it), so ``state`` is always HEALTHY and ``reason`` says what changed.
    ``changed`` is seed 000's significant-change flag (see ``change_threshold``), ``moved_rows``
    the rows repaired this step and ``fell_back`` whether the tree was rebuilt instead.
    """

    kind: ClassVar[str] = "morse"

    h0: float = math.nan
    betti0: int = 0
    n_points: int = 0
    changed: bool = False
    moved_rows: int = 0
    fell_back: bool = False


def _nonneg(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputTypeError(f"{name} must be a non-negative number, got {describe(value)}")
    v = float(value)
    if not (math.isfinite(v) and v >= 0.0):
        raise InputError(f"{name} must be a finite non-negative number, got {value!r}")
    return v


class MorseMonitor(Monitor):
    """H0 persistence of n tracked points, repaired incrementally when a few rows move.

    ``initialize(X)`` builds the minimum spanning tree (the H0 deaths) and the discrete gradient
    pairing at a fixed ``scale``; ``update(X_new)`` finds the rows that changed, removes their
    tree edges, and reconnects the pieces from the surviving edges, the moved rows' edges to
    every point, and the between-piece edges that the old tree cannot rule out (see
    ``streamtopo._kernels.incremental`` for the proof of exactness). The result is bitwise the
    same deaths multiset and β0 as a from-scratch :func:`streamtopo.h0_diagram`.

    Parameters
    ----------
    scale : float, optional
        ε of the Rips 1-skeleton for ``betti0_`` and ``critical_edges_``. ``None`` takes the
        median pairwise distance of the first snapshot (over a fixed sample of 2048 rows when n
        is larger; seed 002's heuristic) and records it in ``scale_``.
    change_threshold : float, default 0.01
        Seed 000's "significant change" threshold, used only for reporting: ``changed_`` is True
        when an update moved some sorted death by more than this (an upper bound of the
        bottleneck distance between successive diagrams) or changed β0. It never decides what
        is recomputed: with ``tolerance=0`` every row whose coordinates changed is repaired.
    tolerance : float, default 0.0
        δ. Rows whose displacement is at most δ keep their stored coordinates (they are not
        re-examined); a skipped row is compared against its stored coordinates next time, so
        drift never accumulates past δ. Every pairwise distance is then off by at most 2δ, and
        because the k-th smallest MST weight is 1-Lipschitz in the distances, **the bottleneck
        distance between the reported diagram and the exact diagram of the latest input is at
        most 2δ**. For ``metric="cosine"`` a row's displacement is ``2 * |u' - u|`` on unit
        rows, which bounds the change of its cosine distance to any other row, so the same 2δ
        bound holds. ``tolerance=0`` is exact.
    metric : {"euclidean", "cosine"}
        Cosine distance is ``1 - cos`` computed as ``|u - v|^2 / 2`` on unit rows, as in
        :mod:`streamtopo.topology`.
    rebuild_fraction : float, default 0.5
        Fallback rule: a repair that would need more than ``rebuild_fraction * n(n-1)/2`` distance
        evaluations (a full rebuild's count) is abandoned and the tree rebuilt from scratch.
        Work is charged before it is done, in three stages (the moved rows' edges, the tables
        for the pieces, the between-piece pairs; bookkeeping steps count as a fraction
        ``8/d`` of an evaluation, measured), and the first two may use a quarter and an
        eighth of the budget, so an abandoned repair has spent at most 3/8 of it (under a fifth
        of a rebuild at the default) and an update is never much slower than a rebuild. More
        than about n/10 moved rows rebuild at once. A change of the power-of-two scale
        the Euclidean kernel divides by (the largest absolute coordinate crossing a power of
        two) also rebuilds,
        because keys would no longer compare bitwise. ``float("inf")`` never falls back on work.
    writer : callable, optional
        Called after every ``initialize``/``update``/``add_points``/``remove_points`` with a plain
        dict row (``"monitor": "morse"``, scalar columns, ``"config"``).
    name : str, optional
        The monitor's identity in the run log ([a-z0-9_], at most 32 characters): its rows go
        to table ``morse.<name>`` instead of ``morse`` (e.g. ``"eval"`` beside a train monitor
        on the same writer, which refuses two unnamed monitors of one kind).

    Attributes
    ----------
    diagram_ : ndarray (n, 2)
        H0 diagram in ripser's format (births 0, deaths ascending, ``(0, inf)`` last).
    betti0_ : int
        Components of the Rips graph at ``scale_`` (edges with distance <= scale).
    pairs_ : MorsePairs
        The gradient pairing (vertex, killing edge) in merge order.
    critical_edges_ : int
        Edges within ``scale_`` that close a cycle (unpaired 1-cells of the 1-skeleton).
    stats_ : dict
        Last operation: ``moved_rows``, ``edges_examined`` (distance evaluations), ``pieces``
        (components after removing the moved rows' tree edges), ``piece_pairs`` (pairs of
        pieces whose between edges were evaluated), ``fell_back`` and ``reason``.

    Verbs: :meth:`check` (move the rows, return a :class:`MorseStatus`) is the per-step
    entry; :meth:`initialize`, :meth:`update`, :meth:`add_points` and :meth:`remove_points`
    feed points without a status (they return the monitor, for chaining). ``step_`` is the
    number of edits since :meth:`initialize` (0 after it), the ``step`` of the last row.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0], [6.0, 0.0]])
    >>> mon = MorseMonitor(scale=2.0)
    >>> mon.initialize(X).betti0_
    2
    >>> X[3] = [3.0, 0.0]                      # one row moves between the two pairs
    >>> mon.update(X).diagram_[:, 1].tolist()
    [1.0, 2.0, 2.0, inf]
    >>> mon.betti0_, mon.stats_["moved_rows"]
    (1, 1)
    >>> s = mon.check(X + [0.0, 0.5])            # every row moves: the same H0
    >>> s.step, s.h0, s.betti0, s.moved_rows
    (2, 5.0, 1, 4)
    """

    kind = "morse"
    _config_keys = ("scale", "change_threshold", "tolerance", "metric", "rebuild_fraction")
    _state_ = ("scale_", "_P", "_pow2", "_tree_state", "_n_edges", "changed_", "stats_")
    _last: MorseStatus | None

    def __init__(
        self,
        scale: float | None = None,
        change_threshold: float = 0.01,
        tolerance: float = 0.0,
        metric: str = "euclidean",
        *,
        rebuild_fraction: float = 0.5,
        writer: Callable[[dict[str, Any]], Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.scale = _nonneg(scale, "scale", allow_none=True)
        self.change_threshold = _nonneg(change_threshold, "change_threshold")
        self.tolerance = _nonneg(tolerance, "tolerance")
        self.metric = check_choice(metric, "metric", _METRICS)
        if isinstance(rebuild_fraction, bool) or not isinstance(
            rebuild_fraction, (int, float, np.integer, np.floating)
        ):
            raise InputTypeError(
                f"rebuild_fraction must be a positive number, got {describe(rebuild_fraction)}"
            )
        if not float(rebuild_fraction) > 0.0:
            raise InputError(f"rebuild_fraction must be > 0, got {rebuild_fraction!r}")
        self.rebuild_fraction = float(rebuild_fraction)
        self._attach(writer, name)
        self.reset()

    # ----------------------------------------------------------------- state
    def _init_state(self) -> None:
        self.scale_: float | None = self.scale
        self._P: np.ndarray | None = None  # effective prepared points (unit rows for cosine)
        self._Q: np.ndarray | None = None  # what the kernels read: P / pow2 (Euclidean, d > 1)
        self._pow2 = 1.0
        self._src = np.empty(0, dtype=np.int64)
        self._dst = np.empty(0, dtype=np.int64)
        self._key = np.empty(0, dtype=np.float64)
        self._n_edges: int | None = None
        self.changed_ = False
        self.stats_: dict[str, Any] = {}
        self._derive(None)

    def reset(self) -> MorseMonitor:  # type: ignore[override]
        """Forget every point; the monitor is as freshly constructed."""
        super().reset()
        return self

    def load_state_dict(self, state: Mapping[str, Any]) -> MorseMonitor:  # type: ignore[override]
        """Restore from :meth:`state_dict` (same configuration); validated before any change."""
        super().load_state_dict(state)
        return self

    @property
    def _tree_state(self) -> dict[str, np.ndarray]:
        """The spanning tree's edges (variable length, so stored as one tagged dict)."""
        return {"src": self._src, "dst": self._dst, "key": self._key}

    @_tree_state.setter
    def _tree_state(self, tree: Mapping[str, Any]) -> None:
        self._src = np.asarray(tree["src"], dtype=np.int64).copy()
        self._dst = np.asarray(tree["dst"], dtype=np.int64).copy()
        self._key = np.asarray(tree["key"], dtype=np.float64).copy()

    def _after_load(self) -> None:
        src, dst, key = self._src, self._dst, self._key
        if self._P is not None:
            self._P = as_float_matrix(self._P, "state['points']").copy()
            n = self._P.shape[0]
            ok = src.shape == dst.shape == key.shape == (n - 1,)
            in_range = n < 2 or (min(src.min(), dst.min()) >= 0 and max(src.max(), dst.max()) < n)
            if not (ok and in_range):
                raise InputError(
                    f"state tree arrays must hold n - 1 = {n - 1} edges over {n} points, got "
                    f"{describe(src)}, {describe(dst)}, {describe(key)}"
                )
        self.scale_ = None if self.scale_ is None else float(self.scale_)
        self._pow2 = float(self._pow2)
        self._Q = None if self._P is None else self._scaled(self._P, self._pow2)
        self._derive(None)

    # -------------------------------------------------------------- helpers
    @property
    def n_points(self) -> int:
        return 0 if self._P is None else int(self._P.shape[0])

    def _modes(self, d: int) -> tuple[bool, bool, float]:
        """(absdiff, sqrt_mode, mul) matching ``topology.mst_unsorted`` for this metric and d."""
        if self.metric == "cosine":
            return False, False, 0.5
        if d == 1:
            return True, False, 1.0
        return False, True, self._pow2

    def _pow2_for(self, P: np.ndarray) -> float:
        return pow2_scale(P) if self.metric == "euclidean" and P.shape[1] > 1 else 1.0

    @staticmethod
    def _scaled(P: np.ndarray, pow2: float) -> np.ndarray:
        return P / pow2 if pow2 != 1.0 else P

    def _require_init(self) -> np.ndarray:
        if self._P is None:
            raise StreamtopoError("MorseMonitor has no points: call initialize(X) first")
        return self._P

    def _weights(self, key: np.ndarray) -> np.ndarray:
        """Death times from keys, with the same numpy operations as ``mst_unsorted``."""
        w = key.copy()
        _, sqrt_mode, mul = self._modes(self._P.shape[1]) if self._P is not None else (0, 0, 1)
        if sqrt_mode:
            np.sqrt(w, out=w)
            w *= mul
        elif mul != 1.0:
            w *= mul
        return w

    def _derive(self, old_sorted: np.ndarray | None) -> None:
        """Recompute the cached read-only results from the tree."""
        w = self._weights(self._key)
        order = np.argsort(w, kind="stable")
        self._merge = (self._src[order], self._dst[order], w[order])
        if old_sorted is not None:
            new_sorted = self._merge[2]
            moved = old_sorted.shape != new_sorted.shape or (
                new_sorted.size > 0
                and float(np.max(np.abs(new_sorted - old_sorted))) > self.change_threshold
            )
            old_b0 = self._betti0_value
            self._betti0_value = self._compute_betti0()
            self.changed_ = bool(moved or old_b0 != self._betti0_value)
        else:
            self._betti0_value = self._compute_betti0()
        self._pairs_cache: MorsePairs | None = None

    def _compute_betti0(self) -> int:
        if self._P is None or self.scale_ is None:
            return 0
        return int(self._P.shape[0] - np.count_nonzero(self._merge[2] <= self.scale_))

    def _rebuild(self, P: np.ndarray, pow2: float) -> None:
        from .._kernels.incremental import tree_keys

        src, dst, _ = mst_unsorted(P, self.metric)
        Q = self._scaled(P, pow2)
        key = np.empty(src.shape[0], dtype=np.float64)
        self._pow2 = pow2
        absdiff, _, _ = self._modes(P.shape[1])
        tree_keys(Q, src, dst, absdiff, key)
        self._P, self._Q = P, Q
        self._src, self._dst, self._key = src, dst, key

    def _count_touching(self, Q: np.ndarray, flags: np.ndarray, pow2: float) -> int:
        from .._kernels.incremental import count_within

        absdiff, sqrt_mode, mul = self._modes(Q.shape[1])
        if sqrt_mode:
            mul = pow2
        return int(count_within(Q, absdiff, sqrt_mode, mul, float(self.scale_), flags))

    def _write_row(self) -> None:
        self._emit(
            self._step,
            n_points=self.n_points,
            betti0=self.betti0_,
            h0=float(np.sum(self._merge[2])),
            changed=bool(self.changed_),
            moved_rows=int(self.stats_.get("moved_rows", 0)),
            edges_examined=int(self.stats_.get("edges_examined", 0)),
            fell_back=bool(self.stats_.get("fell_back", False)),
            scale=self.scale_,
        )

    def _default_scale(self, P: np.ndarray) -> float:
        n = P.shape[0]
        if n < 2:
            return 0.0
        if n > _SCALE_SAMPLE:
            idx = np.sort(np.random.default_rng(0).choice(n, size=_SCALE_SAMPLE, replace=False))
            P = P[idx]
        from scipy.spatial.distance import pdist

        if self.metric == "cosine":
            return float(np.median(pdist(P, "sqeuclidean")) / 2.0)
        return float(np.median(pdist(P)))

    # ------------------------------------------------------------ public API
    def initialize(self, X: Any) -> MorseMonitor:
        """Build the tree, the pairing and β0 from scratch for the points ``X`` (n, d)."""
        P = np.array(prepare_points(X, self.metric, name="X"), copy=True)  # never alias X
        scale_ = self.scale if self.scale is not None else self._default_scale(P)
        self.reset()
        self.scale_ = scale_
        n = P.shape[0]
        self._rebuild(P, self._pow2_for(P))
        self._n_edges = None
        self.stats_ = self._stats(n, n * (n - 1) // 2, n, 0, True, "initialize")
        self._derive(None)
        self._write_row()
        return self

    @staticmethod
    def _stats(moved, examined, pieces, pairs, fell_back, reason) -> dict[str, Any]:
        return {
            "moved_rows": int(moved),
            "edges_examined": int(examined),
            "pieces": int(pieces),
            "piece_pairs": int(pairs),
            "fell_back": bool(fell_back),
            "reason": reason,
        }

    def check(self, X: Any) -> MorseStatus:
        """Move the rows to ``X`` (the first call initialises) and report the new H0.

        Same errors as :meth:`update`, which leave the monitor unchanged.
        """
        if self._P is None:
            self.initialize(X)
        else:
            self.update(X)
        h0 = float(np.sum(self._merge[2]))
        moved = int(self.stats_.get("moved_rows", 0))
        why = f"h0 {h0:.6g}, beta0 {self._betti0_value} at scale {self.scale_:.6g}"
        why += f"; {moved} row(s) moved" + ("; significant change" if self.changed_ else "")
        status = MorseStatus(
            self._step,
            State.HEALTHY,
            why,
            h0=h0,
            betti0=self._betti0_value,
            n_points=self.n_points,
            changed=bool(self.changed_),
            moved_rows=moved,
            fell_back=bool(self.stats_.get("fell_back", False)),
        )
        self._last = status  # step_ is the number of edits: the status's step, not one past it
        return status

    def update(self, X_new: Any) -> MorseMonitor:
        """Take the new coordinates of the same n rows and repair the tree.

        Raises ``InputError`` (state unchanged) for a different number of rows or columns,
        NaN/inf, or a zero row with ``metric="cosine"``.
        """
        P_old = self._require_init()
        n, d = P_old.shape
        X = as_float_matrix(X_new, "X_new")
        if X.shape[0] != n:
            raise InputError(
                f"X_new has {X.shape[0]} rows, expected n={n} (use add_points/remove_points "
                "to change the set of points)"
            )
        if X.shape[1] != d:
            raise InputError(f"X_new has {X.shape[1]} columns, expected d={d}")
        P_new = prepare_points(X, self.metric, name="X_new")
        if self.tolerance == 0.0:
            moved = np.any(P_new != P_old, axis=1)
        else:
            disp = np.sqrt(np.einsum("ij,ij->i", P_new - P_old, P_new - P_old))
            if self.metric == "cosine":
                disp *= 2.0
            moved = disp > self.tolerance
        P = P_old.copy()
        P[moved] = P_new[moved]
        self._apply(P, moved, "move")
        return self

    def add_points(self, X_add: Any) -> MorseMonitor:
        """Append rows (new points get ids n, n+1, ...); repaired like moved rows."""
        P_old = self._require_init()
        X = as_float_matrix(X_add, "X_add")
        if X.shape[1] != P_old.shape[1]:
            raise InputError(f"X_add has {X.shape[1]} columns, expected d={P_old.shape[1]}")
        P_add = prepare_points(X, self.metric, name="X_add")
        P = np.concatenate([P_old, P_add])
        flags = np.zeros(P.shape[0], dtype=np.bool_)
        flags[P_old.shape[0] :] = True
        self._apply(P, flags, "add")
        return self

    def remove_points(self, indices: Any) -> MorseMonitor:
        """Delete rows by index; the remaining rows are renumbered in their old order."""
        P_old = self._require_init()
        n = P_old.shape[0]
        idx = np.asarray(indices)
        if idx.ndim == 0:
            idx = idx.reshape(1)
        if idx.size and (idx.dtype == np.bool_ or not np.issubdtype(idx.dtype, np.integer)):
            raise InputTypeError(f"indices must be integers, got {describe(idx)}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise InputError(
                f"indices must be in [-{n}, {n}), got min {idx.min()}, max {idx.max()}"
            )
        flags = np.zeros(n, dtype=np.bool_)
        flags[idx] = True
        if flags.all():
            raise InputError(f"indices would remove all {n} points; at least one must remain")
        self._apply(P_old, flags, "remove")
        return self

    def _apply(self, P: np.ndarray, flags: np.ndarray, kind: str) -> None:
        from .._kernels.incremental import msf_update

        old_sorted = self._merge[2].copy()
        old_Q, old_pow2 = self._Q, self._pow2
        n_all = P.shape[0]
        k = int(np.count_nonzero(flags))
        P_eff = P[~flags] if kind == "remove" else P
        n = P_eff.shape[0]
        pow2 = self._pow2_for(P_eff)
        n_edges = self._n_edges
        if n_edges is not None and (pow2 != old_pow2 or k > _EDGE_COUNT_FRACTION * n_all):
            n_edges = None
        if n_edges is not None and k:
            if kind == "move":
                Q_new = self._scaled(P, pow2)
                n_edges += self._count_touching(Q_new, flags, pow2)
                n_edges -= self._count_touching(old_Q, flags, pow2)
            elif kind == "add":
                n_edges += self._count_touching(self._scaled(P, pow2), flags, pow2)
            else:
                n_edges -= self._count_touching(old_Q, flags, pow2)

        if k == 0:
            stats = self._stats(0, 0, 1 if n else 0, 0, False, "")
        elif pow2 != old_pow2:
            self._rebuild(P_eff, pow2)
            stats = self._stats(k, n * (n - 1) // 2, 0, 0, True, "scale")
        else:
            # Unflagged rows of P / pow2 are bitwise the old ones (same elementwise division).
            Q = old_Q if kind == "remove" else self._scaled(P, pow2)
            absdiff, _, _ = self._modes(P.shape[1])
            out_src = np.empty(max(n_all - 1, 0), dtype=np.int64)
            out_dst = np.empty_like(out_src)
            out_key = np.empty(out_src.shape[0], dtype=np.float64)
            kstats = np.zeros(4, dtype=np.int64)
            budget = self.rebuild_fraction * (n * (n - 1) / 2.0)
            step_cost = 8.0 / P.shape[1]  # a tree-walk step ~ 1/8 of a distance in 64-D
            m = msf_update(Q, absdiff, kind == "remove", self._src, self._dst, self._key,
                           flags, budget, step_cost, out_src, out_dst, out_key, kstats)  # fmt: skip
            if m < 0:
                self._rebuild(P_eff, pow2)
                examined = int(kstats[0]) + n * (n - 1) // 2
                stats = self._stats(k, examined, kstats[1], 0, True, "work")
            else:
                src, dst = out_src[:m], out_dst[:m]
                if kind == "remove":
                    new_id = np.cumsum(~flags) - 1
                    src, dst = new_id[src], new_id[dst]
                    Q = self._scaled(P_eff, pow2)
                self._P, self._Q = P_eff, Q
                self._src, self._dst, self._key = src.copy(), dst.copy(), out_key[:m].copy()
                stats = self._stats(k, kstats[0], kstats[1], kstats[2], False, "")
        self._n_edges = n_edges
        self.stats_ = stats
        self._step += 1
        self._derive(old_sorted)
        self._write_row()

    # -------------------------------------------------------------- results
    @property
    def diagram_(self) -> np.ndarray:
        """H0 diagram, ripser format: (n, 2), births 0, deaths ascending, ``(0, inf)`` last."""
        self._require_init()
        deaths = self._merge[2]
        out = np.zeros((deaths.shape[0] + 1, 2), dtype=np.float64)
        out[:-1, 1] = deaths
        out[-1, 1] = np.inf
        return out

    @property
    def deaths_(self) -> np.ndarray:
        """Finite H0 deaths, ascending (a copy)."""
        self._require_init()
        return self._merge[2].copy()

    @property
    def betti0_(self) -> int:
        """Connected components of the Rips graph at ``scale_``."""
        self._require_init()
        return self._betti0_value

    @property
    def pairs_(self) -> MorsePairs:
        """Gradient pairing (vertex killed, killing edge, death) in merge order."""
        self._require_init()
        if self._pairs_cache is None:
            from .._kernels.incremental import gradient_pairs

            src, dst, w = self._merge
            vertex = np.empty(src.shape[0], dtype=np.int64)
            gradient_pairs(self.n_points, src, dst, vertex)
            self._pairs_cache = MorsePairs(vertex, src.copy(), dst.copy(), w.copy())
        return self._pairs_cache

    @property
    def critical_edges_(self) -> int:
        """Edges of length <= ``scale_`` that close a cycle: ``#edges(scale) - (n - betti0)``.

        The edge count is exact. It is computed from all pairs (O(n^2 d)) the first time it is
        read, then kept up to date from the moved rows' old and new distances while at most
        n/8 rows move per update; a larger edit (or a rescale) makes the next read recount.
        """
        P = self._require_init()
        if self._n_edges is None:
            self._n_edges = self._count_touching(
                self._Q, np.zeros(P.shape[0], np.bool_), self._pow2
            )
        return int(self._n_edges - (P.shape[0] - self._betti0_value))
