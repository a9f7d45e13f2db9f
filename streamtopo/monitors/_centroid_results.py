"""Read-only merge-structure results of CentroidMonitor (confusion pairs, linkage,
dendrogram text, merge-order history), as a mixin over the monitor's last-check snapshot."""

from __future__ import annotations

import numpy as np

from .._validation import check_choice, check_positive_int
from ..errors import InputError
from ..topology import MergeEdges
from ..topology import centroid as stats

__all__ = ["CentroidResults"]

_SPLITS = ("train", "test")


class CentroidResults:
    """Needs ``class_names``, ``metric``, ``precision``, ``_snap`` (``idx`` and per-split
    centroid sums of the last check), ``_trees`` (per-split MergeEdges) and ``_history``."""

    class_names: tuple[str, ...]
    metric: str
    precision: str
    _snap: dict[str, np.ndarray]
    _trees: dict[str, MergeEdges]
    _history: list[tuple[int, int, int, int, float]]

    def _edges(self, split: str) -> tuple[MergeEdges, np.ndarray]:
        check_choice(split, "split", _SPLITS)
        if not self._snap:
            raise InputError("no valid check yet: confusion pairs need a check() with >= 2 classes")
        if split not in self._trees:  # the all-train tree is built lazily (history != "train")
            tree = stats.centroid_tree(
                self._snap[split], metric=self.metric, precision=self.precision
            )
            self._trees[split] = tree.edges
        return self._trees[split], self._snap["idx"]

    def confusion_pairs(
        self, split: str = "train", k: int | None = None
    ) -> list[tuple[str, str, float]]:
        """Class pairs joined by the last check's MST, in merge order: ``(a, b, distance)``.

        The first pairs are the classes whose centroids are closest — candidates for confusion.
        ``k`` keeps the first k. ``split="train"`` uses all train rows.
        """
        e, idx = self._edges(split)
        n = e.i.shape[0] if k is None else min(check_positive_int(k, "k", minimum=0), e.i.shape[0])
        out = []
        for r in range(n):
            a, b = sorted((int(idx[e.i[r]]), int(idx[e.j[r]])))
            out.append((self.class_names[a], self.class_names[b], float(e.death[r])))
        return out

    def linkage(self, split: str = "train") -> np.ndarray:
        """Single-linkage matrix in scipy's format over the classes of the last check
        (leaf ``t`` is class ``linkage_classes_[t]``); heights are the H0 deaths."""
        from .._kernels.unionfind import single_linkage_from_sorted

        e, idx = self._edges(split)
        return single_linkage_from_sorted(idx.shape[0], e.i, e.j, e.death)

    @property
    def linkage_classes_(self) -> tuple[str, ...]:
        """Names of the leaves of :meth:`linkage` (classes present at the last check)."""
        return tuple(self.class_names[c] for c in self._snap.get("idx", []))

    def dendrogram_text(self, split: str = "train") -> str:
        """The merge tree as lines ``d=0.0312 -> [Shirt, Tshirt]`` (seed 004's format)."""
        return "\n".join(f"d={w:.4f} -> [{a}, {b}]" for a, b, w in self.confusion_pairs(split))

    def merge_order_history(self):
        """polars DataFrame of every recorded merge: step, class_a, class_b, pair, rank
        (0 = first merge), distance — to see when two classes start to merge."""
        import polars as pl

        h = self._history
        a = [self.class_names[r[1]] for r in h]
        b = [self.class_names[r[2]] for r in h]
        return pl.DataFrame(
            {
                "step": pl.Series([r[0] for r in h], dtype=pl.Int64),
                "class_a": pl.Series(a, dtype=pl.String),
                "class_b": pl.Series(b, dtype=pl.String),
                "pair": pl.Series([f"{x}-{y}" for x, y in zip(a, b, strict=True)], dtype=pl.String),
                "rank": pl.Series([r[3] for r in h], dtype=pl.Int64),
                "distance": pl.Series([r[4] for r in h], dtype=pl.Float64),
            }
        )

    def centroids_(self, split: str = "train") -> np.ndarray:
        """Unit centroid directions of the last check (rows follow ``linkage_classes_``)."""
        check_choice(split, "split", _SPLITS)
        if not self._snap:
            raise InputError("no valid check yet")
        return stats.unit_rows(self._snap[split])
