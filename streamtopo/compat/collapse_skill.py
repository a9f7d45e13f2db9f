"""Seed 000's collapse-monitoring skill as drop-ins, as thin layers over streamtopo.

Names and signatures are the skill file's. What is exact and what differs:

* :func:`compute_collapse_index` is :func:`streamtopo.collapse_index` with
  ``variant="seed000"`` — the skill's arithmetic operation for operation (weights 0.3/0.3/0.2/0.2,
  each component clipped to [0, 10] / 10, H1 of the first <= 500 rows); it returns the skill's
  ``(ci, components)`` with the skill's component keys only. The skill's own code cannot run
  as written: it reads ripser's result under ``"diagrams"`` (ripser's key is ``"dgms"``).
  Measured on digits (issue 12): this form is bounded at 0.55 by its own arithmetic, so the
  skill's 0.7 threshold can never fire; :class:`streamtopo.CollapseMonitor`'s default is the one
  to use for decisions.
* :func:`compute_persistence` returns ripser's list of diagrams ``[H0, H1]``: H0 from
  :func:`streamtopo.h0_diagram` (float64; ripser's are float32) without zero-length bars, as
  ripser reports them; H1 from ripser on the same distances. ``threshold`` has the skill's
  meaning (distances clamped at it): H0 deaths become ``min(death, threshold)``, H1 keeps the
  bars born below it with ``min(death, threshold)``.
* :class:`MorseHomologyMonitor` runs :class:`streamtopo.MorseMonitor`. **Dimension 0 is exact and
  incremental**: ``update`` repairs the minimum spanning tree locally and the H0 diagram
  equals a from-scratch computation exactly. ``current_matching`` is a discrete gradient
  (Morse matching) of the minimum spanning forest at ``scale``: each tree is rooted at its
  smallest vertex and every other vertex is matched with its forest edge toward the root,
  stored as vertex -> that edge's other end; ``critical_cells`` are the roots (beta0 at
  ``scale`` of them). The persistence (elder-rule) pairing is ``monitor_.pairs_``.
  **Dimension 1 is exact but not incremental**: with ``max_dim=1``, ``birth_death_pairs[1]``
  is recomputed from scratch by ripser when read. The skill's own matching is a greedy
  placeholder that is not a Morse matching of anything (a vertex can be matched to an edge it
  is not on, and matched pairs are never removed).
* :class:`CollapseMonitor` keeps the skill's rule (COLLAPSE when at least 3 checks exist and the
  CI is above ``threshold`` and above the previous one) on
  :class:`streamtopo.CollapseMonitor` (``mode="seed"``, ``variant="seed000"``), the skill's
  ``history`` dicts, sticky ``is_collapsing``, ``collapse_epoch`` (the latest) and its markdown
  report. Differences: ``epoch`` must increase between checks, and ``get_embeddings_snapshot``
  puts the model back into training mode if it was in it (the skill leaves it in eval mode,
  which silently turns dropout off for the rest of training).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import streamtopo as st
from streamtopo.errors import InputError, InputTypeError

__all__ = [
    "CollapseMonitor",
    "MorseHomologyMonitor",
    "compute_collapse_index",
    "compute_persistence",
    "get_embeddings_snapshot",
    "normalize_component",
    "persistence_lifetime",
]

#: The skill's component keys, in its order.
SEED_COMPONENTS = ("anisotropy", "dim_ratio", "persistence_entropy", "fisher_ratio")


def get_embeddings_snapshot(
    model: Any, dataloader: Any, device: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate embeddings ``model.get_features(X)`` and labels of every batch ``(X, y)``
    of ``dataloader``, concatenated (no grad, eval mode; the previous mode is restored)."""
    import torch

    if not callable(getattr(model, "get_features", None)):
        raise InputTypeError(
            "model must have a get_features(x) method returning the penultimate embeddings "
            f"(seed 000's contract), got {type(model).__name__} without one"
        )
    was_training = bool(getattr(model, "training", False))
    model.eval()
    embeddings, labels = [], []
    try:
        with torch.no_grad():
            for b, batch in enumerate(dataloader):
                if not (isinstance(batch, (tuple, list)) and len(batch) >= 2):
                    raise InputTypeError(
                        f"dataloader batch {b} must be an (inputs, labels) pair, got "
                        f"{type(batch).__name__}"
                    )
                batch_X, batch_y = batch[0].to(device), batch[1]
                emb = model.get_features(batch_X)
                embeddings.append(emb.detach().cpu().numpy())
                labels.append(
                    np.asarray(batch_y.cpu().numpy() if hasattr(batch_y, "cpu") else batch_y)
                )
    finally:
        if was_training:
            model.train()
    if not embeddings:
        raise InputError("dataloader yielded no batches")
    return np.concatenate(embeddings, axis=0), np.concatenate(labels, axis=0)


