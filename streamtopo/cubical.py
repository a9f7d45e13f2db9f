"""Deprecated alias of :mod:`streamtopo.topology.cubical`, kept for one release.

Import from :mod:`streamtopo.topology.cubical` (or :mod:`streamtopo.topology`) instead. No
warning is raised at import (the test suite runs with ``filterwarnings = error``); this module
will be removed in the next release.
"""

from __future__ import annotations

from .topology.cubical import (
    CONNECTIVITY,
    BettiCurves,
    betti_curves,
    cubical_diagram,
    cubical_diagrams,
)

__all__ = ["CONNECTIVITY", "BettiCurves", "betti_curves", "cubical_diagram", "cubical_diagrams"]
