"""Deprecated alias of :mod:`streamtopo.topology.collapse`, kept for one release.

Import from :mod:`streamtopo.topology.collapse` (or :mod:`streamtopo.topology`) instead. No
warning is raised at import (the test suite runs with ``filterwarnings = error``); this module
will be removed in the next release.
"""

from __future__ import annotations

from .topology.collapse import (
    COMPONENTS,
    DEFAULT_WEIGHTS,
    SEED000_WEIGHTS,
    VARIANTS,
    collapse_components,
    collapse_index,
)

__all__ = [
    "COMPONENTS",
    "DEFAULT_WEIGHTS",
    "SEED000_WEIGHTS",
    "VARIANTS",
    "collapse_components",
    "collapse_index",
]
