"""Data shipped with the package (see DIGITS_LICENSE.txt for attribution)."""

from __future__ import annotations

from importlib import resources

import numpy as np

__all__ = ["load_digits"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 handwritten digits: ``(images, labels)``, float32 (1797, 64) in [0, 1] and int64.

    Examples
    --------
    >>> X, y = load_digits()
    >>> X.shape, y.shape, int(y.max())
    ((1797, 64), (1797,), 9)
    """
    with resources.files(__package__).joinpath("digits.npz").open("rb") as fh:
        with np.load(fh, allow_pickle=False) as z:
            images = z["images"].astype(np.float32) / np.float32(16.0)
            labels = z["labels"].astype(np.int64)
    return images, labels
