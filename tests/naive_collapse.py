"""Seed 000's Collapse Index, transcribed literally from the skill file (a naive twin).

The only change: ripser returns its diagrams under the key ``"dgms"``; the seed asks for
``"diagrams"`` (a KeyError, so the seed's code never ran). Everything else, including the
``np.cov`` eigenvalue filter ``> 0``, the ``1e-10`` epsilons, the first-500-rows H1 sample and
the ``[0, 10]`` clipping, is as written. Nothing here imports streamtopo.
"""

from __future__ import annotations

import numpy as np
import ripser
from scipy.spatial.distance import pdist, squareform


def compute_persistence(embeddings, max_dim=1, threshold=None):
    dist_matrix = squareform(pdist(embeddings, metric="euclidean"))
    if threshold is not None:
        dist_matrix = np.minimum(dist_matrix, threshold)
    diagrams = ripser.ripser(dist_matrix, maxdim=max_dim, distance_matrix=True)["dgms"]
    return diagrams


def persistence_lifetime(diagram, dim=1):
    if dim >= len(diagram) or len(diagram[dim]) == 0:
        return np.array([])
    births = diagram[dim][:, 0]
    deaths = diagram[dim][:, 1]
    finite = np.isfinite(deaths)
    return deaths[finite] - births[finite]


def compute_collapse_index(embeddings, labels=None):
    ci_components = {}
    cov = np.cov(embeddings.T)
    eigenvalues = np.linalg.eigvalsh(cov)
    eigenvalues = eigenvalues[eigenvalues > 0]
    anisotropy = eigenvalues[-1] / (eigenvalues[0] + 1e-10)
    ci_components["anisotropy"] = np.log1p(anisotropy)
    eigenvalues_norm = eigenvalues / eigenvalues.sum()
    effective_dim = 1.0 / (eigenvalues_norm**2).sum()
    max_dim = len(eigenvalues)
    ci_components["dim_ratio"] = 1.0 - (effective_dim / max_dim)
    diagrams = compute_persistence(embeddings[: min(500, len(embeddings))])
    if len(diagrams) > 1 and len(diagrams[1]) > 0:
        lifetimes = persistence_lifetime(diagrams, dim=1)
        if len(lifetimes) > 0:
            total = lifetimes.sum()
            if total > 0:
                probs = lifetimes / total
                persistence_entropy = -(probs * np.log(probs + 1e-10)).sum()
                ci_components["persistence_entropy"] = persistence_entropy
    if labels is not None:
        unique_labels = np.unique(labels)
        if len(unique_labels) > 1:
            overall_mean = embeddings.mean(axis=0)
            sw = 0
            sb = 0
            for l in unique_labels:  # noqa: E741 - the seed's name
                mask = labels == l
                class_mean = embeddings[mask].mean(axis=0)
                sw += np.sum((embeddings[mask] - class_mean) ** 2)
                sb += mask.sum() * np.sum((class_mean - overall_mean) ** 2)
            if sw > 0:
                fisher_ratio = sb / sw
                ci_components["fisher_ratio"] = 1.0 / (1.0 + fisher_ratio)
    weights = {
        "anisotropy": 0.3,
        "dim_ratio": 0.3,
        "persistence_entropy": 0.2,
        "fisher_ratio": 0.2,
    }
    ci = 0.0
    for key, weight in weights.items():
        if key in ci_components:
            ci += weight * normalize_component(ci_components[key])
    return ci, ci_components


def normalize_component(value, ref_min=0.0, ref_max=10.0):
    return np.clip((value - ref_min) / (ref_max - ref_min + 1e-10), 0, 1)
