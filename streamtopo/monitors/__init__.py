"""Monitors: stateful shells over the functional API. They return frozen statuses and hand
plain-dict rows to an optional writer; they never touch files."""
