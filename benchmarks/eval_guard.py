"""Guard evaluation: how many failing digits runs does a Guard save, and at what cost?

    python benchmarks/eval_guard.py --tune               # knob sweep on seeds 0-9 (choose defaults)
    python benchmarks/eval_guard.py                      # defaults on fresh seeds 1000-1009
    python benchmarks/eval_guard.py --smoke              # 1 seed, 300 steps (tests)
    python benchmarks/eval_guard.py --model transformer  # char-level transformers, seeds 1000+
    python benchmarks/eval_guard.py --model transformer --smoke   # 1 seed, 60 steps (tests)
    python benchmarks/eval_guard.py --rule cusum         # the LayerMonitor's rule= (default: the
                                                         # library's); re-score under a new rule
    python benchmarks/eval_guard.py --model transformer --seed-offset 0 --variants "P: sf1.1 cd100"
        # a named SWEEP variant (every knob explicit); --baseline healthy: no-guard runs only
        # for the healthy reference

Rows keep each step's training loss and state (``trace_loss``, ``trace_state``);
``python -m benchmarks.evaluation.guard_decisions ROWS.jsonl`` reads them (where the guard
decides and the loss ratio its ``still_failing`` check sees).

Transformer mode: ``benchmarks/evaluation/guard_transformer.py`` (scenarios healthy, lr_spike,
attn_logit_growth, random_tokens of ``benchmarks/evaluation/transformer.py``, 700 steps; saved =
final held-out loss <= 1.02 x the same seed's healthy run without guard); default Guard() only.

The scenarios are ``benchmarks/evaluation/scenarios.py``'s (same configs, data split, batches,
cosine LR and fault injection), but run *live*: a :class:`TrainingMonitor` with today's defaults
(act + grad norms → LayerMonitor, loss-rise rule) watches every step and its status drives a
:class:`streamtopo.Guard` attached to the model, the Adam optimizer and the TrainingMonitor.
The fault is a property of the step, as in the scenarios: after a rollback an LR spike keeps
going until its window ends, ``explode`` keeps growing the restored weights, ``wd_ramp`` keeps
shrinking them; ``dead_relu`` is a one-off at t0. The loader moves on (batches are not replayed).

A run is *saved* when its final test accuracy is at least 98% of the healthy run's with the same
seed (same architecture, LR, batch) — and, separately reported, when its final test loss is at
most 102% of it. A run stopped by the guard (``max_rollbacks`` used up) is scored at the step it
stopped. Output: ``rows.jsonl`` (one line per run x variant) and ``table.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.evaluation.guard_table import (
    reference_runs,
    rollback_columns,
    saved_without_guard,
    scenario_groups,
    variant_order,
)
from benchmarks.evaluation.scenarios import build_body, make_config

FAULTS = ("healthy", "lr_spike", "dead_relu", "explode", "wd_ramp")
# the sweep gives every knob explicitly, so a later change of the Guard's defaults cannot
# change what a variant means; "default" is the Guard() of this checkout
CENTER = {"every": 50, "keep": 4, "margin": 10, "lr_factor": 0.1, "cooldown": 200,
          "max_rollbacks": 3, "act_on": "WATCH", "patience": 10,
          "still_failing": None, "escalate_lr": True}  # fmt: skip
SWEEP = {
    "watch p1 lr0.5": {**CENTER, "patience": 1, "lr_factor": 0.5},
    "watch p10 lr0.5": {**CENTER, "lr_factor": 0.5},
    "watch p10 lr0.1": CENTER,
    "watch p20 lr0.1": {**CENTER, "patience": 20},
    "collapse p1 lr0.1": {**CENTER, "act_on": "COLLAPSE", "patience": 1},
    "watch p10 lr0.1 cd500": {**CENTER, "cooldown": 500},
    "watch p10 lr0.1 m0": {**CENTER, "margin": 0},
    "watch p10 lr0.1 e100": {**CENTER, "every": 100},
}
# issue 19's cost-aware policy, chosen on transformer seeds 0-5 and digits seeds 0-4
SHIPPED = {**CENTER, "act_on": "COLLAPSE", "patience": 1}  # Guard() before issue 19
SWEEP.update({
    "v0 shipped": SHIPPED,
    "sf1.1": {**SHIPPED, "still_failing": 1.1},
    "sf1.1 cd100": {**SHIPPED, "still_failing": 1.1, "cooldown": 100},
    "sf1.1 cd100 noesc": {**SHIPPED, "still_failing": 1.1, "cooldown": 100, "escalate_lr": False},
    # the check after its fix (level before = healthy steps >= margin before the onset, a
    # rolled-back trajectory's losses dropped): "sf1.1 cd100" rows are of the first form
    "P: sf1.1 cd100": {**SHIPPED, "still_failing": 1.1, "cooldown": 100},
})  # fmt: skip


def live_run(cfg, guard_kwargs: dict | None, rule: str | None = None) -> dict:
    """One scenario run with a live TrainingMonitor (and a Guard unless ``guard_kwargs`` None);
    ``rule`` is the LayerMonitor's ``rule=`` (None: the library default)."""
    import torch
    from torch import nn

    from streamtopo import Guard
    from streamtopo.data import load_digits
    from streamtopo.integrations.training import TrainingMonitor

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    X, y = load_digits()
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    Xtr, ytr, Xte, yte = X[:1300], y[:1300], X[1300:], y[1300:]
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-3
    Xtr, Xte = (Xtr - mu) / sd, (Xte - mu) / sd
    xtr_t = torch.tensor(Xtr, dtype=torch.float32)
    ytr_t = torch.tensor(ytr, dtype=torch.int64)
    xte_t = torch.tensor(Xte, dtype=torch.float32)
    yte_t = torch.tensor(yte, dtype=torch.int64)
    xpr_t = xtr_t[: min(256, len(ytr))]

    body = build_body(cfg)
    head = nn.Linear(cfg.width, 10)
    model = nn.Sequential(body, head)
    linears = [m for m in body if isinstance(m, (nn.Linear, nn.Conv2d))]
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    lossf = nn.CrossEntropyLoss()
    tm = TrainingMonitor(model, layer=None if rule is None else {"rule": rule})
    states = []
    guard = None
    if guard_kwargs is not None:
        guard = Guard(**guard_kwargs).attach(model=model, optimizer=opt, monitors=[tm])

    T, t0, p = cfg.steps, cfg.t0, cfg.fault_params
    losses = np.full(T, np.nan)
    alarm_steps = 0
    stopped_at = None
    wall = time.perf_counter()
    for t in range(T):
        lr = cfg.lr * 0.5 * (1 + math.cos(math.pi * t / T))
        rho = 0.0
        if t0 is not None and t >= t0:
            if cfg.fault == "lr_spike" and t < t0 + p["window"]:
                lr = p["spike_lr"]
            elif cfg.fault == "wd_ramp":
                rho = p["rho_max"] * (t - t0) / max(T - t0, 1)
            elif cfg.fault == "explode":
                with torch.no_grad():
                    linears[p["layer"]].weight.mul_(1.0 + p["rate"])
            elif cfg.fault == "dead_relu" and t == t0:
                with torch.no_grad():
                    lin = linears[p["layer"]]
                    z = lin(body[: list(body).index(lin)](xpr_t))
                    dims = (0, 2, 3) if z.ndim == 4 else (0,)
                    lin.bias.sub_(3.0 * z.std(dims) + z.mean(dims).clamp(min=0))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.as_tensor(rng.integers(0, len(ytr), size=cfg.batch))
        loss = lossf(model(xtr_t[idx]), ytr_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if rho:
            with torch.no_grad():
                for m in linears:
                    m.weight.mul_(1.0 - rho)
        losses[t] = float(loss.detach())
        status = tm.step(loss)
        alarm_steps += status.state != "HEALTHY"
        states.append(str(status.state.value)[0])
        if guard is not None:
            guard.step(t, status)
            if guard.should_stop:
                stopped_at = t
                break
    wall = time.perf_counter() - wall
    with torch.no_grad():
        out = model(xte_t)
        test_loss = float(lossf(out, yte_t))
        test_acc = float((out.argmax(1) == yte_t).float().mean())
    tm.close()
    row = {
        "test_loss": test_loss if math.isfinite(test_loss) else 1e9,
        "test_acc": test_acc,
        "alarm_steps": int(alarm_steps),
        "wall": wall,
        "loss_hash": hashlib.sha1(losses.tobytes()).hexdigest(),
        "stopped_at": stopped_at,
        "rollbacks": 0,
        "steps_redone": 0,
        "interventions": [],
        "trace_loss": [round(float(x), 4) for x in losses[: len(states)]],
        "trace_state": "".join(states),
        "layer_rule": str(tm.layer_monitor.rule),
    }
    if guard is not None:
        guard.close()
        row.update(
            rollbacks=guard.rollbacks_,
            steps_redone=guard.steps_redone_,
            interventions=[
                [i.step, i.action, i.restored_step, i.onset, i.level, i.reason[:160]]
                for i in guard.interventions_
            ],
        )
    return row


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tune", action="store_true", help="sweep SWEEP on seeds 0-9")
    ap.add_argument("--smoke", action="store_true", help="1 seed, 300 steps, default guard")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument(
        "--seed-offset", type=int, default=None, help="default: 0 with --tune, else 1000"
    )
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--variants", default=None, help="comma-separated subset of the sweep")
    ap.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of faults")
    ap.add_argument("--out", default="eval-guard-out")
    ap.add_argument("--model", choices=("digits", "transformer"), default="digits")
    ap.add_argument(
        "--baseline", choices=("all", "healthy"), default="all",
        help="runs without guard: every scenario, or only the healthy reference",
    )  # fmt: skip
    ap.add_argument(
        "--rule", choices=("streak", "cusum"), default=None,
        help="the LayerMonitor's rule= (default: the library's default)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    import torch

    if args.model == "transformer":
        return main_transformer(args)

    torch.set_num_threads(1)
    offset = args.seed_offset if args.seed_offset is not None else (0 if args.tune else 1000)
    if args.smoke:
        args.seeds, args.steps = 1, 300
    variants = dict(SWEEP) if args.tune else {"default": {}}
    if args.variants:
        variants = {k: SWEEP[k] for k in args.variants.split(",") if k != "none"}

    def one(fault: str, seed: int, kw: dict | None) -> dict:
        cfg = make_config(fault, seed, args.steps)
        r = live_run(cfg, kw, args.rule)
        r["arch"] = cfg.arch
        return r

    def line(r: dict) -> str:
        return (
            f"{r['fault']:9s} seed={r['seed']:4d} {r['variant']:16s} acc={r['test_acc']:.3f} "
            f"rollbacks={r['rollbacks']} stop={r['stopped_at']}"
        )

    seeds = range(offset, offset + args.seeds)
    faults = tuple(args.faults.split(","))
    rows = sweep(args, seeds, faults, args.steps, variants, one, line)
    return write_table(Path(args.out), summarise(rows))


def sweep(args, seeds, faults, steps: int, variants: dict, one, line) -> list[dict]:
    """Run ``one(fault, seed, kw)`` (``kw`` None: no guard) for every seed x fault x variant
    not yet in ``OUT/rows.jsonl`` (resumable: a cut-off sweep continues where it stopped),
    append each row as it finishes, and return the rows of these seeds and steps."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    done = set()
    if rows_path.exists():
        for text in rows_path.read_text().splitlines():
            r = json.loads(text)
            done.add((r["fault"], r["seed"], r["variant"], r["steps"]))
    start = time.perf_counter()
    with rows_path.open("a") as fh:
        for seed in seeds:
            for fault in faults:
                for name, kw in {"none": None, **variants}.items():
                    if kw is None and args.baseline == "healthy" and fault != "healthy":
                        continue
                    if (fault, seed, name, steps) in done:
                        continue
                    r = one(fault, seed, kw)
                    r.update(fault=fault, seed=seed, variant=name, steps=steps,
                             rule=args.rule or "default")  # fmt: skip
                    fh.write(json.dumps(r) + "\n")
                    fh.flush()
                    print(f"[{time.perf_counter() - start:7.1f}s] {line(r)}", flush=True)
    rows = [json.loads(text) for text in rows_path.read_text().splitlines()]
    return [r for r in rows if r["steps"] == steps and r["seed"] in seeds]


def write_table(out: Path, table: str) -> int:
    """Write ``table.md`` beside the rows and print it."""
    (out / "table.md").write_text(table)
    print(table)
    return 0


def main_transformer(args) -> int:
    """``--model transformer``: healthy / fault x {no guard, Guard()} per seed, seed outer."""
    import torch

    from benchmarks.evaluation import guard_transformer as gt

    torch.set_num_threads(1)
    offset = 1000 if args.seed_offset is None else args.seed_offset
    steps = 700 if args.steps == 1500 else args.steps  # 1500 is the digits default
    faults = gt.FAULTS if args.faults == ",".join(FAULTS) else tuple(args.faults.split(","))
    if args.smoke:
        args.seeds, steps, faults = 1, 60, ("healthy", "lr_spike")
    variants = {"default": {}}
    if args.variants:
        variants = {k: SWEEP[k] for k in args.variants.split(",") if k != "none"}

    def line(r: dict) -> str:
        return (
            f"{r['fault']:17s} seed={r['seed']:4d} {r['variant']:8s} {r['arch']} "
            f"held-out={r['test_loss']:.4f} rollbacks={r['rollbacks']} "
            f"redone={r['steps_redone']} stop={r['stopped_at']} cpu={r['cpu_s']:.0f}s"
        )

    def one(fault: str, seed: int, kw: dict | None) -> dict:
        return gt.live_run(fault, seed, steps, kw, args.rule)

    seeds = range(offset, offset + args.seeds)
    rows = sweep(args, seeds, faults, steps, variants, one, line)
    return write_table(Path(args.out), gt.summarise(rows))


def summarise(rows: list[dict]) -> str:
    """Per variant x fault: runs saved (acc, loss), stops, rollbacks, steps redone."""
    healthy = reference_runs(rows)
    lines = [
        "| variant | fault | runs | saved (acc) | saved (loss) | stopped (acc ok) "
        "| final acc / healthy acc (mean, min) | rollbacks "
        "| steps redone (mean per rollback) | interventions | same losses as no guard "
        "| rescued (failed without guard) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    bare = saved_without_guard(rows, healthy, lambda r, h: r["test_acc"] >= 0.98 * h["test_acc"])
    for v in variant_order(rows):
        abrupt = [0, 0, 0, 0]
        for f, fr, ref in scenario_groups(rows, v, FAULTS, healthy):
            done = [r["stopped_at"] is None for r in fr]
            acc = [r["test_acc"] >= 0.98 * h["test_acc"] for r, h in zip(fr, ref, strict=True)]
            los = [r["test_loss"] <= 1.02 * h["test_loss"] for r, h in zip(fr, ref, strict=True)]
            saved_acc = sum(d and a for d, a in zip(done, acc, strict=True))
            saved_loss = sum(d and x for d, x in zip(done, los, strict=True))
            stopped = sum(not d for d in done)
            stopped_ok = sum(not d and a for d, a in zip(done, acc, strict=True))
            ratios = [r["test_acc"] / h["test_acc"] for r, h in zip(fr, ref, strict=True)]
            ratio = f"{sum(ratios) / len(ratios):.3f}, {min(ratios):.3f}"
            rb, redone, same = rollback_columns(fr, ref)
            n_int = sum(len(r["interventions"]) for r in fr)
            same_txt = f"{same}/{len(fr)}" if f == "healthy" else ""
            failed = [bare.get((f, r["seed"])) is False for r in fr]
            rescued = sum(x and d and a for x, d, a in zip(failed, done, acc, strict=True))
            if f in ("lr_spike", "dead_relu"):
                abrupt = [abrupt[0] + saved_acc, abrupt[1] + len(fr), abrupt[2] + rescued,
                          abrupt[3] + sum(failed)]  # fmt: skip
            lines.append(
                f"| {v} | {f} | {len(fr)} | {saved_acc} | {saved_loss} | {stopped} ({stopped_ok}) "
                f"| {ratio} | {rb} | {redone:.0f} | {n_int} | {same_txt} "
                f"| {rescued}/{sum(failed)} |"
            )
        lines.append(f"| {v} | **abrupt (lr_spike + dead_relu)** | {abrupt[1]} | {abrupt[0]} "
                     f"| | | | | | | | {abrupt[2]}/{abrupt[3]} |")  # fmt: skip
    lines.append("")
    lines.append(
        "saved (acc): ran to the end and final test accuracy >= 98% of the same seed's healthy "
        "run without guard; saved (loss): ran to the end and final test loss <= 102% of it. "
        "stopped: the guard used up max_rollbacks and stopped the run (acc ok: its accuracy at "
        "the stop was within 2%). final acc / healthy acc: the run's final test accuracy (at the "
        "stop for a stopped run) over the same seed's healthy run without guard, measured in "
        "the same sweep. interventions: rollbacks + stops + no_snapshot records. "
        "rescued: runs saved (acc) among those whose no-guard run was not."
    )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
