"""CentroidMonitor: streaming class centroids, the train/test H0 gap, confusion pairs.

Seed 004's PHMonitor takes per-class mean feature directions on a train and a test split,
computes the H0 of each set of centroids under the cosine distance and alerts when
``h0_gap = h0_train - h0_test`` exceeds 0.08. Measured on digits (55 runs, issue 7) that alert
never fired before test accuracy fell under label noise, flipped sign on a CNN, fired on every
clean MLP run, and its threshold equalled the sampling noise of the gap. So the default here is:

* **size matched** — on each class both splits contribute a (weighted) mean of the same
  effective size, because H0 of sample centroids depends on how many rows made them (random
  150-row test sets of digits against the other 1647 rows, one distribution: unmatched gap
  -0.084 on average, the seed's whole threshold; matched +0.001, 200 splits);
* **noise aware** — ``gap_noise`` is a delta-method standard error: the gradient of H0 with
  respect to each class mean (tree held fixed) times that class's row dispersion, estimated
  from R random groups of rows (on those digits splits it was 1.12-1.18x the real spread of
  the gap); the default rule alerts on ``|gap - baseline| > k * noise`` (two-sided);
* **test-loss patience beside it** — ``check(test_loss=...)`` runs plain early stopping, the best
  simple rule measured, and the status reports both.

In EMA mode successive checks share most of their rows, so ``patience`` consecutive alerts
are weaker evidence than in epoch mode. The topology that the gap cannot summarise is kept:
:meth:`CentroidMonitor.confusion_pairs`, :meth:`~CentroidMonitor.linkage`,
:meth:`~CentroidMonitor.dendrogram_text` and :meth:`~CentroidMonitor.merge_order_history`.

Memory: float64 sums of shape (2 splits, R, n_classes, d) — ``16 * R * n_classes * d`` bytes
(R = ``groups``, default 8: 5.2 MB for 10 classes x 4096 dims, 524 MB for 1000 x 4096; lower
``groups`` for very wide heads).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._validation import check_choice, check_positive_int, describe
from ..alarms import FrozenBaseline, State, Streak
from ..errors import InputError, InputTypeError
from ..topology import MergeEdges
from ..topology import centroid as stats
from ._base import Monitor
from ._centroid_inputs import as_features, as_labels, finite_float, positive_float
from ._centroid_status import GapStatus, difficulty
from ._centroid_tree import dendrogram_text, merge_history_frame, pairs_in_merge_order

__all__ = ["CentroidMonitor", "GapStatus", "difficulty"]

_SPLITS = ("train", "test")
_RULES = ("baseline", "seed")
_MODES = ("epoch", "ema")


class CentroidMonitor(Monitor):
    """Streaming per-class centroid directions on a train and a test split, their H0 gap,
    and the classes' merge structure.

    Parameters
    ----------
    n_classes : int
        Number of classes; labels are integers in ``[0, n_classes)``.
    class_names : sequence of str, optional
        Names used in confusion pairs and the dendrogram (default ``"0"``, ``"1"``, ...).
    rule : {"baseline", "seed"}
        ``"baseline"`` (default): alert when ``|gap - baseline| > k * sd`` with
        ``sd = sqrt(noise**2 + mean(baseline noise**2) / baseline_checks)``, two-sided;
        the baseline is the mean gap of the ``baseline_checks`` checks after ``warmup``.
        ``"seed"``: alert when ``gap > gap_threshold`` (one-sided), as in seed 004 (pass
        ``matched_size=None`` too for the seed's unmatched gap).
    patience : int
        Consecutive alerts before ``should_stop`` (and checks without a new test-loss minimum
        before the loss rule stops), default 3 as in seed 004.
    metric : {"cosine", "euclidean"}
        Distance between unit centroids (euclidean = ``sqrt(2 * cosine)``, the same tree).
    mode : {"epoch", "ema"}
        ``"epoch"``: accumulators are emptied after every check (one check per pass over the
        data). ``"ema"``: they persist and every ``update`` first multiplies a split's sums by
        ``0.5 ** (1 / half_life)`` (per-step use; half-life counted in update calls).
    half_life : float
        EMA half-life in update calls of a split (``mode="ema"``), default 50.
    matched_size : "min", int or None
        ``"min"`` (default): on each class both sides use a mean of the same effective size,
        the smaller side's. An int ``m``: at most ``m`` per class on both sides. ``None``: all
        rows (the seed's form).
    groups : int
        R random groups of rows (2 <= R <= 30, default 8), for the noise (class dispersion from R
        group means) and for size matching. Group g receives a share ``2**g / (2**R - 1)`` of
        the rows, so matching (which takes groups smallest first, the last one fractionally)
        can shrink a side to any fraction down to ``1 / (2**R - 1)`` (1/255 for R = 8);
        a larger size ratio is flagged (``size_matched=False``).
    k : float
        Alert threshold in noise units for ``rule="baseline"`` (default 3). With k = 3 and
        patience = 3: no alert in 120 rule checks on one synthetic distribution with 10x more
        train than test rows, and none of 400 random digits splits had ``|gap| > 3 noise``
        (benchmarks/RESULTS.md); the noise estimate ran 1.1-1.5x the real spread of the gap.
    gap_threshold : float
        Threshold for ``rule="seed"`` (default 0.08, seed 004).
    warmup, baseline_checks : int
        Checks ignored before the baseline (default 1: the first pass is far from steady state)
        and checks averaged into it (default 3).
    precision : {"float64", "float32"}
        dtype of the Gram product that selects tree edges (chosen edges are always re-evaluated
        in float64; float32 is ~2x faster for very wide heads, ties within ~1e-6 may then differ).
    history : {"train", "test", None}
        Which split's merge order :meth:`merge_order_history` records per check. With "train"
        (default) every check also builds the tree of all train rows (``h0_train_full``); with
        "test" or None that tree is built only when :meth:`confusion_pairs` asks for it and
        ``h0_train_full`` is NaN whenever the train side was down-weighted (one H0 less per
        check).
    seed : int
        Seed of the generator assigning rows to groups (deterministic, stored in state_dict).
    writer : callable, optional
        Called after every check with a dict row (``monitor="centroid"``).
    name : str, optional
        The monitor's identity in the run log ([a-z0-9_], at most 32 characters): its rows go
        to table ``centroid.<name>`` instead of ``centroid`` (e.g. ``"eval"`` beside a train monitor
        on the same writer, which refuses two unnamed monitors of one kind).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> means = np.eye(3, 8) * 3
    >>> mon = CentroidMonitor(3, class_names=["cat", "dog", "car"], warmup=0, baseline_checks=1)
    >>> for split, n in (("train", 300), ("test", 120)):
    ...     y = rng.integers(0, 3, n)
    ...     _ = mon.update(means[y] + rng.normal(size=(n, 8)), y, split=split)
    >>> s = mon.check()
    >>> s.step, s.state, s.reason
    (1, <State.HEALTHY: 'HEALTHY'>, 'baseline 1/1')
    >>> len(mon.confusion_pairs())
    2
    """

    kind = "centroid"
    _config_keys = (
        "n_classes",
        "class_names",
        "rule",
        "patience",
        "metric",
        "mode",
        "half_life",
        "matched_size",
        "groups",
        "k",
        "gap_threshold",
        "warmup",
        "baseline_checks",
        "precision",
        "history",
        "seed",
    )
    _state_ = (
        "_d",
        "_sums",
        "_wsum",
        "_w2sum",
        "_rng_state",
        "_dropped",
        "_base_gap",
        "_base_noise2",
        "_streak",
        "_best_loss",
        "_loss_streak",
        "_n_alerts",
        "_first_alert_step",
        "_log",
        "_history",
        "_snap",
        "_trees",
    )
    _last: GapStatus | None

    def __init__(
        self,
        n_classes: int,
        class_names: Sequence[str] | None = None,
        *,
        rule: str = "baseline",
        patience: int = 3,
        metric: str = "cosine",
        mode: str = "epoch",
        half_life: float = 50.0,
        matched_size: int | str | None = "min",
        groups: int = 8,
        k: float = 3.0,
        gap_threshold: float = 0.08,
        warmup: int = 1,
        baseline_checks: int = 3,
        precision: str = "float64",
        history: str | None = "train",
        seed: int = 0,
        writer: Callable[[dict[str, Any]], Any] | None = None,
        name: str | None = None,
    ) -> None:
        self.n_classes = check_positive_int(n_classes, "n_classes", minimum=2)
        if class_names is None:
            names = tuple(str(c) for c in range(self.n_classes))
        else:
            if isinstance(class_names, (str, bytes)) or not all(
                isinstance(c, str) for c in class_names
            ):
                raise InputTypeError(
                    f"class_names must be a sequence of str, got {describe(class_names)}"
                )
            names = tuple(class_names)
            if len(set(names)) != len(names):
                raise InputError(f"class_names must be unique, got {list(names)}")
            if len(names) != self.n_classes:
                raise InputError(
                    f"class_names has {len(names)} names, expected n_classes={self.n_classes}"
                )
        self.class_names = names
        self.rule = check_choice(rule, "rule", _RULES)
        self.patience = check_positive_int(patience, "patience")
        self.metric = check_choice(metric, "metric", ("cosine", "euclidean"))
        self.mode = check_choice(mode, "mode", _MODES)
        self.half_life = positive_float(half_life, "half_life")
        if not (matched_size is None or (isinstance(matched_size, str) and matched_size == "min")):
            if isinstance(matched_size, bool) or not isinstance(matched_size, (int, np.integer)):
                raise InputTypeError(
                    'matched_size must be "min", None or an integer >= 1, '
                    f"got {describe(matched_size)}"
                )
            matched_size = check_positive_int(matched_size, "matched_size")
        self.matched_size = matched_size
        self.groups = check_positive_int(groups, "groups", minimum=2)
        if self.groups > 30:
            raise InputError(f"groups must be an integer in [2, 30], got {self.groups}")
        self.k = positive_float(k, "k")
        self.gap_threshold = finite_float(gap_threshold, "gap_threshold")
        self.warmup = check_positive_int(warmup, "warmup", minimum=0)
        self.baseline_checks = check_positive_int(baseline_checks, "baseline_checks")
        self.precision = check_choice(precision, "precision", ("float64", "float32"))
        if history is not None:
            check_choice(history, "history", _SPLITS)
        self.history = history
        self.seed = check_positive_int(seed, "seed", minimum=0)
        self._attach(writer, name)
        # cumulative group shares 2**g / (2**R - 1), exact in float64 for R <= 52
        self._group_edges = np.cumsum(2.0 ** np.arange(self.groups)) / (2.0**self.groups - 1)
        self.reset()

    # ------------------------------------------------------------------ state
    def _init_state(self) -> None:
        """Forget all data, the baseline, the loss record and the history."""
        self._d: int | None = None
        self._sums: np.ndarray | None = None  # (2, R, K, d)
        self._wsum = np.zeros((2, self.groups, self.n_classes))
        self._w2sum = np.zeros((2, self.groups, self.n_classes))
        self._rng = np.random.default_rng(self.seed)
        self._dropped = 0
        self._kept = 0
        self._base_gap = FrozenBaseline(self.baseline_checks)  # gaps of the baseline checks
        self._base_noise2 = FrozenBaseline(self.baseline_checks)  # and their noise**2
        self._streak = Streak(self.patience, name="patience")  # consecutive gap alerts
        self._best_loss = math.inf
        self._loss_streak = Streak(self.patience, name="patience")  # checks without a new best
        self._n_alerts = 0
        self._first_alert_step = -1
        self._log: list[tuple[int, float, float, float, str]] = []  # step, h0s, gap, state
        self._history: list[tuple[int, int, int, int, float]] = []  # step, a, b, rank, dist
        self._snap: dict[str, np.ndarray] = {}  # last check's centroid sums per split
        self._trees: dict[str, MergeEdges] = {}  # last check's trees per split

    @property
    def _rng_state(self) -> dict[str, Any]:
        """The group generator's state (plain ints and strings), as ``state_dict`` stores it."""
        return self._rng.bit_generator.state

    @_rng_state.setter
    def _rng_state(self, state: dict[str, Any]) -> None:
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        self._rng = rng

    def _after_load(self) -> None:
        shape = (2, self.groups, self.n_classes)
        if self._sums is not None:
            if self._d is None or self._sums.shape != (*shape, self._d):
                raise InputError(
                    f"state['sums'] has shape {self._sums.shape}, expected {(*shape, self._d)}"
                )
            self._sums = self._sums.astype(np.float64)
        self._trees = {k: MergeEdges(*v) for k, v in self._trees.items()}

    def merge(self, other: CentroidMonitor) -> None:
        """Add the rows ``other`` has accumulated since its last check (another rank, another
        data-loader worker) to this monitor's accumulators; ``other`` is unchanged.

        Both monitors need the same configuration except ``seed`` (give each rank its own seed
        so their group draws are independent) and the same feature width. Group sums add
        exactly, so the merged centroids and effective sizes equal those of one monitor that
        saw every row with the merged group assignment.
        """
        if not isinstance(other, CentroidMonitor):
            raise InputTypeError(f"other must be a CentroidMonitor, got {describe(other)}")
        mine = {k: v for k, v in self.config.items() if k != "seed"}
        theirs = {k: v for k, v in other.config.items() if k != "seed"}
        if mine != theirs:
            diff = sorted(k for k in mine if mine[k] != theirs[k])
            raise InputError(f"other has a different configuration ({', '.join(diff)})")
        if other._sums is None:
            return
        if self._d is not None and other._d != self._d:
            raise InputError(f"other has {other._d} feature columns, expected {self._d}")
        if self._sums is None:
            self._d = other._d
            self._sums = np.zeros_like(other._sums)
        self._sums += other._sums
        self._wsum += other._wsum
        self._w2sum += other._w2sum
        self._dropped += other._dropped

    # ------------------------------------------------------------------ update
    def update(self, features: Any, labels: Any, split: str = "train") -> int:
        """Add a batch of feature rows with their integer labels to ``split``.

        Rows are L2-normalised; rows with NaN/inf or all zeros are dropped and counted
        (``GapStatus.dropped_rows``). Returns the number of rows kept. On an argument error
        nothing changes.
        """
        s = _SPLITS.index(check_choice(split, "split", _SPLITS))
        X = as_features(features, self._d)
        y = as_labels(labels, X.shape[0], self.n_classes)
        self._add(s, X, y)
        return int(self._kept)

    def _add(self, s: int, X: np.ndarray, y: np.ndarray) -> None:
        from .._kernels.centroid import row_scales, scatter_unit_rows

        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        X = np.ascontiguousarray(X)
        m = np.empty(X.shape[0])
        norm = np.empty(X.shape[0])
        row_scales(X, m, norm)
        rows = np.flatnonzero(m > 0)
        y = y[rows]
        if self._sums is None:
            self._d = X.shape[1]
            self._sums = np.zeros((2, self.groups, self.n_classes, self._d))
        if self.mode == "ema":
            lam = 0.5 ** (1.0 / self.half_life)
            self._sums[s] *= lam
            self._wsum[s] *= lam
            self._w2sum[s] *= lam * lam
        # one double per kept row, so chunked streams draw exactly what one big batch draws;
        # group g gets a share 2**g / (2**R - 1) of the rows (see the class docstring)
        g = np.searchsorted(self._group_edges, self._rng.random(rows.shape[0]), side="right")
        key = g * self.n_classes + y
        K = self.groups * self.n_classes
        scatter_unit_rows(
            X,
            rows,
            m,
            norm,
            key,
            1.0,
            self._sums[s].reshape(K, self._d),
            self._wsum[s].reshape(K),
            self._w2sum[s].reshape(K),
        )
        self._dropped += int(X.shape[0] - rows.shape[0])
        self._kept = rows.shape[0]

    # ------------------------------------------------------------------ check
    def check(
        self,
        dirs_train: Any = None,
        labels_train: Any = None,
        dirs_test: Any = None,
        labels_test: Any = None,
        *,
        test_loss: float | None = None,
    ) -> GapStatus:
        """Compute the size-matched H0 gap, apply the rule and (given ``test_loss``) the
        early-stopping patience, and return a :class:`GapStatus`.

        With four arrays this is seed 004's one-shot form: the batches are added first (all
        four are validated before anything changes). In ``mode="epoch"`` the accumulators are
        emptied afterwards.
        """
        given = [a is not None for a in (dirs_train, labels_train, dirs_test, labels_test)]
        if any(given):
            if not all(given):
                raise InputError(
                    "check() takes all four of dirs_train, labels_train, dirs_test, labels_test "
                    "or none of them"
                )
            Xtr = as_features(dirs_train, self._d, "dirs_train")
            Xte = as_features(dirs_test, Xtr.shape[1], "dirs_test")
            ytr = as_labels(labels_train, Xtr.shape[0], self.n_classes)
            yte = as_labels(labels_test, Xte.shape[0], self.n_classes)
        loss = None
        if test_loss is not None:
            try:
                loss = float(test_loss)
            except (TypeError, ValueError):
                raise InputTypeError(
                    f"test_loss must be a number, got {describe(test_loss)}"
                ) from None
        if any(given):
            self._add(0, Xtr, ytr)
            self._add(1, Xte, yte)
        self._step += 1
        status = self._evaluate(loss)
        if self.mode == "epoch" and self._sums is not None:
            # fresh zeros (lazily zeroed pages) rather than a memset inside check()
            self._sums = np.zeros(self._sums.shape)
            self._wsum = np.zeros(self._wsum.shape)
            self._w2sum = np.zeros(self._w2sum.shape)
        self._dropped = 0
        self._last = status  # steps count from 1 here: step_ == status.step (seed 004)
        self._log.append(
            (status.step, status.h0_train, status.h0_test, status.h0_gap, str(status.state))
        )
        self._emit(status.step, **{k: v for k, v in status.as_row().items() if k != "step"})
        return status

    def _evaluate(self, loss: float | None) -> GapStatus:
        present = (self._wsum.sum(axis=1) > 0).all(axis=0)  # on both splits
        missing = tuple(self.class_names[c] for c in np.flatnonzero(~present))
        idx = np.flatnonzero(present)
        reasons: list[str] = []
        nan = float("nan")
        h_tr = h_te = gap = noise = h_full = nan
        n_tr = n_te = 0.0
        matched = False
        valid = idx.size >= 2
        if valid:
            sel = slice(None) if idx.size == self.n_classes else idx  # views, no copies
            tr = (self._sums[0][:, sel], self._wsum[0][:, sel], self._w2sum[0][:, sel])
            te = (self._sums[1][:, sel], self._wsum[1][:, sel], self._w2sum[1][:, sel])
            est = stats.gap_estimate(
                tr, te, matched_size=self.matched_size, metric=self.metric, precision=self.precision
            )
            h_tr, h_te, gap, noise = est.h0_train, est.h0_test, est.gap, est.noise
            n_tr, n_te = float(est.n_train.sum()), float(est.n_test.sum())
            matched = self.matched_size is not None and not est.unmatched.any()
            if self.matched_size is not None and est.unmatched.any():
                bad = [self.class_names[c] for c in idx[est.unmatched]][:5]
                reasons.append(
                    f"sizes not matched for {bad} (split sizes differ by more than 2**groups - 1)"
                )
            self._trees = {"test": est.test_tree.edges}
            if est.train_is_full:
                full, h_full = est.train_sums, h_tr
                self._trees["train"] = est.train_tree.edges
            else:
                full = est.train_all_sums
                if self.history == "train":  # else built on demand by confusion_pairs("train")
                    tree = stats.centroid_tree(full, metric=self.metric, precision=self.precision)
                    h_full, self._trees["train"] = tree.h0, tree.edges
            # the trees' own points: all train rows; the (matched) test side
            self._snap = {"idx": idx.astype(np.int64), "train": full, "test": est.test_sums}
            if self.history is not None:
                e = self._trees[self.history]
                for r in range(e.i.shape[0]):
                    a, b = sorted((int(idx[e.i[r]]), int(idx[e.j[r]])))
                    self._history.append((self._step, a, b, r, float(e.death[r])))
        else:
            seen = [int(np.count_nonzero(self._wsum[s].sum(axis=0) > 0)) for s in (0, 1)]
            reasons.append(
                f"gap undefined: classes seen on both splits = {idx.size} (train {seen[0]}, "
                f"test {seen[1]}), need at least 2"
            )
            self._trees = {}
            self._snap = {}
        if self._dropped:
            reasons.insert(0, f"{self._dropped} row(s) with NaN/inf or zero norm dropped")
        calibrating = self.rule == "baseline" and not self._base_gap.ready
        alert, direction, base, dev, rule_reason = self._apply_rule(valid, gap, noise)
        reasons.insert(0, rule_reason)
        streak = self._streak.update(alert)
        if alert:
            self._n_alerts += 1
            if self._first_alert_step < 0:
                self._first_alert_step = self._step
        gap_stop = self._streak.done
        if gap_stop:
            reasons[0] += f"; {streak} consecutive alerts >= patience {self.patience}"
        loss_stop = False
        loss_val = nan if loss is None else loss
        if loss is not None:
            improved = math.isfinite(loss) and loss < self._best_loss
            if improved:
                self._best_loss = loss
            self._loss_streak.update(not improved)
            loss_stop = self._loss_streak.done
            if self._loss_streak.count:
                what = "is not finite" if not math.isfinite(loss) else "did not improve"
                reasons.append(
                    f"test loss {what} ({self._loss_streak.count} check(s) since best "
                    f"{self._best_loss:.4g})" + ("; loss patience exhausted" if loss_stop else "")
                )
        stop = gap_stop or loss_stop
        if stop:
            state = State.COLLAPSE
        elif alert or self._loss_streak.count > 0:
            state = State.WATCH
        else:
            state = State.HEALTHY
        return GapStatus(
            step=self._step,
            h0_train=h_tr,
            h0_test=h_te,
            h0_gap=gap,
            gap_noise=noise,
            baseline_gap=base,
            deviation=dev,
            alert=alert,
            direction=direction,
            alert_streak=streak,
            gap_stop=gap_stop,
            test_loss=loss_val,
            best_test_loss=self._best_loss if loss is not None else nan,
            loss_checks_since_best=self._loss_streak.count,
            loss_stop=loss_stop,
            should_stop=stop,
            state=state,
            reason="; ".join(r for r in reasons if r),
            h0_train_full=h_full,
            n_train=n_tr,
            n_test=n_te,
            size_matched=matched,
            missing_classes=missing,
            dropped_rows=self._dropped,
            valid=valid,
            calibrating=calibrating,
        )

    def _apply_rule(self, valid: bool, gap: float, noise: float):
        """(alert, direction, baseline, deviation, reason) for this check's gap."""
        nan = float("nan")
        if not valid:
            return False, "", self._baseline_gap(), nan, "no gap"
        if self.rule == "seed":
            alert = gap > self.gap_threshold
            reason = f"gap {gap:+.4f} {'>' if alert else '<='} {self.gap_threshold}"
            return alert, "rising" if alert else "", nan, nan, reason
        if self._step <= self.warmup:
            return False, "", nan, nan, "warmup"
        if not self._base_gap.ready:
            if math.isfinite(noise):
                self._base_gap.push(gap)
                self._base_noise2.push(noise * noise)
                n = self._base_gap.count
                return False, "", nan, nan, f"baseline {n}/{self.baseline_checks}"
            return False, "", nan, nan, "baseline: noise undefined, check not used"
        base = self._baseline_gap()
        sd = math.sqrt(noise * noise + self._base_noise2.mean / self._base_gap.count)
        if not math.isfinite(sd) or sd == 0.0:
            return False, "", base, nan, "noise undefined (too few rows per group)"
        dev = (gap - base) / sd
        alert = abs(dev) > self.k
        direction = ("rising" if dev > 0 else "falling") if alert else ""
        reason = (
            f"gap {gap:+.4f} vs baseline {base:+.4f}: {dev:+.1f} sd "
            f"({'>' if alert else '<='} {self.k:g})"
        )
        return alert, direction, base, dev, reason

    def _baseline_gap(self) -> float:
        return self._base_gap.mean if self._base_gap.ready else float("nan")

    # ------------------------------------------------------------------ results
    @property
    def should_stop(self) -> bool:
        """True when the last check reached ``patience`` truly consecutive gap alerts, or the
        test loss has not improved for ``patience`` checks."""
        return self._last is not None and self._last.should_stop

    def summary(self) -> dict[str, Any]:
        """Counts and the gap trend over all checks."""
        gaps = np.array([g for _, _, _, g, _ in self._log if math.isfinite(g)])
        trend = "flat"
        if gaps.size >= 3:
            slope = np.polyfit(np.arange(gaps.size), gaps, 1)[0] * (gaps.size - 1)
            spread = float(np.std(gaps)) or 1.0
            trend = "increasing" if slope > spread else "decreasing" if slope < -spread else "flat"
        last = self._last
        return {
            "steps": self._step,
            "gap_trend": trend,
            "alerts": self._n_alerts,
            "first_alert_step": None if self._first_alert_step < 0 else self._first_alert_step,
            "should_stop": self.should_stop,
            "final_status": "HEALTHY" if last is None else str(last.state),
            "baseline_gap": self._baseline_gap(),
            "last_gap": float("nan") if last is None else last.h0_gap,
            "best_test_loss": self._best_loss if math.isfinite(self._best_loss) else None,
        }

    # ------------------------------------------------------------------ merge structure
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
        kk = None if k is None else check_positive_int(k, "k", minimum=0)
        return pairs_in_merge_order(e, idx, self.class_names, kk)

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
        return dendrogram_text(self.confusion_pairs(split))

    def merge_order_history(self):
        """polars DataFrame of every recorded merge: step, class_a, class_b, pair, rank
        (0 = first merge), distance — to see when two classes start to merge."""
        return merge_history_frame(self._history, self.class_names)

    def centroids_(self, split: str = "train") -> np.ndarray:
        """Unit centroid directions of the last check (rows follow ``linkage_classes_``)."""
        check_choice(split, "split", _SPLITS)
        if not self._snap:
            raise InputError("no valid check yet")
        return stats.unit_rows(self._snap[split])
