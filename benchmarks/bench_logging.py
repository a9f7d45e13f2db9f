"""Logging benchmark: RunWriter end to end, its per-step latency, replay, file size.

    python benchmarks/bench_logging.py [--quick]
    python benchmarks/bench_logging.py --against REF [--reps 5]   # old vs new, per-step cost

Prints markdown tables. References measured in the same run:
- "polars at close": rows kept as Python objects, one ``pl.DataFrame`` + ``write_parquet`` at
  the end (fast, but loses everything on a crash and holds the whole run in memory);
- "csv per row": ``csv.writer`` row appends to a file opened with default buffering.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

# this checkout's streamtopo, or the one --against runs (STREAMTOPO_TREE)
sys.path.insert(0, os.environ.get("STREAMTOPO_TREE") or str(Path(__file__).resolve().parents[1]))

from streamtopo.io import RunWriter, read_run


def make_rows(n: int, n_cols: int) -> list[dict]:
    rng = np.random.default_rng(0)
    names = tuple(f"layer{i}" for i in range(n_cols))
    signals = ("grad_norm",)
    # healthy norms: per-layer levels, AR(1) noise in log space, a slow shared decay (an LR
    # schedule). Until 2026-12-06 independent random walks per layer: they drift apart, and the
    # layer monitor was in COLLAPSE on 98 % of the steps, so check() was timed on its alarm path
    ar = np.zeros((n, 1, n_cols))
    e = rng.normal(scale=0.03, size=(n, 1, n_cols))
    for t in range(1, n):
        ar[t] = 0.9 * ar[t - 1] + e[t]
    decay = -np.linspace(0.0, 2.0, n)[:, None, None]
    values = np.exp(ar + decay + rng.normal(size=(1, 1, n_cols))).astype(np.float32)
    config = {"window": 16}
    return [
        {
            "monitor": "layer",
            "step": i,
            "wall_time": 1.7e9 + i,
            "signals": signals,
            "layer_names": names,
            "values": values[i],
            "h0": float(rng.random()),
            "state": "HEALTHY",
            "reason": f"HEALTHY: |z|={i % 300 / 100:.2f}",
            "config": config,
        }
        for i in range(n)
    ]


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_writer(rows: list[dict], root: Path, repeat: int) -> tuple[float, float, int]:
    """Best wall time and best CPU time (all threads) of open + rows + close; parts' bytes."""
    best = best_cpu = float("inf")
    size = 0
    for r in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        w = RunWriter(root, run_id=f"w{r}")
        for row in rows:
            w(row)
        w.close()
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
        size = sum(p.stat().st_size for p in w.rank_dir.glob("*.parquet"))
        shutil.rmtree(w.run_dir)
    return best, best_cpu, size


def bench_polars_at_close(rows: list[dict], root: Path, repeat: int) -> float:
    best = float("inf")
    cols = [f"grad_norm/{n}" for n in rows[0]["layer_names"]]
    for _ in range(repeat):
        t0 = time.perf_counter()
        kept = []
        for row in rows:
            kept.append((row["step"], row["wall_time"], row["values"], row["h0"], row["state"]))
        steps, walls, values, h0, state = zip(*kept, strict=True)
        mat = np.stack(values).reshape(len(kept), -1)
        df = pl.DataFrame({"step": steps, "wall_time": walls, "h0": h0, "state": state})
        df = df.hstack(pl.DataFrame(mat, schema=cols))
        df.write_parquet(root / "ref.parquet", compression="zstd")
        best = min(best, time.perf_counter() - t0)
    return best