def compute_persistence(
    embeddings: Any, max_dim: int = 1, threshold: float | None = None
) -> list[np.ndarray]:
    """Persistence diagrams ``[H0, H1]`` (``[H0]`` for ``max_dim=0``) of the Euclidean Rips
    filtration of ``embeddings``, in ripser's format (``(k, 2)`` float arrays, H0's essential bar
    ``(0, inf)`` last).

    Examples
    --------
    >>> t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    >>> dgms = compute_persistence(np.c_[np.cos(t), np.sin(t)])
    >>> len(dgms), dgms[0].shape, dgms[1].round(3)
    (2, (12, 2), array([[0.518, 1.732]]))
    >>> compute_persistence(np.c_[np.cos(t), np.sin(t)], threshold=1.0)[1].round(3)
    array([[0.518, 1.   ]])
    """
    if isinstance(max_dim, bool) or max_dim not in (0, 1):
        raise InputError(f"max_dim must be 0 or 1 (H0 and H1 are supported), got {max_dim!r}")
    t = None
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(
            threshold, (int, float, np.integer, np.floating)
        ):
            raise InputTypeError(
                f"threshold must be a number or None, got {type(threshold).__name__}"
            )
        t = float(threshold)
        if not (t > 0.0 and math.isfinite(t)):
            raise InputError(f"threshold must be a finite number > 0, got {threshold!r}")
    h0 = st.h0_diagram(embeddings)
    if t is not None:
        h0[:-1, 1] = np.minimum(h0[:-1, 1], t)
    h0 = h0[h0[:, 1] > h0[:, 0]]  # ripser leaves out zero-length bars
    out = [h0]
    if max_dim == 1:
        h1 = st.h1_diagram(embeddings, max_points=None)
        if t is not None:
            h1 = h1[h1[:, 0] < t]
            h1[:, 1] = np.minimum(h1[:, 1], t)
            h1 = h1[h1[:, 1] > h1[:, 0]]
        out.append(h1)
    return out


