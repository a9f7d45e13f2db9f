"""Collapse Index (CI) of an embedding cloud: components and the three ways to combine them.

Notation: n points (rows of the embedding matrix X), d features, d' = min(d, n − 1) the largest
rank a centred n-point cloud can have, λ the eigenvalues of the sample covariance (descending),
s the singular values of the centred X (λ = s² / (n − 1)), ε the scale of the Betti numbers.

Components (:func:`collapse_components`)
----------------------------------------
anisotropy
    ``log1p(λ_max / λ_min⁺)``. λ_min⁺ is λ_{d'} when the covariance has full rank d'. A
    rank-deficient covariance (numerical rank < d', tolerance ``s_max · max(n, d) · eps`` as
    in ``numpy.linalg.matrix_rank``) has λ_min = 0 and is infinitely anisotropic; instead of
    dividing by zero (or by rounding noise, as the seed code does) λ_min⁺ is set to the
    tolerance floor ``λ_max · (max(n, d) · eps)²``, the smallest eigenvalue the rank test can
    tell from zero. So anisotropy lies in ``[log 2, anisotropy_max]`` with ``anisotropy_max =
    log1p(1 / (max(n, d) · eps)²)`` (≈ 57 for n = 500), and a rank-deficient cloud sits at the
    top, flagged.
participation_ratio, dim_ratio
    PR = (Σλ)² / Σλ² ∈ [1, d'], and ``dim_ratio = 1 − PR / d'`` (the seed divides by the number of
    eigenvalues > 0, which counts rounding noise).
effective_rank
    RankMe (Garrido et al., 2023): ``exp(−Σ p log p)`` with ``p = s / Σs``, on the *centred*
    embeddings (Garrido et al. use the raw matrix; centring makes it translation-invariant and
    consistent with the covariance components). 0 for a zero-variance cloud.
persistence_entropy (+ _norm), n_h1_bars
    Shannon entropy of the finite H1 lifetimes (ripser, through
    :func:`streamtopo.topology.h1_diagram`) of a seeded subsample of ≤ ``max_points`` rows;
    ``_norm`` divides by log(#bars).
beta0, beta1, scale
    Betti numbers of the Rips complex of the subsample at ε (default: median pairwise distance of
    the subsample). β0 by :func:`streamtopo.topology.betti0_at`; β1 = bars of the H1 diagram alive
    at ε (``birth ≤ ε < death``, compared in float32 because ripser stores float32 values).
fisher_ratio, fisher_term
    S_B / S_W with S_W = Σ‖x − μ_c‖², S_B = Σ n_c ‖μ_c − μ‖², and
    ``fisher_term = 1 / (1 + S_B/S_W)`` (larger = classes less separated; 0 when every class is a
    single point, i.e. S_W = 0 < S_B).

Every component is invariant to rotations, translations and a global scale factor of X (they
are computed on the centred X divided by a power of two, so a power-of-two scale changes no bit).
Absent components are NaN and a flag in ``flags`` says why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._validation import as_real_array, check_choice, check_positive_int, describe
from ..errors import InputError, InputTypeError
from .collapse_seed import SEED000_WEIGHTS, h1_of_points, seed000_index
from .h0 import betti0_at, persistence_entropy, pow2_scale

__all__ = [
    "COMPONENTS",
    "DEFAULT_WEIGHTS",
    "SEED000_WEIGHTS",
    "VARIANTS",
    "as_embeddings",
    "as_labels",
    "collapse_components",
    "collapse_index",
    "combine_components",
    "prepare_embeddings",
]

VARIANTS = ("default", "seed000", "seed002")

#: Components of the default CI, with the direction in which each moves under collapse
#: (+1: rises, −1: falls).
COMPONENTS: dict[str, int] = {
    "effective_rank": -1,
    "participation_ratio": -1,
    "anisotropy": +1,
    "persistence_entropy": -1,
    "fisher_term": +1,
}

#: Default weights. RankMe fell 24 → 3 ahead of test accuracy in every collapsing digits run
#: (issue 8) while anisotropy saturated and H1 entropy barely moved, so the two spectral-spread
#: measures carry most weight; the Fisher term keeps the seed's 0.2 for class separation.
DEFAULT_WEIGHTS: dict[str, float] = {
    "effective_rank": 0.3,
    "participation_ratio": 0.3,
    "anisotropy": 0.1,
    "persistence_entropy": 0.1,
    "fisher_term": 0.2,
}

_EPS = float(np.finfo(np.float64).eps)


def as_embeddings(X: Any, name: str = "X") -> np.ndarray:
    """float64 (n, d) array; non-finite values are allowed here (their rows are dropped later)."""
    if hasattr(X, "detach") and hasattr(X, "cpu"):  # torch tensor, duck-typed
        X = X.detach().cpu().double().numpy()
    arr = as_real_array(X, name, "a 2-D array of numbers")
    if arr.ndim != 2:
        raise InputError(f"{name} must be 2-D (n_points, n_features), got {describe(arr)}")
    if arr.shape[1] < 2:
        raise InputError(
            f"{name} must have at least 2 features (columns) for a collapse index, "
            f"got {describe(arr)}"
        )
    return np.ascontiguousarray(arr, dtype=np.float64)


def as_labels(labels: Any, n: int) -> np.ndarray:
    if hasattr(labels, "detach") and hasattr(labels, "cpu"):
        labels = labels.detach().cpu().numpy()
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise InputError(f"labels must be 1-D, got {describe(lab)}")
    if lab.shape[0] != n:
        raise InputError(f"labels has {lab.shape[0]} values, expected one per row of X (n={n})")
    if lab.dtype == object:
        raise InputTypeError(f"labels must be an array of numbers or strings, got {describe(lab)}")
    return lab


def prepare_embeddings(X: Any, labels: Any) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Validated embeddings with non-finite rows dropped, matching labels, rows dropped."""
    arr = as_embeddings(X)
    lab = None if labels is None else as_labels(labels, arr.shape[0])
    keep = np.isfinite(arr).all(axis=1)
    dropped = int(arr.shape[0] - np.count_nonzero(keep))
    if dropped:
        arr = arr[keep]
        lab = None if lab is None else lab[keep]
    if arr.shape[0] < 3:
        raise InputError(
            f"X must have at least 3 rows with finite values for a collapse index, got "
            f"{arr.shape[0]} (after dropping {dropped} row(s) with NaN/inf)"
        )
    return arr, lab, dropped