def bench_csv(rows: list[dict], root: Path, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with open(root / "ref.csv", "w", newline="") as f:
            out = csv.writer(f)
            for row in rows:
                out.writerow(
                    [row["step"], row["wall_time"], *row["values"].ravel().tolist(), row["h0"]]
                )
        best = min(best, time.perf_counter() - t0)
    return best


def latency(rows: list[dict], root: Path, pc=time.perf_counter_ns) -> dict[str, float]:
    """Per-call time of the writer, and of check() with/without it when LayerMonitor exists.

    ``pc`` is the clock: wall time (``perf_counter_ns``) includes the time this process waits
    for a core, which dominates every tail on a loaded machine; this thread's CPU time
    (``thread_time_ns``) leaves it out."""
    out: dict[str, float] = {}
    w = RunWriter(root, run_id=f"lat-{pc.__name__}")
    lat = np.empty(len(rows), np.int64)
    for i, row in enumerate(rows):
        a = pc()
        w(row)
        lat[i] = pc() - a
    w.close()
    noop = np.empty(len(rows), np.int64)
    for i in range(len(rows)):
        a = pc()
        noop[i] = pc() - a
    out["writer p50"] = np.percentile(lat, 50) / 1e3
    out["writer p99"] = np.percentile(lat, 99) / 1e3
    out["writer mean"] = lat.mean() / 1e3
    out["timer p50"] = np.percentile(noop, 50) / 1e3
    try:
        from streamtopo.monitors.layer import LayerMonitor
    except ImportError:
        return out
    n_layers = rows[0]["values"].shape[1]
    vals = np.stack([r["values"][0] for r in rows])
    # two monitors on the same stream, timed alternately step by step so that load changes on
    # this shared machine hit both alike
    wr = RunWriter(root, run_id=f"lat-check-{pc.__name__}")
    # plus a second plain monitor: the A/A control of the paired differences (what their p99
    # is when nothing differs but the noise of two calls)
    plain, logged = LayerMonitor(n_layers=n_layers), LayerMonitor(n_layers=n_layers, writer=wr)
    plain2 = LayerMonitor(n_layers=n_layers)
    for v in vals[:200]:  # warm-up (numba cache load)
        plain.check(v)
        logged.check(v)
        plain2.check(v)
    ta = np.empty(len(vals), np.int64)
    tb = np.empty(len(vals), np.int64)
    tc = np.empty(len(vals), np.int64)
    for i, v in enumerate(vals):
        a = pc()
        plain.check(v)
        b = pc()
        logged.check(v)
        c = pc()
        plain2.check(v)
        tc[i] = pc() - c
        tb[i] = c - b
        ta[i] = b - a
    wr.close()
    for label, t in (("check", ta), ("check+writer", tb)):
        out[f"{label} p50"] = np.percentile(t, 50) / 1e3
        out[f"{label} p99"] = np.percentile(t, 99) / 1e3
    out["added per step p50 (paired)"] = np.percentile(tb - ta, 50) / 1e3
    out["added per step p99 (paired)"] = np.percentile(tb - ta, 99) / 1e3
    out["A/A control: p99 (paired), no writer in either"] = np.percentile(tc - ta, 99) / 1e3
    out["A/A control: p99 - p99, no writer in either"] = (
        np.percentile(tc, 99) - np.percentile(ta, 99)
    ) / 1e3
    # the logging call itself, timed from inside check(): RunWriter.append_layer where the
    # monitor uses it, else the monitor's _emit (which builds the row dict; the copy of the
    # values and the keyword packing happen in check() just before, outside this timing)
    wr = RunWriter(root, run_id=f"lat-direct-{pc.__name__}")
    mon = LayerMonitor(n_layers=n_layers, writer=wr)
    owner, name = (wr, "append_layer") if hasattr(wr, "append_layer") else (mon, "_emit")
    inner = getattr(owner, name)
    td = np.zeros(len(vals) + 200, np.int64)
    k = [0]

    def timed(*a, **kw):
        t0 = pc()
        inner(*a, **kw)
        td[k[0]] = pc() - t0
        k[0] += 1

    setattr(owner, name, timed)
    for v in vals[:200]:
        mon.check(v)
    for v in vals:
        mon.check(v)
    wr.close()
    td = td[200 : k[0]]
    for q in (50, 99, 99.9):
        out[f"logging call p{q} ({name})"] = np.percentile(td, q) / 1e3
    return out


def bench_replay(root: Path, steps: int, n_layers: int = 64) -> dict | None:
    """Wall and CPU seconds of: the live run (check + writer), read_run, replay, and the
    monitor's own batch method on the same in-memory array (the floor replay sits on)."""
    try:
        from streamtopo.io import replay
        from streamtopo.monitors.layer import LayerMonitor
    except ImportError:
        return None
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.normal(scale=0.01, size=(steps, n_layers)), axis=0)
    vals = np.exp(walk + rng.normal(size=(1, n_layers))).astype(np.float32)
    out: dict = {"steps": steps}

    def timed(label, fn):
        c0, t0 = time.process_time(), time.perf_counter()
        result = fn()
        out[label] = (time.perf_counter() - t0, time.process_time() - c0)
        return result

    w = RunWriter(root, run_id="replay")
    mon = LayerMonitor(n_layers=n_layers, writer=w)
    mon.check(vals[0])  # numba cache load outside the timings

    def live():
        for v in vals[1:]:
            mon.check(v)
        w.close()

    timed("live check+writer", live)
    frame = timed("read_run", lambda: read_run(w.run_dir).collect())
    st = timed("replay", lambda: replay(w.run_dir))
    timed("LayerMonitor.run alone", lambda: LayerMonitor(n_layers=n_layers).run(vals))
    out["identical"] = bool(
        (st["state"] == st["live_state"]).all()
        and np.array_equal(st["h0"].to_numpy(), st["live_h0"].to_numpy(), equal_nan=True)
    )
    assert frame.height == steps
    return out


def one_latency(steps: int) -> None:
    """Thread-CPU latencies of check() with and without a RunWriter (one process), as JSON."""
    import json

    rows = make_rows(steps, 64)
    root = Path(tempfile.mkdtemp(prefix="bench_logging_"))
    lat = latency(rows, root, time.thread_time_ns)
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(lat))


