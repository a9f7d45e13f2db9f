"""The applications on top of the library: the ``streamtopo`` command line (:mod:`.cli`), the
demo (:mod:`.demo`) and the numba cache warmers (:mod:`.warmup`).

Top of the layering (DESIGN.md §1): these modules may import anything in the package, torch
included (inside the function that trains); nothing in the package imports them.
"""
