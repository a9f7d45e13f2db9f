"""Status vocabulary shared by every monitor.

``State`` is a ``StrEnum`` so statuses compare equal to the plain strings users print and log
(``status.state == "COLLAPSE"``).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["State"]


class State(StrEnum):
    """Health of the monitored structure, ordered by severity."""

    HEALTHY = "HEALTHY"
    WATCH = "WATCH"
    COLLAPSE = "COLLAPSE"

    @property
    def severity(self) -> int:
        """0 for HEALTHY, 1 for WATCH, 2 for COLLAPSE."""
        return _SEVERITY[self]


_SEVERITY = {State.HEALTHY: 0, State.WATCH: 1, State.COLLAPSE: 2}
