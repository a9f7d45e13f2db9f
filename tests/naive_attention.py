"""Naive attention twins: eager attention math written out, float64, no sampling tricks."""

from __future__ import annotations

import numpy as np
import torch


def query_index(T: int, max_queries: int) -> np.ndarray:
    """The queries the collectors sample: all, or max_queries evenly spaced (rounded)."""
    if T <= max_queries:
        return np.arange(T)
    return np.unique(np.round(np.linspace(0, T - 1, max_queries)).astype(int))


def scores(q: torch.Tensor, k: torch.Tensor, scale: float, keep: torch.Tensor) -> torch.Tensor:
    """q (H, Q, d), k (H, S, d), keep (Q, S) or (H, Q, S) bool -> logits with -inf where masked."""
    s = torch.einsum("hqd,hsd->hqs", q.double(), k.double()) * scale
    return s.masked_fill(~keep, float("-inf"))


def entropy(s: torch.Tensor) -> float:
    """Mean over (head, query) rows of the entropy of softmax(s) over keys (rows all -inf out)."""
    rows = []
    for row in s.reshape(-1, s.shape[-1]):
        if torch.isinf(row).all():
            continue
        p = torch.softmax(row, -1)
        rows.append(float(-(p[p > 0] * p[p > 0].log()).sum()))
    return float(np.mean(rows))


def max_logit(s: torch.Tensor) -> float:
    finite = s[torch.isfinite(s)]
    return float(finite.abs().max())


def entropy_of_probs(p: torch.Tensor) -> float:
    p = p.double().reshape(-1, p.shape[-1])
    h = -(torch.where(p > 0, p * p.clamp_min(1e-300).log(), torch.zeros_like(p))).sum(-1)
    return float(h.mean())


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (H, n, d), cos/sin (n, d)."""
    return x * cos[None] + rotate_half(x) * sin[None]
