"""Where would the guard decide, and was the failure still there? (offline, from no-guard runs)

    python -m benchmarks.evaluation.guard_decisions ROWS.jsonl [ROWS.jsonl ...]

Reads the ``rows.jsonl`` of ``benchmarks/eval_guard.py`` (digits or ``--model transformer``):
the runs without a guard keep their per-step training loss and state (``trace_loss``,
``trace_state``). Until the guard acts, a guarded run is the same run (the guard only takes
snapshots), so its first decision falls on the first COLLAPSE step of the no-guard run. For
every alarm episode that reaches COLLAPSE this prints the loss ratio ``Guard(still_failing=)``
compares with its threshold: the median of the episode's last 10 losses over the median of the
last 20 healthy losses taken 10 (``margin``) or more steps before the episode, at the first
COLLAPSE step and its maximum over the episode's later COLLAPSE steps (the guard checks again
at each), beside the run's final score over the same seed's healthy run (held-out loss for
transformers, test accuracy for digits).
"""

from __future__ import annotations

import json
import statistics
import sys


def episodes(
    states: str, losses: list[float], lag: int = 10
) -> list[tuple[int, int, float, float]]:
    """``(onset, first COLLAPSE step, ratio there, max ratio at later COLLAPSE steps)``; the
    level before uses the healthy steps ``lag`` (the Guard's ``margin``) or more before onset."""
    out, healthy, onset, cur, pre = [], [], None, None, None
    for t, (s, value) in enumerate(zip(states, losses, strict=False)):
        if s == "H":
            if cur:
                out.append(tuple(cur))
            onset, cur = None, None
            if value == value:  # finite enough: NaN never enters the level
                healthy.append((t, value))
            continue
        if onset is None:
            onset = t
            before = [v for s_, v in healthy if s_ < t - lag][-20:]
            pre = statistics.median(before) if len(before) >= 5 else None
        if s == "C" and pre:
            now = statistics.median(losses[onset : t + 1][-10:])
            ratio = now / pre if now == now else float("inf")
            cur = [onset, t, ratio, ratio] if cur is None else [*cur[:3], max(cur[3], ratio)]
    if cur:
        out.append(tuple(cur))
    return out


def main(paths: list[str]) -> int:
    rows = [json.loads(line) for p in paths for line in open(p).read().splitlines()]
    healthy = {r["seed"]: r for r in rows if r["fault"] == "healthy" and r["variant"] == "none"}
    print("| scenario | seed | final / healthy (no guard) | episodes reaching COLLAPSE: "
          "onset, first COLLAPSE, loss ratio there, max later |")  # fmt: skip
    print("|---|---:|---:|---|")
    for r in sorted(rows, key=lambda r: (r["fault"], r["seed"])):
        if r["variant"] != "none" or "trace_state" not in r or r["seed"] not in healthy:
            continue
        h = healthy[r["seed"]]
        score = (
            f"acc {r['test_acc'] / h['test_acc']:.3f}"
            if "test_acc" in r
            else f"loss {r['test_loss'] / h['test_loss']:.3f}"
        )
        eps = "; ".join(
            f"{o}, {c}, {x:.3f}, {m:.3f}"
            for o, c, x, m in episodes(r["trace_state"], r["trace_loss"])
        )
        print(f"| {r['fault']} | {r['seed']} | {score} | {eps or '—'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
