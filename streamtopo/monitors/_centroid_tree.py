"""The merge structure of class centroids as plain functions over explicit arguments:
confusion pairs, dendrogram text and the merge-order history table (CentroidMonitor's
read-only results are thin methods over these)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..topology import MergeEdges

__all__ = ["dendrogram_text", "merge_history_frame", "pairs_in_merge_order"]


def pairs_in_merge_order(
    edges: MergeEdges, idx: np.ndarray, class_names: Sequence[str], k: int | None = None
) -> list[tuple[str, str, float]]:
    """``(a, b, distance)`` for the first ``k`` tree edges (all when None); leaf ``t`` is class
    ``idx[t]``, and each pair is named in class order."""
    n = edges.i.shape[0] if k is None else min(k, edges.i.shape[0])
    out = []
    for r in range(n):
        a, b = sorted((int(idx[edges.i[r]]), int(idx[edges.j[r]])))
        out.append((class_names[a], class_names[b], float(edges.death[r])))
    return out


def dendrogram_text(pairs: Sequence[tuple[str, str, float]]) -> str:
    """Lines ``d=0.0312 -> [Shirt, Tshirt]`` (seed 004's format)."""
    return "\n".join(f"d={w:.4f} -> [{a}, {b}]" for a, b, w in pairs)


def merge_history_frame(
    history: Sequence[tuple[int, int, int, int, float]], class_names: Sequence[str]
) -> Any:
    """polars DataFrame of merge records ``(step, a, b, rank, distance)`` with class names."""
    import polars as pl

    a = [class_names[r[1]] for r in history]
    b = [class_names[r[2]] for r in history]
    return pl.DataFrame(
        {
            "step": pl.Series([r[0] for r in history], dtype=pl.Int64),
            "class_a": pl.Series(a, dtype=pl.String),
            "class_b": pl.Series(b, dtype=pl.String),
            "pair": pl.Series([f"{x}-{y}" for x, y in zip(a, b, strict=True)], dtype=pl.String),
            "rank": pl.Series([r[3] for r in history], dtype=pl.Int64),
            "distance": pl.Series([r[4] for r in history], dtype=pl.Float64),
        }
    )
