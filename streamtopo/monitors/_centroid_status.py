"""The record CentroidMonitor.check returns, and the ``difficulty`` label helper."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .._validation import check_positive_int, describe
from ..errors import InputError, InputTypeError
from ._status import MonitorStatus

__all__ = ["GapStatus", "difficulty"]

# seed 004's difficulty labels restated per merge (mean death); see difficulty()
_DIFFICULTY_EDGES = (0.15, 0.40)


@dataclass(frozen=True, slots=True)
class GapStatus(MonitorStatus):
    """What one :meth:`CentroidMonitor.check` found (immutable).

    ``step`` counts checks from 1. ``h0_train`` is the size-matched train H0 used in the gap
    (``h0_gap = h0_train - h0_test``), ``h0_train_full`` the H0 of all train rows (NaN when not
    computed, see ``history``). ``gap_noise`` is the gap's standard error; ``deviation`` is
    ``(gap - baseline_gap) / sd`` under ``rule="baseline"`` (sd combines this check's and the
    baseline's noise). ``alert`` is this check's gap rule (seed 004's name; the uniform "not
    HEALTHY" is :attr:`~MonitorStatus.alarm`), ``direction`` "rising"/"falling" when it fired,
    ``alert_streak`` the consecutive alerts, ``gap_stop`` the streak reached ``patience``. The
    ``*loss*`` fields are the early-stopping rule on ``test_loss`` (NaN when no loss was given);
    ``should_stop = gap_stop or loss_stop``. ``state`` is COLLAPSE when ``should_stop``, WATCH
    on an alert or a check without a new loss minimum, else HEALTHY; ``calibrating`` is True
    while ``rule="baseline"`` has no baseline yet. ``n_train``/``n_test`` are the summed
    effective class sizes of the matched sides, ``size_matched`` whether every class could be
    matched. ``missing_classes`` lack rows on a split and are left out of both H0s;
    ``dropped_rows`` counts NaN/inf/zero rows since the last check. ``valid`` is False when the
    gap is undefined (fewer than two classes on both splits); the numbers are then NaN and
    ``reason`` says why.
    """

    kind: ClassVar[str] = "centroid"

    h0_train: float = math.nan
    h0_test: float = math.nan
    h0_gap: float = math.nan
    gap_noise: float = math.nan
    baseline_gap: float = math.nan
    deviation: float = math.nan
    alert: bool = False
    direction: str = ""
    alert_streak: int = 0
    gap_stop: bool = False
    test_loss: float = math.nan
    best_test_loss: float = math.nan
    loss_checks_since_best: int = 0
    loss_stop: bool = False
    should_stop: bool = False
    h0_train_full: float = math.nan
    n_train: float = 0.0
    n_test: float = 0.0
    size_matched: bool = False
    missing_classes: tuple[str, ...] = ()
    dropped_rows: int = 0
    valid: bool = False

    def as_row(self) -> dict[str, Any]:
        """Scalar columns for the run writer (``missing_classes`` joined by commas)."""
        row = {f.name: getattr(self, f.name) for f in fields(self)}
        row["state"] = str(self.state)
        row["missing_classes"] = ",".join(self.missing_classes)
        return row


def difficulty(h0: float, n_classes: int = 10) -> str:
    """A coarse label for the H0 of ``n_classes`` centroids: "easy", "medium" or "hard".

    The label uses the mean merge distance ``h0 / (n_classes - 1)`` (cosine): >= 0.40 "easy",
    >= 0.15 "medium", below "hard". These cut points only restate seed 004's own labels of its
    three examples (MNIST 4.38 "easy", Fashion 2.35 and CIFAR-10 2.02 "medium", 10 classes) per
    merge; no measurement here shows that they predict final accuracy. Use the label as a
    description of how far apart the classes are, not as a forecast.

    Examples
    --------
    >>> difficulty(4.38), difficulty(2.02), difficulty(0.9, n_classes=10)
    ('easy', 'medium', 'hard')
    """
    n = check_positive_int(n_classes, "n_classes", minimum=2)
    try:
        h = float(h0)
    except (TypeError, ValueError):
        raise InputTypeError(f"h0 must be a number, got {describe(h0)}") from None
    if not (h >= 0.0 and math.isfinite(h)):
        raise InputError(f"h0 must be a finite number >= 0, got {h0!r}")
    mean = h / (n - 1)
    if mean >= _DIFFICULTY_EDGES[1]:
        return "easy"
    return "medium" if mean >= _DIFFICULTY_EDGES[0] else "hard"