def against(ref: str, reps: int, steps: int) -> None:
    """Per-step cost of logging, the streamtopo in checkout ``ref`` against this one: fresh
    subprocesses alternating old and new (order swapped every repetition), thread CPU time;
    medians over ``reps`` with the range in brackets."""
    import json
    import statistics
    import subprocess

    here = str(Path(__file__).resolve().parents[1])
    trees = {"ref": os.path.abspath(ref), "new": here}
    got: dict[str, list[dict]] = {"ref": [], "new": []}
    for r in range(reps):
        for name in ("ref", "new") if r % 2 == 0 else ("new", "ref"):
            env = {**os.environ, "STREAMTOPO_TREE": trees[name]}
            cmd = [sys.executable, os.path.abspath(__file__), "--one", str(steps)]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            got[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for runs in got.values():
        for d in runs:
            d["added p99 (p99 with - p99 without)"] = d["check+writer p99"] - d["check p99"]
            for key in list(d):
                if key.startswith("logging call"):  # one label for both sides' entry points
                    d[key.split(" (")[0]] = d[key]
    print(f"logging: {trees['ref']} (ref) vs {here} (new); 64 layers x 1 signal, {steps:,} steps")
    print(f"per process, thread CPU time; median of {reps} alternating runs [min-max]")
    print("logging call: ref = the monitor's _emit (row dict + writer), new = append_layer")
    print()
    print("| per step, µs | ref | new | new/ref |")
    print("|---|---|---|---|")
    keys = [
        "check p50", "check p99", "check+writer p50", "check+writer p99",
        "added per step p50 (paired)", "added p99 (p99 with - p99 without)",
        "A/A control: p99 - p99, no writer in either",
        "added per step p99 (paired)", "A/A control: p99 (paired), no writer in either",
        "logging call p50", "logging call p99", "logging call p99.9", "writer p50", "writer p99",
    ]  # fmt: skip

    def cell(vals: list[float]) -> str:
        return f"{statistics.median(vals):.2f} [{min(vals):.2f}-{max(vals):.2f}]"

    for k in keys:
        a = [d[k] for d in got["ref"]]
        b = [d[k] for d in got["new"]]
        ratio = statistics.median(b) / statistics.median(a)
        print(f"| {k} | {cell(a)} | {cell(b)} | {ratio:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--against", metavar="REF", help="only: logging cost of checkout REF vs this")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of --against")
    ap.add_argument("--steps", type=int, default=40_000, help="steps per --against run")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        return one_latency(args.one)
    if args.against:
        print(f"load before: {os.getloadavg()}, cores: {os.cpu_count()}")
        against(args.against, args.reps, args.steps)
        print(f"\nload after: {os.getloadavg()}")
        return
    quick = args.quick
    root = Path(tempfile.mkdtemp(prefix="bench_logging_"))
    print(f"load before: {os.getloadavg()}, cores: {os.cpu_count()}")
    print()
    print("| columns | rows | RunWriter rows/s (wall) | RunWriter rows/s (CPU) | "
          "polars-at-close rows/s | csv rows/s | time ratio vs polars | time ratio vs csv | "
          "MB per 1M rows |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for n_cols, n in ((64, 200_000), (256, 100_000), (1024, 25_000)):
        if quick:
            n //= 10
        rows = make_rows(n, n_cols)
        t_ours, cpu_ours, size = bench_writer(rows, root, repeat=3)
        t_pl = bench_polars_at_close(rows, root, repeat=3)
        t_csv = bench_csv(rows[:20_000], root, repeat=1) * n / min(n, 20_000)
        print(
            f"| {n_cols} | {n:,} | {n / t_ours:,.0f} | {n / cpu_ours:,.0f} | {n / t_pl:,.0f} | "
            f"{n / t_csv:,.0f} | "
            f"{t_ours / t_pl:.2f} | {t_ours / t_csv:.2f} | {size / n * 1e6 / 2**20:,.0f} |"
        )
        del rows
    print()
    rows = make_rows(20_000 if quick else 100_000, 64)
    for clock, label in ((time.perf_counter_ns, "wall"), (time.thread_time_ns, "CPU")):
        lat = latency(rows, root, clock)
        print(f"| per-step latency, 64 layers × 1 signal ({label} time) | µs |")
        print("|---|---|")
        for k, v in lat.items():
            print(f"| {k} | {v:.2f} |")
        if "check p50" in lat:
            added = lat["check+writer p99"] - lat["check p99"]
            print(f"| added by logging, p99 (p99 with − p99 without) | {added:.2f} |")
        print()
    rep = bench_replay(root, 10_000 if quick else 50_000)
    if rep is None:
        print("replay: LayerMonitor not available in this checkout")
    else:
        n = rep["steps"]
        print("| 64 layers × 1 signal | steps | wall s | CPU s | steps/s (wall) | "
              "1M steps, s (wall) | 1M steps, s (CPU) |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        for k in ("live check+writer", "read_run", "replay", "LayerMonitor.run alone"):
            wall, cpu = rep[k]
            print(
                f"| {k} | {n:,} | {wall:.2f} | {cpu:.2f} | {n / wall:,.0f} | "
                f"{wall / n * 1e6:.0f} | {cpu / n * 1e6:.0f} |"
            )
        print(f"\nreplay identical to live (h0 bit for bit, state): {rep['identical']}")
    print(f"\nload after: {os.getloadavg()}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
