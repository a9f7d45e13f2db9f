"""Monitors: stateful objects with ``check()``, ``reset()``, ``state_dict()``,
``load_state_dict()`` and their own step counter. They never touch files; public names are
re-exported from ``streamtopo`` (e.g. ``streamtopo.LayerMonitor``)."""

"""Monitors: stateful shells over the functional API. They return frozen statuses and hand
plain-dict rows to an optional writer; they never touch files."""