#: Largest condition number of the covariance for which its Gram eigenvalues are used instead
#: of an SVD: their absolute error is about sqrt(n) · eps · λ_max, so below κ = 1e6 every
#: eigenvalue keeps ~1e-8 relative accuracy (anisotropy within ~1e-8), at a fraction of the cost.
_GRAM_MAX_COND = 1e6


def _singular_values(Xc: np.ndarray) -> np.ndarray:
    """Singular values (descending) of the centred ``Xc``: Gram eigenvalues for a tall,
    well-conditioned matrix (about 30× faster at 10000 × 512), an SVD otherwise."""
    n, d = Xc.shape
    if n > 2 * d:
        lam = np.linalg.eigvalsh(Xc.T @ Xc)[::-1]
        if lam[0] > 0.0 and lam[-1] > lam[0] / _GRAM_MAX_COND:
            return np.sqrt(lam)
    return np.linalg.svd(Xc, compute_uv=False)


def _spectrum(X: np.ndarray) -> dict[str, Any]:
    n, d = X.shape
    dprime = min(d, n - 1)
    Xc = X - X.mean(axis=0)
    s = _singular_values(Xc)
    amax = math.log1p(1.0 / (max(n, d) * _EPS) ** 2)
    out: dict[str, Any] = {"anisotropy_max": amax}
    if s.size == 0 or s[0] == 0.0:
        out.update(
            rank=0,
            rank_deficient=True,
            zero_variance=True,
            lambda_max=0.0,
            lambda_min_pos=math.nan,
            anisotropy=math.nan,
            participation_ratio=math.nan,
            dim_ratio=math.nan,
            effective_rank=0.0,
        )
        return out
    tol = s[0] * max(n, d) * _EPS
    rank = int(np.count_nonzero(s > tol))
    lam = s * s / (n - 1)
    deficient = rank < dprime
    lam_min = lam[0] * (max(n, d) * _EPS) ** 2 if deficient else lam[dprime - 1]
    pr = float(lam.sum() ** 2 / np.sum(lam * lam))
    p = s[s > 0] / s.sum()
    out.update(
        rank=rank,
        rank_deficient=bool(deficient),
        zero_variance=False,
        lambda_max=float(lam[0]),
        lambda_min_pos=float(lam_min),
        anisotropy=min(math.log1p(lam[0] / lam_min), amax),
        participation_ratio=pr,
        dim_ratio=1.0 - pr / dprime,
        effective_rank=float(np.exp(-np.sum(p * np.log(p)))),
    )
    return out


