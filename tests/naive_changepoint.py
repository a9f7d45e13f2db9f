"""The naive twin of the change detector: the pure-numpy reference the detector was designed,
calibrated and evaluated with (``benchmarks/evaluation/changepoint.py``), imported rather than
copied, so ``tests/test_changepoint.py`` checks the library's numba port against exactly the
implementation whose numbers the README reports."""

from benchmarks.evaluation.changepoint import ChangeDetector

__all__ = ["ChangeDetector"]
