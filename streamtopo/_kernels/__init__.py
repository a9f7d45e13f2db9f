"""Numba kernels: pure functions on numpy arrays (no classes, no I/O, no validation).

Public wrappers that validate input live in :mod:`streamtopo.topology` and the monitors.
"""