def _fisher(X: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    classes, inv = np.unique(labels, return_inverse=True)
    k = classes.shape[0]
    if k < 2:
        return math.nan, math.nan, k
    counts = np.bincount(inv, minlength=k).astype(np.float64)
    means = np.zeros((k, X.shape[1]))
    np.add.at(means, inv, X)
    means /= counts[:, None]
    sw = float(np.sum((X - means[inv]) ** 2))
    sb = float(np.sum(counts * np.sum((means - X.mean(axis=0)) ** 2, axis=1)))
    if sw == 0.0:
        return (math.inf, 0.0, k) if sb > 0.0 else (math.nan, math.nan, k)
    ratio = sb / sw
    return ratio, 1.0 / (1.0 + ratio), k


def _subsample(n: int, max_points: int | None, seed: Any) -> np.ndarray:
    if max_points is None or n <= max_points:
        return np.arange(n)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


def collapse_components(
    X: Any,
    labels: Any = None,
    *,
    max_points: int | None = 500,
    seed: int | np.random.Generator = 0,
    scale: float | None = None,
    topology: bool = True,
) -> dict[str, Any]:
    """Geometric and topological components of the Collapse Index of embeddings ``X``.

    Parameters
    ----------
    X : array_like or torch.Tensor, shape (n, d)
        Embeddings, one row per sample, d ≥ 2. Rows with NaN/inf are dropped and counted.
    labels : array_like, shape (n,), optional
        Class labels; enables the Fisher term.
    max_points : int or None
        Size of the seeded subsample used for H1, β0, β1 and ε (``None``: all rows).
    seed : int or numpy.random.Generator
        Subsample seed (an int gives the same rows for the same n at every call).
    scale : float, optional
        ε for the Betti numbers; default the median pairwise distance of the subsample.
    topology : bool
        ``False`` skips ripser (H1, β0, β1 are NaN; flag ``"topology_skipped"``).

    Returns
    -------
    dict
        The components described in the module docstring, plus ``n_points`` (rows used),
        ``n_features``, ``n_dropped`` (non-finite rows), ``rank``, ``rank_deficient``,
        ``lambda_max``, ``lambda_min_pos``, ``anisotropy_max``, ``n_classes``, ``n_sampled``,
        ``sample_index`` (rows of the cleaned X in the subsample) and ``flags`` (a tuple naming
        every absent or special-cased component).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(200, 4))
    >>> c = collapse_components(X, topology=False)
    >>> round(c["effective_rank"], 2), round(c["participation_ratio"], 2), c["rank"]
    (4.0, 3.97, 4)
    >>> line = np.outer(np.arange(10.0), [1.0, 2.0, 3.0])
    >>> c = collapse_components(line, topology=False)
    >>> c["rank"], c["rank_deficient"], round(c["effective_rank"], 6)
    (1, True, 1.0)
    """
    if max_points is not None:
        max_points = check_positive_int(max_points, "max_points", minimum=3)
    arr, lab, dropped = prepare_embeddings(X, labels)
    n, d = arr.shape
    flags: list[str] = []
    if dropped:
        flags.append("nonfinite_rows_dropped")
    out: dict[str, Any] = {"n_points": n, "n_features": d, "n_dropped": dropped}
    # Centre, then divide by a power of two near max |x| (exact): every component is
    # translation- and scale-free, and float32 ripser and squared norms stay in range for
    # embeddings near 1e±150. Only lambda_* and scale carry units; they are scaled back.
    # A first power of two keeps the column sums of the mean in range (values near 1e308);
    # both divisions are exact, so for ordinary inputs the arrays are bit-identical to one step.
    pre = pow2_scale(arr)
    if pre != 1.0:
        arr = arr / pre
    arr = arr - arr.mean(axis=0)
    unit = pow2_scale(arr)
    if unit != 1.0:
        arr = arr / unit
    unit *= pre
    spec = _spectrum(arr)
    spec["lambda_max"] = spec["lambda_max"] * unit * unit
    spec["lambda_min_pos"] = spec["lambda_min_pos"] * unit * unit
    if spec.pop("zero_variance"):
        flags.append("zero_variance")
    elif spec["rank_deficient"]:
        flags.append("rank_deficient")
    out.update(spec)

    idx = _subsample(n, max_points, seed)
    out["n_sampled"] = int(idx.shape[0])
    out["sample_index"] = idx
    if topology:
        from scipy.spatial.distance import pdist

        sub = arr[idx]
        if scale is None:
            eps_ = float(np.median(pdist(sub)))
        else:
            try:
                eps_ = float(scale)
            except (TypeError, ValueError):
                raise InputError(
                    f"scale must be a non-negative number, got {describe(scale)}"
                ) from None
            if not (eps_ >= 0.0 and math.isfinite(eps_)):
                raise InputError(f"scale must be a non-negative finite number, got {scale!r}")
            eps_ = eps_ / unit
        h1 = h1_of_points(sub)
        e32 = np.float32(eps_)
        b, dth = h1[:, 0].astype(np.float32), h1[:, 1].astype(np.float32)
        finite = np.isfinite(h1[:, 1]) & (h1[:, 1] > h1[:, 0])
        out.update(
            scale=eps_ * unit,
            beta0=betti0_at(sub, eps_),
            beta1=int(np.count_nonzero((b <= e32) & (e32 < dth))),
            n_h1_bars=int(np.count_nonzero(finite)),
            persistence_entropy=persistence_entropy(h1),
            persistence_entropy_norm=persistence_entropy(h1, normalize=True),
        )
        if out["n_h1_bars"] == 0:
            flags.append("no_h1_bars")
    else:
        flags.append("topology_skipped")
        out.update(
            scale=math.nan,
            beta0=math.nan,
            beta1=math.nan,
            n_h1_bars=0,
            persistence_entropy=math.nan,
            persistence_entropy_norm=math.nan,
        )

    if lab is None:
        flags.append("no_labels")
        out.update(fisher_ratio=math.nan, fisher_term=math.nan, n_classes=0)
    else:
        ratio, term, k = _fisher(arr, lab)
        out.update(fisher_ratio=ratio, fisher_term=term, n_classes=k)
        if k < 2:
            flags.append("single_class")
        elif math.isnan(term):
            flags.append("fisher_undefined")
    out["flags"] = tuple(flags)
    return out


# --- score mappings (each in [0, 1], larger = more collapsed) --------------------------------


def _clip01(x: float) -> float:
    return float(min(max(x, 0.0), 1.0))


def _rank_score(v: float, v0: float) -> float:
    """Fraction of the way, in log scale, from the reference rank ``v0`` down to rank 1."""
    if v <= 0.0:
        return 1.0
    if v0 <= 1.0:
        return 0.0
    return _clip01(math.log(v0 / v) / math.log(v0))


def _ref(baseline: Mapping[str, Any] | None, key: str, ideal: float) -> float:
    if baseline is None or key not in baseline:
        return ideal
    v = float(baseline[key])
    return v if math.isfinite(v) else ideal


def _default_scores(c: Mapping[str, Any], baseline: Mapping[str, Any] | None) -> dict[str, float]:
    dprime = min(c["n_features"], c["n_points"] - 1)
    amax = c["anisotropy_max"]
    s: dict[str, float] = {}
    er = c["effective_rank"]
    if math.isfinite(er):
        s["effective_rank"] = _rank_score(er, _ref(baseline, "effective_rank", dprime))
    pr = c["participation_ratio"]
    if math.isfinite(pr):
        s["participation_ratio"] = _rank_score(pr, _ref(baseline, "participation_ratio", dprime))
    a = c["anisotropy"]
    if math.isfinite(a):
        a0 = _ref(baseline, "anisotropy", math.log(2.0))
        s["anisotropy"] = _clip01((a - a0) / (amax - a0)) if amax > a0 else 0.0
    pe = c["persistence_entropy"]
    if math.isfinite(pe):
        bars = c["n_h1_bars"]
        pe0 = _ref(baseline, "persistence_entropy", math.log(bars) if bars > 1 else 0.0)
        s["persistence_entropy"] = _clip01(1.0 - pe / pe0) if pe0 > 0.0 else float(bars <= 1)
    f = c["fisher_term"]
    if math.isfinite(f):
        f0 = _ref(baseline, "fisher_term", 0.0)
        s["fisher_term"] = _clip01((f - f0) / (1.0 - f0)) if f0 < 1.0 else 0.0
    return s


def _seed002_scores(c: Mapping[str, Any]) -> dict[str, float]:
    s: dict[str, float] = {}
    if math.isfinite(c["beta0"]):
        s["betti"] = 1.0 - _clip01(c["beta1"] / c["beta0"])
    if math.isfinite(c["persistence_entropy_norm"]):
        s["persistence_entropy"] = 1.0 - c["persistence_entropy_norm"]
    a = c["anisotropy"]
    if math.isfinite(a):
        s["anisotropy"] = _clip01(math.log(math.expm1(a)) / math.log(100.0))
    return s


_SEED002_WEIGHTS = {"betti": 0.4, "persistence_entropy": 0.3, "anisotropy": 0.3}


def collapse_index(
    X: Any,
    labels: Any = None,
    *,
    variant: str = "default",
    weights: Mapping[str, float] | None = None,
    baseline: Mapping[str, Any] | None = None,
    max_points: int | None = 500,
    seed: int | np.random.Generator = 0,
    scale: float | None = None,
    topology: bool = True,
) -> tuple[float, dict[str, Any]]:
    """Collapse Index of embeddings ``X`` (larger = more collapsed) and its components.

    Parameters
    ----------
    X, labels, max_points, seed, scale, topology
        As in :func:`collapse_components`; ``topology=False`` gives the eigenvalue-only CI (the
        seed's "quick check"), not available for seed000.
    variant : {"default", "seed000", "seed002"}
        ``"default"``: weighted mean of per-component scores in [0, 1], each measured against
        ``baseline`` (see below), over the components present (weights renormalised).
        ``"seed000"``: the skill file's ``compute_collapse_index`` exactly: raw anisotropy
        (eigenvalues > 0 of ``np.cov``, ``+1e-10``), dim_ratio over the count of positive
        eigenvalues, H1 entropy of the first ≤ 500 rows with ``log(p + 1e-10)``, Fisher term; each
        clipped to [0, 10] and divided by 10, weights 0.3/0.3/0.2/0.2, absent terms count 0. This
        form is bounded by 0.55 (only the anisotropy can reach 10) and sat at 0.42–0.45 on every
        digits run, collapsing or not. ``"seed002"``: ``0.4 (1 − β1/β0) + 0.3 (1 − PE_norm) + 0.3
        A`` at ε = median pairwise distance, with β1/β0 clipped to [0, 1] and the anisotropy score
        ``A = clip(ln κ / ln 100, 0, 1)``, κ = λ_max / λ_min⁺: the seed's text calls κ > 100 a
        strong collapse indicator, so κ = 1 maps to 0 and κ ≥ 100 to 1.
    weights : mapping, optional
        Replaces the variant's weights (keys: the score names in ``components["scores"]``).
    baseline : mapping, optional
        Default variant only: reference values of the raw components (e.g. the components of
        the run's first checks). Missing or NaN entries fall back to the ideal reference below.

    Returns
    -------
    ci : float
    components : dict
        :func:`collapse_components`'s dict (for seed000 the seed's own keys), plus ``scores``,
        ``weights`` and ``variant``.

    Notes
    -----
    Default scores (0 at the reference, 1 at the collapse end point), with the reference used
    when no baseline is given:

    - effective_rank, participation_ratio: ``log(r0 / r) / log(r0)`` — a halving counts the same
      at any size, and rank 1 (all variance on one axis) is the end point. Reference r0 = d'.
    - anisotropy: ``(a − a0) / (anisotropy_max − a0)`` — a ≈ ln κ, so this is the fraction, in
      decades of κ, of the way from the reference to the largest κ the rank test can resolve
      (a rank-deficient cloud). Reference a0 = log 2 (isotropic).
    - persistence_entropy: ``1 − PE / PE0`` — loss of multi-scale loop structure; PE = 0 means at
      most one H1 bar. Reference PE0 = log(#bars), i.e. ``1 − PE_norm``.
    - fisher_term: ``(f − f0) / (1 − f0)`` — f = 1 exactly when the class means coincide.
      Reference f0 = 0 (perfectly separated).

    β0/β1 at the median scale are reported but not scored by default: at that scale β0 is 1 for
    almost any cloud and β1 is erratic (a 2-D Gaussian plane in 16 dims has a loop alive there and
    scores *below* an 8-D Gaussian in seed002, see the tests). Well-separated class means also
    make the cloud anisotropic, so the spectral scores rise with class separation while the
    Fisher score falls: the CI is not a class-separation measure, and a run baseline (not the
    ideal reference) is what makes its level meaningful.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 8))
    >>> ci, c = collapse_index(X)
    >>> round(ci, 2), sorted(c["scores"])
    (0.01, ['anisotropy', 'effective_rank', 'participation_ratio', 'persistence_entropy'])
    >>> line = np.outer(np.linspace(0, 1, 50), np.ones(8))
    >>> round(collapse_index(line)[0], 2)
    1.0
    >>> round(collapse_index(X, variant="seed000")[0], 2)
    0.14
    """
    check_choice(variant, "variant", VARIANTS)
    if variant == "seed000" and not topology:
        raise InputError(
            "topology=False is not available for variant='seed000' (its formula has H1)"
        )
    if variant == "seed000":
        arr, lab, dropped = prepare_embeddings(X, labels)
        if not np.any(arr != arr[0]):
            raise InputError("X has zero variance (all rows equal); seed000's formula is undefined")
        ci, comp = seed000_index(arr, lab)
        comp["scores"] = {k[6:]: v for k, v in comp.items() if k.startswith("score_")}
        w = dict(SEED000_WEIGHTS)
        if weights is not None:
            w = _check_weights(weights, w)
            ci = float(sum(w[k] * v for k, v in comp["scores"].items()))
        comp.update(variant=variant, weights=w, n_dropped=dropped)
        return ci, comp

    comp = collapse_components(
        X, labels, max_points=max_points, seed=seed, scale=scale, topology=topology
    )
    ci, scores, w = combine_components(comp, variant, baseline, weights)
    comp.update(scores=scores, weights=w, variant=variant)
    return ci, comp


def combine_components(
    comp: Mapping[str, Any],
    variant: str,
    baseline: Mapping[str, Any] | None,
    weights: Mapping[str, float] | None,
) -> tuple[float, dict[str, float], dict[str, float]]:
    """CI, scores and weights of the default or seed002 variant from ready components."""
    if variant == "seed002":
        scores = _seed002_scores(comp)
        w = _check_weights(weights, _SEED002_WEIGHTS) if weights else dict(_SEED002_WEIGHTS)
        return float(sum(w[k] * v for k, v in scores.items())), scores, w
    scores = _default_scores(comp, baseline)
    w = _check_weights(weights, DEFAULT_WEIGHTS) if weights else dict(DEFAULT_WEIGHTS)
    total = sum(w[k] for k in scores)
    ci = float(sum(w[k] * v for k, v in scores.items()) / total) if total > 0 else math.nan
    return ci, scores, w


def _check_weights(weights: Mapping[str, float], template: Mapping[str, float]) -> dict[str, float]:
    unknown = sorted(set(weights) - set(template))
    if unknown:
        raise InputError(
            f"weights has unknown key(s) {unknown}, expected keys from {sorted(template)}"
        )
    out = dict(template)
    for k, v in weights.items():
        fv = float(v)
        if not (fv >= 0.0 and math.isfinite(fv)):
            raise InputError(f"weights[{k!r}] must be a non-negative finite number, got {v!r}")
        out[k] = fv
    return out