def persistence_lifetime(diagram: Any, dim: int = 1) -> np.ndarray:
    """Lifetimes ``death - birth`` of the finite bars of ``diagram[dim]`` (empty if none).

    Examples
    --------
    >>> persistence_lifetime([np.array([[0.0, 1.0], [0.0, np.inf]]), np.array([[0.5, 0.75]])])
    array([0.25])
    >>> persistence_lifetime([np.array([[0.0, 1.0], [0.0, np.inf]])], dim=0)
    array([1.])
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 0:
        raise InputError(f"dim must be an integer >= 0, got {dim!r}")
    if dim >= len(diagram) or len(diagram[dim]) == 0:
        return np.array([])
    d = np.asarray(diagram[dim], dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != 2:
        raise InputError(f"diagram[{dim}] must have shape (k, 2), got {d.shape}")
    finite = np.isfinite(d[:, 1])
    return d[finite, 1] - d[finite, 0]


def normalize_component(value: Any, ref_min: float = 0.0, ref_max: float = 10.0) -> Any:
    """The skill's normalisation ``clip((value - ref_min) / (ref_max - ref_min + 1e-10), 0, 1)``.

    Examples
    --------
    >>> round(float(normalize_component(2.5)), 9), float(normalize_component(28.0))
    (0.25, 1.0)
    """
    return np.clip((value - ref_min) / (ref_max - ref_min + 1e-10), 0, 1)


def compute_collapse_index(embeddings: Any, labels: Any = None) -> tuple[float, dict[str, float]]:
    """The skill's Collapse Index and its raw components (keys from ``SEED_COMPONENTS``).

    Examples
    --------
    >>> X = np.random.default_rng(0).normal(size=(300, 8))
    >>> ci, comps = compute_collapse_index(X)
    >>> round(ci, 2), sorted(comps)
    (0.14, ['anisotropy', 'dim_ratio', 'persistence_entropy'])
    """
    ci, comp = st.collapse_index(embeddings, labels, variant="seed000")
    return float(ci), {k: float(comp[k]) for k in SEED_COMPONENTS if k in comp}


class MorseHomologyMonitor:
    """The skill's incremental Morse homology monitor over :class:`streamtopo.MorseMonitor`
    (module docstring: dimension 0 exact and incremental, dimension 1 exact, recomputed).

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [0.3, 0.0], [2.0, 0.0], [2.4, 0.0]])
    >>> mon = MorseHomologyMonitor(scale=0.5)
    >>> mon.initialize(X)
    >>> mon.current_matching, sorted(mon.critical_cells)
    ({1: 0, 3: 2}, [0, 2])
    >>> Y = X.copy(); Y[2] = [0.6, 0.0]
    >>> mon.update(Y, X)
    >>> mon.current_matching, sorted(mon.critical_cells), mon.birth_death_pairs[0][:, 1].tolist()
    ({1: 0, 2: 1}, [0, 3], [0.3, 0.3, 1.7999999999999998, inf])
    """

    def __init__(self, scale: float = 0.5, max_dim: int = 1) -> None:
        if isinstance(max_dim, bool) or max_dim not in (0, 1):
            raise InputError(f"max_dim must be 0 or 1, got {max_dim!r}")
        self.scale = scale
        self.max_dim = int(max_dim)
        self.monitor_ = st.MorseMonitor(scale=scale, change_threshold=0.01)
        self.current_matching: dict[int, int] | None = None
        self.critical_cells: set[int] = set()
        self.current_embeddings: np.ndarray | None = None
        self.changed_: np.ndarray | None = None
        self._h1: np.ndarray | None = None

    def initialize(self, embeddings: Any) -> None:
        """Build the tree, the pairing and the diagram of the first snapshot."""
        self.monitor_.initialize(embeddings)
        self.current_embeddings = np.array(embeddings, dtype=np.float64, copy=True)
        self._derive()

    def update(self, new_embeddings: Any, old_embeddings: Any) -> None:
        """Repair the pairing for the rows that moved; ``changed_`` marks the rows that moved by
        more than 0.01 between ``old_embeddings`` and ``new_embeddings`` (the skill's test).
        Every row that moved at all is repaired, so the result is exact."""
        if self.current_embeddings is None:
            raise InputError("update() before initialize(): call initialize(embeddings) first")
        new = np.asarray(new_embeddings, dtype=np.float64)
        old = np.asarray(old_embeddings, dtype=np.float64)
        if new.shape != old.shape or new.shape != self.current_embeddings.shape:
            raise InputError(
                f"new_embeddings {new.shape} and old_embeddings {old.shape} must both have the "
                f"shape of the tracked embeddings {self.current_embeddings.shape}"
            )
        changed = np.linalg.norm(new - old, axis=1) > 0.01
        self.monitor_.update(new)
        self.changed_ = changed
        self.current_embeddings = new.copy()
        self._derive()

    def _derive(self) -> None:
        # the spanning forest at the scale, each tree rooted at its smallest vertex (the elder
        # rule's survivor); every other vertex is matched with its edge toward the root
        p = self.monitor_.pairs_
        scale = self.monitor_.scale_
        n = self.monitor_.n_points
        adj: dict[int, list[int]] = {}
        for i, j, w in zip(p.i, p.j, p.death, strict=True):
            if w <= scale:
                adj.setdefault(int(i), []).append(int(j))
                adj.setdefault(int(j), []).append(int(i))
        matching: dict[int, int] = {}
        roots = set()
        for r in range(n):
            if r in matching or r in roots:
                continue
            roots.add(r)  # r is the smallest vertex of a tree not seen yet
            stack = [r]
            while stack:
                u = stack.pop()
                for v in adj.get(u, ()):
                    if v != r and v not in matching:
                        matching[v] = u
                        stack.append(v)
        self.current_matching = matching
        self.critical_cells = roots
        self._h1 = None

    @property
    def birth_death_pairs(self) -> dict[int, np.ndarray]:
        """``{0: H0 diagram (incremental, exact)}``, plus ``{1: H1 diagram}`` (ripser, from
        scratch) when ``max_dim=1``; empty before :meth:`initialize`."""
        if self.current_embeddings is None:
            return {}
        out = {0: self.monitor_.diagram_}
        if self.max_dim >= 1:
            if self._h1 is None:
                self._h1 = st.h1_diagram(self.current_embeddings, max_points=None)
            out[1] = self._h1
        return out


class CollapseMonitor:
    """The skill's training-loop monitor: the seed000 Collapse Index every ``check_every``
    epochs and its "above threshold and rising" rule.

    Examples
    --------
    >>> mon = CollapseMonitor(check_every=5, threshold=0.7)
    >>> mon.get_report()
    'No monitoring data yet.'
    """

    def __init__(self, check_every: int = 5, threshold: float = 0.7) -> None:
        self.monitor_ = st.CollapseMonitor(
            check_every=check_every, threshold=threshold, variant="seed000", mode="seed"
        )
        self.check_every = self.monitor_.check_every
        self.threshold = float(threshold)
        self.history: list[dict[str, Any]] = []
        self.morse_monitor = MorseHomologyMonitor(scale=0.5)
        self.is_collapsing = False
        self.collapse_epoch: int | None = None

    def check(self, model: Any, dataloader: Any, epoch: int, device: Any) -> float | None:
        """The CI at this epoch (None when ``epoch`` is not a multiple of ``check_every``)."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise InputTypeError(f"epoch must be an integer, got {type(epoch).__name__} {epoch!r}")
        if epoch % self.check_every != 0:
            return None
        embeddings, labels = get_embeddings_snapshot(model, dataloader, device)
        return self.check_embeddings(embeddings, labels, epoch)

    def check_embeddings(self, embeddings: Any, labels: Any, epoch: int) -> float | None:
        """:meth:`check` on embeddings already extracted (no torch needed)."""
        if epoch % self.check_every != 0:
            return None
        ci, components = compute_collapse_index(embeddings, labels)
        status = self.monitor_.check(ci=ci, components=components, step=int(epoch))
        self.history.append({"epoch": int(epoch), "collapse_index": ci, "components": components})
        if status.state == st.State.COLLAPSE:
            self.is_collapsing = True
            self.collapse_epoch = int(epoch)
            print(f"⚠️ COLLAPSE DETECTED at epoch {epoch}! CI={ci:.4f}")
        return ci

    def get_report(self) -> str:
        """The skill's markdown table (Epoch, Collapse Index, Status by ``ci > threshold``)."""
        if not self.history:
            return "No monitoring data yet."
        report = "## Collapse Monitor Report\n\n"
        report += "| Epoch | Collapse Index | Status |\n"
        report += "|-------|---------------|--------|\n"
        for h in self.history:
            status = "⚠️ COLLAPSE" if h["collapse_index"] > self.threshold else "✅ OK"
            report += f"| {h['epoch']} | {h['collapse_index']:.4f} | {status} |\n"
        return report
