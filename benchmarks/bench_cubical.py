"""Sublevel-set H0 persistence of images: streamtopo vs cripser (Cubical Ripser) and gudhi.

Run: ``PYTHONPATH=. python benchmarks/bench_cubical.py [--quick]``. Prints a markdown table.

Every library gets the same float64 maps and the T-construction (8-connectivity, a pixel is a
closed square): ``cubical_diagrams(maps, connectivity=8)``,
``cripser.compute_ph(m, filtration="T", maxdim=0)``, and
``gudhi.CubicalComplex(top_dimensional_cells=m).persistence()`` (gudhi has no H0-only switch,
so it also computes H1; its H0 is the same, and its time is reused for the H0+H1 row). Times
are wall-clock, the best of 2 runs (1 for 1024x1024); ours after one warm-up call (numba
compile excluded). Before timing, the diagrams are checked equal on the first map of each
workload.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _best(fn, repeat: int, warm: bool = True) -> float:
    if warm:  # compile / first-call costs are excluded (the references have none to pay)
        fn()
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _canon(d):
    d = np.asarray(d, dtype=float).reshape(-1, 2)
    d = d[d[:, 1] > d[:, 0]]
    return d[np.lexsort((d[:, 0], d[:, 1]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a 64 x 32 batch instead of 256 x 32")
    args = ap.parse_args()

    import cripser
    import gudhi

    from streamtopo.topology.cubical import betti_curves, cubical_diagrams

    rng = np.random.default_rng(0)
    repeat = 2
    batch = (64, 32) if args.quick else (256, 32)
    workloads = [
        ("64x64", rng.normal(size=(1, 64, 64))),
        ("256x256", rng.normal(size=(1, 256, 256))),
        ("1024x1024", rng.normal(size=(1, 1024, 1024))),
        (f"batch {batch[0]}x{batch[1]} of 16x16", rng.normal(size=(*batch, 16, 16))),
    ]

    def ours(x, conn=8):
        return cubical_diagrams(x, connectivity=conn)

    def crip(x, filt="T", maxdim=0):
        flat = x.reshape(-1, *x.shape[-2:])
        return [cripser.compute_ph(m, filtration=filt, maxdim=maxdim) for m in flat]

    def gud(x, filt="T"):
        flat = x.reshape(-1, *x.shape[-2:])
        if filt == "T":
            return [gudhi.CubicalComplex(top_dimensional_cells=m).persistence() for m in flat]
        return [gudhi.CubicalComplex(vertices=m).persistence() for m in flat]

    levels = np.linspace(-3.0, 3.0, 64)
    cases = [(name, x, 8, "T") for name, x in workloads]
    cases.append((workloads[-1][0] + ", 4-conn", workloads[-1][1], 4, "V"))

    rows = []
    for name, x, conn, filt in cases:
        first = x.reshape(-1, *x.shape[-2:])[0]
        ref_c = cripser.compute_ph(first, filtration=filt, maxdim=0)[:, 1:3]
        ref_g = [p for dim, p in gud(first[None], filt)[0] if dim == 0]
        mine = _canon(ours(first[None], conn)[0])
        assert np.array_equal(mine, _canon(ref_c)) and np.array_equal(mine, _canon(ref_g)), name
        r = 1 if x.shape[-1] >= 1024 else repeat
        t_ours = _best(lambda x=x, conn=conn: ours(x, conn), r)
        t_c = _best(lambda x=x, filt=filt: crip(x, filt), r, warm=False)
        t_g = _best(lambda x=x, filt=filt: gud(x, filt), r, warm=False)
        rows.append((f"H0 diagrams, {name}", t_ours, t_c, t_g))

    # H0 + H1 diagrams (H1 by duality: a second union-find on -f) vs cripser maxdim=1
    xb = workloads[-1][1]
    first = xb.reshape(-1, *xb.shape[-2:])[0]
    ph = cripser.compute_ph(first, filtration="T", maxdim=1)
    assert np.array_equal(
        _canon(cubical_diagrams(first, 8, dim=1)[0]), _canon(ph[ph[:, 0] == 1][:, 1:3])
    )
    t_ours = _best(lambda: (ours(xb), cubical_diagrams(xb, 8, dim=1)), repeat)
    t_c = _best(lambda: crip(xb, "T", 1), repeat, warm=False)
    rows.append((f"H0+H1 diagrams, {workloads[-1][0]}", t_ours, t_c, rows[-2][3]))

    # Betti curves beta0 and beta1 at 64 levels (+ areas, total persistence) vs the H0 + H1
    # persistence the references need for the same curves (curve counting not included)
    t_ours = _best(lambda: betti_curves(xb, levels, 8), repeat)
    t_c = _best(lambda: crip(xb, "T", 1), repeat, warm=False)
    t_g = _best(lambda: gud(xb, "T"), repeat, warm=False)
    rows.append((f"beta0+beta1 curves, {workloads[-1][0]}", t_ours, t_c, t_g))

    load = os.getloadavg()
    print(
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"best of {repeat} (1 for 1024x1024), T-construction = 8-conn unless noted\n"
    )
    print("| workload | streamtopo | cripser | gudhi | cripser / ours | gudhi / ours |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, a, c, g in rows:
        print(f"| {name} | {a * 1e3:.2f} ms | {c * 1e3:.2f} ms | {g * 1e3:.2f} ms "
              f"| {c / a:.1f}x | {g / a:.1f}x |")  # fmt: skip


if __name__ == "__main__":
    main()
