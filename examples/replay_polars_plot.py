"""Replay a recorded run with polars and plot it.

    python examples/replay_polars_plot.py [RUN_DIR] [--out replay.png]

Without RUN_DIR it first records one with ``streamtopo demo --fault dead-relu``. The run
directory is plain Parquet: ``polars.scan_parquet`` reads it without streamtopo; ``replay``
re-runs the LayerMonitor over the recorded signals (bit-identical to the live statuses, or with
other settings, e.g. another window).
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import polars as pl

from streamtopo.io.replay import read_run, replay


def record(out: Path, steps: int) -> Path:
    from streamtopo.app.demo import run_demo

    return Path(run_demo("dead-relu", steps, out)["run_dir"])


def main(run_dir: str | None = None, out: str = "replay.png", steps: int = 400) -> None:
    run = Path(run_dir) if run_dir else record(Path("streamtopo-replay-example"), steps)
    frame = read_run(run).collect()  # one row per step: step, h0, state, <signal>/<layer> ...
    act_cols = [c for c in frame.columns if c.startswith("act_norm/")]
    print(frame.select("step", "h0", "state", *act_cols[:3]).tail(5))
    live = replay(run)  # default: the recorded configuration -> identical statuses
    same = (live["h0"] == live["live_h0"]).all() and (live["state"] == live["live_state"]).all()
    print(f"replay == live: {same}")
    wide = replay(run, window=32)  # the same signals, another window
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for col in act_cols:
        a0.semilogy(frame["step"], frame[col], lw=0.8, label=col.split("/", 1)[1])
    a0.set_ylabel("activation RMS")
    a0.legend(ncol=4, fontsize=7)
    a1.plot(live["step"], live["h0"], label="h0 (window 16, live)")
    a1.plot(wide["step"], wide["h0"], label="h0 (window 32, replayed)")
    for state, color in (("WATCH", "gold"), ("COLLAPSE", "red")):
        steps_in = live.filter(pl.col("state") == state)["step"]
        a1.scatter(steps_in, [0] * len(steps_in), s=6, c=color, label=state)
    a1.set_xlabel("step")
    a1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("run_dir", nargs="?")
    p.add_argument("--out", default="replay.png")
    p.add_argument("--steps", type=int, default=400)
    a = p.parse_args()
    main(a.run_dir, a.out, a.steps)
