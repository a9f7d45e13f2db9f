"""CollapseMonitor: the Collapse Index of embeddings, checked every few steps (seed 000).

The arithmetic lives in :mod:`streamtopo.topology.collapse`; this class keeps the history, the run's
baseline and the alarm rule.

Alarm rules
-----------
``mode="seed"`` (seed 000's code): COLLAPSE when at least three checks exist, the CI is above
``threshold`` and above the previous check's CI. (The seed's comment speaks of a trend over the
last three checks; its code compares only the last two values, and that is what is reproduced.)
WATCH when the CI is above ``threshold`` without that.

``mode="baseline"`` (default): the first ``baseline_checks`` checks are the baseline (HEALTHY,
reason ``"baseline k/K"``). Afterwards each tracked quantity (the CI and every raw component of
the variant) gets ``z = (value − median) / σ`` against the baseline checks, with
``σ = max(sample std, rel_floor · |median| · max(1, sqrt(500 / n)))`` (``ci_floor`` in place of
the relative term for the CI). Three checks give a poor std (it is 0 when the three values
agree), so the floor decides in practice: ``rel_floor = 0.05`` is 2.5–5×
the spread of every component across resamples of 500 of the 1,797 digits (measured relative std:
effective rank 0.9%, participation ratio 1.9%, H1 entropy 1.1%, Fisher term 1.4%; spectral
sampling noise grows like 1/sqrt(n), hence the factor for fewer than 500 points) and
``ci_floor = 0.02`` is 20× the CI's measured spread (0.001). WATCH when any quantity is more
than ``z`` σ away in an allowed direction: ``"up"`` = towards collapse (CI, anisotropy, Fisher
term rise; rank, participation ratio, entropy fall), ``"down"`` = away from it (a sudden rise in
rank or entropy can also mean trouble), ``"both"`` — once ``confirm`` (2) consecutive checks are
beyond ``z``; COLLAPSE when a move towards collapse beyond ``collapse_z`` (6) is in ``confirm``
consecutive checks (moves away from collapse stay WATCH). A single check beyond ``z`` is
HEALTHY with a reason saying so: the checks in a training loop are statistics of one batch (64
samples, ~6 per class, in ``streamtopo demo``), whose outliers are single checks. Measured on the
MLP demo (digits, 600 steps, collapse checks every 10 from step 180; seeds 0–19 chose, fresh
seeds 20–39 reported): healthy runs with any collapse alarm 18/20 → 4/20, with a COLLAPSE (which
stops a ``TrainingMonitor`` run by default) 3/20 → 0/20; dead ReLUs and an LR spike still
COLLAPSE 20/20 one check after the fault, label noise 18/20 (was 20/20); the first alarm on dead
ReLUs and label noise comes one check (10 steps) later (``benchmarks/RESULTS.md``, session 7).
``confirm=1`` is the rule before: one check beyond ``z`` is WATCH and a move towards collapse
right after any alarm is COLLAPSE. WATCH also when the CI is above ``threshold`` without such an
excursion. The baseline never moves after it is set. Measured with the one-check rule
(``confirm=1``): 0 false COLLAPSE in 400 checks on independent random batches of the digits (n = 100
and 500, 10 runs × 20 checks after the baseline) and 3 in 400 on independent Gaussian batches
(100 × 16 and 500 × 64).

Non-finite embeddings are data: rows with NaN/inf are dropped, counted (``n_dropped``) and
named in the reason; when fewer than 3 finite rows remain out of ≥ 3 the check is recorded as
COLLAPSE with CI = NaN and ``dominant = "nonfinite"`` (the features diverged) instead of raising.

The default variant's CI is itself relative to the baseline: during the baseline checks it is
measured against the median of the checks so far, afterwards against the median of all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..alarms import FrozenBaseline, State
from ..errors import InputError, InputTypeError
from ..topology.collapse import (
    VARIANTS,
    as_embeddings,
    as_labels,
    collapse_components,
    combine_components,
    prepare_embeddings,
    seed000_index,
)
from ._base import Monitor
from ._status import MonitorStatus

__all__ = ["CollapseMonitor", "CollapseStatus"]

_MODES = ("baseline", "seed")
_DIRECTIONS = ("both", "up", "down")

# History columns per variant, with the direction each moves under collapse (+1 rises, -1
# falls, 0 recorded but not tracked for alarms).
_COLUMNS: dict[str, dict[str, int]] = {
    "default": {
        "effective_rank": -1,
        "participation_ratio": -1,
        "anisotropy": +1,
        "persistence_entropy": -1,
        "fisher_term": +1,
        "dim_ratio": 0,
        "persistence_entropy_norm": 0,
        "beta0": 0,
        "beta1": 0,
        "scale": 0,
        "rank": 0,
        "n_points": 0,
        "n_dropped": 0,
    },
    "seed000": {
        "anisotropy": +1,
        "dim_ratio": +1,
        "persistence_entropy": -1,
        "fisher_ratio": +1,
        "n_points": 0,
        "n_dropped": 0,
    },
}
_COLUMNS["seed002"] = _COLUMNS["default"]

# Seed 000's "Signs of representational collapse" table.
_SUGGESTION = {
    "anisotropy": "high anisotropy: embeddings concentrate along few dimensions; "
    "add contrastive loss, increase regularization",
    "effective_rank": "low effective dim: dimensionality collapse; "
    "use larger hidden layers, dropout",
    "persistence_entropy": "low persistence entropy: loss of topological structure; "
    "add topological regularization term",
    "fisher_term": "poor class separation: classes merging in embedding space; "
    "increase class margin, use focal loss",
}
_SUGGESTION["participation_ratio"] = _SUGGESTION["dim_ratio"] = _SUGGESTION["effective_rank"]
_SUGGESTION["betti"] = _SUGGESTION["persistence_entropy"]
_SUGGESTION["fisher_ratio"] = _SUGGESTION["fisher_term"]
_AWAY = (
    "moved away from collapse (seed 000's table has no entry for this direction; a sudden rise "
    "in rank or entropy can mean noisy features, e.g. after a learning-rate spike)"
)


@dataclass(frozen=True, slots=True)
class CollapseStatus(MonitorStatus):
    """Result of one :meth:`CollapseMonitor.check` call.

    ``evaluated`` is False on steps that are not a multiple of ``check_every``; such statuses
    repeat the last check's state and CI (``checked`` is the old name, kept as an alias).
    ``calibrating`` is True on the baseline checks of ``mode="baseline"``. ``dominant`` names
    the component that decided the state (largest |z| in baseline mode, largest weighted score
    otherwise) and ``z`` is its z-score (NaN when not z-scored).
    """

    kind: ClassVar[str] = "collapse"

    ci: float = math.nan
    dominant: str = ""
    z: float = math.nan

    @property
    def checked(self) -> bool:
        """Alias of :attr:`evaluated` (the name before the monitor contract)."""
        return self.evaluated


class CollapseMonitor(Monitor):
    """Collapse Index of embeddings every ``check_every`` steps, with a baseline or seed alarm.

    Verbs: :meth:`check` (embeddings, or ``ci=`` computed elsewhere) is the per-step entry and
    returns a :class:`CollapseStatus` on every step (``evaluated=False`` between checks);
    :meth:`update` feeds a precomputed CI without returning a status. Steps count from 0 and
    ``step_`` is the next step.

    Parameters
    ----------
    check_every : int
        Steps ``s`` with ``s % check_every == 0`` are checked (seed 000: ``epoch % 5``).
    threshold : float
        CI level for seed mode's alarm and for WATCH (seed 000: 0.7).
    variant : {"default", "seed000", "seed002"}
        See :func:`streamtopo.topology.collapse.collapse_index`.
    baseline_checks : int
        Checks that form the baseline (≥ 1).
    mode : {"baseline", "seed"}
        Alarm rule (module docstring).
    z : float
        Baseline mode: excursion size in floored standard deviations.
    direction : {"both", "up", "down"}
        Baseline mode: towards collapse, away from it, or both.
    writer : callable, optional
        Called with one plain-dict row (``"monitor": "collapse"``) after every computed check.
    name : str, optional
        The monitor's identity in the run log ([a-z0-9_], at most 32 characters): its rows go
        to table ``collapse.<name>`` instead of ``collapse`` (e.g. ``"eval"`` beside a train monitor
        on the same writer, which refuses two unnamed monitors of one kind).
    max_points, seed
        H1 subsample size and seed (same rows at every check when n does not change).
    rel_floor, ci_floor
        σ floors of baseline mode (module docstring).
    topology : bool
        ``False``: eigenvalue-only checks (no ripser; H1 entropy and Betti numbers absent).
    confirm : int, default 2
        Baseline mode: consecutive checks beyond ``z`` before WATCH (module docstring); 1 is
        the rule before 2026-12-06 (one check beyond ``z`` is WATCH, a move toward collapse
        after any alarm is COLLAPSE, ``collapse_z`` unused).
    collapse_z : float or None, default 6.0
        Baseline mode with ``confirm >= 2``: COLLAPSE when a move toward collapse beyond
        ``collapse_z`` (None: ``z``) is in ``confirm`` consecutive checks.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> mon = CollapseMonitor(check_every=1, baseline_checks=2)
    >>> for step in range(3):
    ...     s = mon.check(rng.normal(size=(100, 6)))
    >>> s.state, s.reason.startswith("all within")
    (<State.HEALTHY: 'HEALTHY'>, True)
    >>> squashed = rng.normal(size=(100, 6)) * [1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]
    >>> s = mon.check(squashed)
    >>> s.state, s.dominant, s.reason[:41]
    (<State.HEALTHY: 'HEALTHY'>, 'anisotropy', 'anisotropy z=+104.0 beyond 3.0 on 1 of 2 ')
    >>> s = mon.check(rng.normal(size=(100, 6)) * [1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3])
    >>> s.state, mon.is_collapsing
    (<State.COLLAPSE: 'COLLAPSE'>, True)
    >>> s.reason[:40]
    'anisotropy rose to 13.84 from baseline 1'
    """

    def __init__(
        self,
        check_every: int = 5,
        threshold: float = 0.7,
        variant: str = "default",
        baseline_checks: int = 3,
        mode: str = "baseline",
        z: float = 3.0,
        direction: str = "both",
        writer: Callable[[dict[str, Any]], Any] | None = None,
        *,
        name: str | None = None,
        max_points: int = 500,
        seed: int = 0,
        rel_floor: float = 0.05,
        ci_floor: float = 0.02,
        topology: bool = True,
        confirm: int = 2,
        collapse_z: float | None = 6.0,
    ) -> None:
        self.check_every = check_positive_int(check_every, "check_every")
        self.threshold = _nonneg(threshold, "threshold")
        self.variant = check_choice(variant, "variant", VARIANTS)
        self.baseline_checks = check_positive_int(baseline_checks, "baseline_checks")
        self.mode = check_choice(mode, "mode", _MODES)
        self.z = _nonneg(z, "z", positive=True)
        self.direction = check_choice(direction, "direction", _DIRECTIONS)
        self.max_points = check_positive_int(max_points, "max_points", minimum=3)
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self.rel_floor = _nonneg(rel_floor, "rel_floor")
        self.ci_floor = _nonneg(ci_floor, "ci_floor")
        self.confirm = check_positive_int(confirm, "confirm")
        if collapse_z is not None:
            collapse_z = _nonneg(collapse_z, "collapse_z", positive=True)
            if collapse_z < self.z:
                raise InputError(f"collapse_z must be >= z ({self.z}), got {collapse_z!r}")
        self.collapse_z = collapse_z
        if not isinstance(topology, bool):
            raise InputTypeError(f"topology must be True or False, got {describe(topology)}")
        if self.variant == "seed000" and not topology:
            raise InputError("topology=False is not available for variant='seed000'")
        self.topology = topology
        self._columns = _COLUMNS[self.variant]
        self._attach(writer, name)
        self.reset()

    # --- state ---------------------------------------------------------------------------

    kind = "collapse"
    _config_keys = (
        "check_every",
        "threshold",
        "variant",
        "baseline_checks",
        "mode",
        "z",
        "direction",
        "max_points",
        "seed",
        "rel_floor",
        "ci_floor",
        "topology",
        "confirm",
        "collapse_z",
    )
    # states and configs saved before `confirm` existed used the one-check rule
    legacy_defaults: ClassVar[dict[str, Any]] = {"confirm": 1, "collapse_z": None}
    _state_ = ("_collapse_step", "_d", "_hist")
    _last: CollapseStatus | None

    def _init_state(self) -> None:
        """Forget every check and the baseline."""
        self._collapse_step: int | None = None
        self._d: int | None = None  # feature dimension, fixed by the first check
        self._hist: dict[str, list[Any]] = {
            k: [] for k in ("step", "ci", "state", "reason", "dominant", "z", *self._columns)
        }
        # the first baseline_checks values of the CI and of every column, frozen (derived
        # from the history, so not stored separately)
        self._base = {c: FrozenBaseline(self.baseline_checks) for c in ("ci", *self._columns)}

    def _after_load(self) -> None:
        h = self._hist
        if set(h) != set(self._init_hist_keys()):
            raise InputError(f"history has columns {sorted(h)}, expected {self._init_hist_keys()}")
        n = len(h["step"])
        for k, col in h.items():
            if len(col) != n:
                raise InputError(f"history column {k!r} has {len(col)} values, expected {n}")
        h["state"] = [State(v) for v in h["state"]]
        for c, base in self._base.items():
            for v in h[c][: self.baseline_checks]:
                base.push(v)

    def _init_hist_keys(self) -> list[str]:
        return ["step", "ci", "state", "reason", "dominant", "z", *self._columns]

    # --- results -------------------------------------------------------------------------

    @property
    def is_collapsing(self) -> bool:
        """True when the latest check's state is COLLAPSE (the seed's flag never cleared)."""
        return self._last is not None and self._last.state is State.COLLAPSE

    @property
    def should_stop(self) -> bool:
        """Alias of :attr:`is_collapsing` (the contract's stopping flag)."""
        return self.is_collapsing

    @property
    def collapse_step_(self) -> int | None:
        """First step whose check was COLLAPSE (the seed's ``collapse_epoch``)."""
        return self._collapse_step

    @property
    def history(self):
        """One row per computed check: step, ci, state, reason, dominant, z, components."""
        import polars as pl

        h = self._hist
        data: dict[str, Any] = {
            "step": pl.Series(h["step"], dtype=pl.Int64),
            "ci": pl.Series(h["ci"], dtype=pl.Float64),
            "state": pl.Series([str(s) for s in h["state"]], dtype=pl.String),
            "reason": pl.Series(h["reason"], dtype=pl.String),
            "dominant": pl.Series(h["dominant"], dtype=pl.String),
            "z": pl.Series(h["z"], dtype=pl.Float64),
        }
        for k in self._columns:
            data[k] = pl.Series(h[k], dtype=pl.Float64)
        return pl.DataFrame(data)

    # --- checks --------------------------------------------------------------------------

    def due(self, step: int | None = None) -> bool:
        """Whether :meth:`check` at ``step`` (default: the next step) computes a CI."""
        s = self._step if step is None else int(step)
        return s % self.check_every == 0

    def check(
        self,
        embeddings: Any = None,
        labels: Any = None,
        step: int | None = None,
        *,
        ci: float | None = None,
        components: Mapping[str, float] | None = None,
    ) -> CollapseStatus:
        """Compute the CI of ``embeddings`` (numpy or torch, (n, d)) if ``step`` is due.

        On steps that are not due the embeddings are not read. Instead of embeddings, ``ci``
        (and optionally raw ``components``) computed elsewhere, e.g. replayed from a log, can
        be given; missing components are NaN. Errors leave the monitor unchanged.

        Examples
        --------
        >>> mon = CollapseMonitor(check_every=1, mode="seed", variant="seed000")
        >>> [str(mon.check(ci=v).state) for v in (0.2, 0.5, 0.8, 0.75, 0.9)]
        ['HEALTHY', 'HEALTHY', 'COLLAPSE', 'WATCH', 'COLLAPSE']
        """
        if ci is not None or components is not None:
            if embeddings is not None or labels is not None:
                raise InputError("check() takes embeddings (and labels) or ci=, not both")
            return self._check_ci(ci, components, step)
        s = self._take_step(step)
        if s % self.check_every != 0:
            return self._skip(s)
        if embeddings is None:
            raise InputError("check() needs embeddings (n, d) or ci= on a check step, got neither")
        arr = as_embeddings(embeddings, "embeddings")
        if arr.shape[0] < 3:
            raise InputError(
                f"embeddings must have at least 3 rows for a collapse index, got {arr.shape[0]}"
            )
        if self._d is not None and arr.shape[1] != self._d:
            raise InputError(
                f"embeddings have {arr.shape[1]} features, expected {self._d} (the dimension of "
                "the first check: a baseline of one feature space cannot judge another)"
            )
        if labels is not None:
            as_labels(labels, arr.shape[0])
        n_finite = int(np.count_nonzero(np.isfinite(arr).all(axis=1)))
        if arr.shape[0] >= 3 and n_finite < 3:  # diverged: a finding, not an input error
            bad = arr.shape[0] - n_finite
            why = f"{bad} of {arr.shape[0]} embedding rows have NaN/inf: the features diverged"
            comp = {"n_points": n_finite, "n_dropped": bad}
            self._d = arr.shape[1]
            return self._commit(s, math.nan, comp, {}, {}, (State.COLLAPSE, why, "nonfinite"))
        fin = arr[np.isfinite(arr).all(axis=1)]
        if self.variant == "seed000" and fin.shape[0] >= 3 and not np.any(fin != fin[0]):
            # complete collapse is a finding too; seed000's arithmetic is undefined there
            why = "all embedding rows are identical: complete collapse (seed000's CI undefined)"
            comp = {"n_points": int(fin.shape[0]), "n_dropped": arr.shape[0] - fin.shape[0]}
            self._d = arr.shape[1]
            return self._commit(s, math.nan, comp, {}, {}, (State.COLLAPSE, why, "identical"))
        ci, comp, scores, weights = self._compute(arr, labels)
        self._d = arr.shape[1]
        return self._commit(s, ci, comp, scores, weights)

    def update(
        self, ci: float, components: Mapping[str, float] | None = None, step: int | None = None
    ) -> None:
        """Feed a CI (and optionally raw components) computed elsewhere, without a status:
        ``check(ci=ci, components=components, step=step)`` whose status stays in
        :attr:`last_status_`.

        Examples
        --------
        >>> mon = CollapseMonitor(check_every=1, mode="seed", variant="seed000")
        >>> for v in (0.2, 0.5, 0.8):
        ...     mon.update(v)
        >>> str(mon.last_status_.state), mon.step_
        ('COLLAPSE', 3)
        """
        self._check_ci(ci, components, step)

    def _check_ci(
        self, ci: Any, components: Mapping[str, float] | None, step: int | None
    ) -> CollapseStatus:
        s = self._take_step(step)
        try:
            civ = float(ci)
        except (TypeError, ValueError, OverflowError):
            raise InputTypeError(f"ci must be a number, got {describe(ci)}") from None
        if not math.isfinite(civ):
            raise InputError(f"ci must be a finite number, got {civ}")
        if components is not None and not isinstance(components, Mapping):
            raise InputTypeError(
                f"components must be a dict of name -> number, got {describe(components)}"
            )
        comp = dict(components or {})
        unknown = sorted(set(comp) - set(self._columns))
        if unknown:
            raise InputError(
                f"components has unknown key(s) {unknown}, expected {list(self._columns)}"
            )
        for key, value in comp.items():  # a number (NaN allowed: a missing component), not "x"
            if isinstance(value, (bool, str, bytes)) or not isinstance(
                value, (int, float, np.integer, np.floating)
            ):
                raise InputTypeError(f"components[{key!r}] must be a number, got {describe(value)}")
        if s % self.check_every != 0:
            return self._skip(s)
        return self._commit(s, civ, comp, {}, {})

    # --- internals -----------------------------------------------------------------------

    def _take_step(self, step: int | None) -> int:
        if step is None:
            return self._step
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise InputTypeError(f"step must be an integer, got {describe(step)}")
        if step < self._step:
            raise InputError(f"step must increase: got {step}, expected >= {self._step}")
        return int(step)

    def _skip(self, s: int) -> CollapseStatus:
        last = self._last
        if last is None:
            st = CollapseStatus(s, State.HEALTHY, "not a check step", evaluated=False)
        else:
            st = CollapseStatus(
                s,
                last.state,
                last.reason,
                ci=last.ci,
                dominant=last.dominant,
                z=last.z,
                evaluated=False,
                calibrating=last.calibrating,
            )
        return self._record(st)

    def _compute(self, embeddings: Any, labels: Any):
        if self.variant == "seed000":
            arr, lab, dropped = prepare_embeddings(embeddings, labels)
            if not np.any(arr != arr[0]):
                raise InputError("embeddings have zero variance; seed000's formula is undefined")
            ci, comp = seed000_index(arr, lab)
            comp["n_dropped"] = dropped
            comp["n_points"] = arr.shape[0]
            scores = {k[6:]: v for k, v in comp.items() if k.startswith("score_")}
            return ci, comp, scores, {}
        comp = collapse_components(
            embeddings, labels, max_points=self.max_points, seed=self.seed, topology=self.topology
        )
        base = None
        if self.variant == "default":
            rows = {c: [*self._base[c].values] for c in self._columns}
            if not self._base["ci"].ready:  # the current check joins the baseline
                for c in self._columns:
                    rows[c].append(float(comp.get(c, math.nan)))
            base = {c: _nanmedian(v) for c, v in rows.items()}
        ci, scores, weights = combine_components(comp, self.variant, base, None)
        return ci, comp, scores, weights

    def _commit(self, s, ci, comp, scores, weights, forced=None) -> CollapseStatus:
        values = {c: _scalar(comp.get(c, math.nan)) for c in self._columns}
        n_prev = len(self._hist["step"])
        calibrating = self.mode == "baseline" and n_prev < self.baseline_checks
        if forced is not None:
            state, reason, dominant = forced
            zval = math.nan
        elif self.mode == "seed":
            state, reason, dominant, zval = self._seed_rule(ci, scores, weights)
        elif n_prev < self.baseline_checks:
            state, reason = State.HEALTHY, f"baseline {n_prev + 1}/{self.baseline_checks}"
            dominant, zval = "", math.nan
        else:
            state, reason, dominant, zval = self._baseline_rule(ci, values, scores, weights)
        dropped = comp.get("n_dropped", 0)
        if forced is None and dropped:
            reason += f"; {dropped} row(s) with NaN/inf dropped"
        status = CollapseStatus(
            s,
            state,
            reason,
            ci=float(ci),
            dominant=dominant,
            z=float(zval),
            calibrating=calibrating,
        )
        h = self._hist
        for k, v in (("step", s), ("ci", float(ci)), ("state", state), ("reason", reason),
                     ("dominant", dominant), ("z", float(zval))):  # fmt: skip
            h[k].append(v)
        for c, v in values.items():
            h[c].append(v)
        self._base["ci"].push(float(ci))
        for c, v in values.items():
            self._base[c].push(v)
        if state is State.COLLAPSE and self._collapse_step is None:
            self._collapse_step = s
        self._emit(
            s,
            ci=float(ci),
            state=str(state),
            reason=reason,
            dominant=dominant,
            z=float(zval),
            variant=self.variant,
            **values,
        )
        return self._record(status)

    def _top_score(self, scores, weights) -> str:
        if not scores:
            return ""
        return max(scores, key=lambda k: weights.get(k, 0.3) * scores[k])

    def _seed_rule(self, ci, scores, weights):
        cis = [*self._hist["ci"], ci]
        dom = self._top_score(scores, weights)
        tip = f"; {dom}: {_SUGGESTION[dom]}" if dom else ""
        if len(cis) >= 3 and ci > self.threshold and ci > cis[-2]:
            why = f"CI {ci:.4f} > {self.threshold} and rising (from {cis[-2]:.4f})"
            return State.COLLAPSE, why + tip, dom, math.nan
        if ci > self.threshold:
            why = "fewer than 3 checks" if len(cis) < 3 else f"not rising (from {cis[-2]:.4f})"
            return State.WATCH, f"CI {ci:.4f} > {self.threshold} but {why}" + tip, dom, math.nan
        return State.HEALTHY, f"CI {ci:.4f} <= {self.threshold}", dom, math.nan

    def _excursions(self, ci, values):
        """Every tracked quantity beyond ``z`` in an allowed direction, largest first, as
        ``(|z|, name, z, center, value, toward)`` (toward > 0: towards collapse), and the
        largest |z| of all ``(|z|, name, z, center, value)`` (None when nothing is finite)."""
        tracked = {"ci": (+1, ci, self._base["ci"])}
        for c, sign in self._columns.items():
            if sign:
                tracked[c] = (sign, values[c], self._base[c])
        n_pts = values.get("n_points", math.nan)
        # the floors were measured at n = 500; spectral noise grows like 1/sqrt(n) below that
        small_n = math.sqrt(500.0 / n_pts) if 0 < n_pts < 500 else 1.0
        worst: tuple[float, str, float, float, float] | None = None
        fired = []
        for name, (sign, v, base) in tracked.items():
            if not base.finite().size or not math.isfinite(v):
                continue
            center, sd = base.median, base.std
            floor = self.ci_floor if name == "ci" else self.rel_floor * abs(center) * small_n
            sigma = max(sd, floor, 1e-12)
            zv = (v - center) / sigma
            toward = sign * zv  # > 0: towards collapse
            ok = {"both": abs(zv), "up": toward, "down": -toward}[self.direction] > self.z
            if ok:
                fired.append((abs(zv), name, zv, center, v, toward))
            if worst is None or abs(zv) > worst[0]:
                worst = (abs(zv), name, zv, center, v)
        fired.sort(reverse=True)
        return fired, worst

    def _previous(self, k: int):
        """The excursions of the k-th last recorded check (k >= 1), or None when that check
        was a baseline check or does not exist."""
        h = self._hist
        n = len(h["step"])
        if n - k < self.baseline_checks:
            return None
        return self._excursions(h["ci"][n - k], {c: h[c][n - k] for c in self._columns})[0]

    def _baseline_rule(self, ci, values, scores, weights):
        fired, worst = self._excursions(ci, values)
        if fired:
            _, name, zv, center, v, toward = fired[0]
            dom = self._top_score(scores, weights) if name == "ci" else name
            verb = "rose" if v > center else "fell"
            what = _SUGGESTION.get(dom, "") if toward > 0 else _AWAY
            reason = (
                f"{name} {verb} to {v:.4g} from baseline {center:.4g} (z={zv:+.1f}, "
                f"|z| > {self.z}): {what}"
            )
            if len(fired) > 1:
                reason += "; also " + ", ".join(f"{f[1]} (z={f[2]:+.1f})" for f in fired[1:])
            if self.confirm == 1:
                # the rule before `confirm` existed: one check beyond z is WATCH; a move toward
                # collapse that persists into a second consecutive check is COLLAPSE
                prev = self._hist["state"][-1] if self._hist["state"] else State.HEALTHY
                persists = toward > 0 and prev is not State.HEALTHY
                return (State.COLLAPSE if persists else State.WATCH), reason, dom, zv
            # one check of a 64-sample batch beyond z is often noise (its own outlier): WATCH
            # once `confirm` consecutive checks are beyond z; COLLAPSE once a move towards
            # collapse beyond collapse_z is in `confirm` consecutive checks
            earlier = [self._previous(k) for k in range(1, self.confirm)]
            cz = self.z if self.collapse_z is None else self.collapse_z
            if all(e for e in earlier):
                if all(any(f[5] > cz for f in e) for e in [fired, *earlier]):
                    return State.COLLAPSE, reason, dom, zv
                return State.WATCH, reason, dom, zv
            seen = 1 + next(k for k, e in enumerate(earlier) if not e)
            reason = (
                f"{name} z={zv:+.1f} beyond {self.z} on {seen} of {self.confirm} consecutive "
                "checks (not yet an alarm)"
            )
            return State.HEALTHY, reason, dom, zv
        top = "" if worst is None else f" (largest: {worst[1]} z={worst[2]:+.1f})"
        dom = "" if worst is None else worst[1]
        zv = math.nan if worst is None else worst[2]
        if ci > self.threshold:
            return State.WATCH, f"CI {ci:.4f} > {self.threshold}, no excursion{top}", dom, zv
        return State.HEALTHY, f"all within {self.z} std of baseline{top}", dom, zv

    # --- report --------------------------------------------------------------------------

    def report(self, format: str = "markdown") -> str:
        """Seed 000's table (epoch, CI, status) plus the component columns.

        ``format="html"`` gives an HTML table with an inline PNG plot of the CI when
        matplotlib is installed (a plain table otherwise).
        """
        check_choice(format, "format", ("markdown", "html"))
        from ..report import collapse_report

        return collapse_report(self._hist, list(self._columns), self.threshold, format)


def _nonneg(x: Any, name: str, *, positive: bool = False) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a number, got {describe(x)}") from None
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        want = "a positive" if positive else "a non-negative"
        raise InputError(f"{name} must be {want} finite number, got {x!r}")
    return v


def _scalar(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _nanmedian(values: list[float]) -> float:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.median(a)) if a.size else math.nan
