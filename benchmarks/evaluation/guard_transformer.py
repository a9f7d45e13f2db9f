"""The guard evaluation's transformer mode: one char-level transformer run, trained live.

``benchmarks/eval_guard.py --model transformer`` calls :func:`live_run` per (scenario, seed,
variant). Model, data, grid, LR schedule, optimizer groups and fault injection are
``benchmarks/evaluation/transformer.py``'s (grid "eval"); what differs from its recorder is that
a :class:`TrainingMonitor` (act_norm + grad_norm, loss-rise rule, today's defaults) watches
every step and, with a guard, rolls the run back (``TrainingMonitor(..., optimizer=, guard=)``).
No attention signals: the scenario model's own attention class is not a site streamtopo can
rebuild without an ``AttentionTap`` inside the model, and the brief keeps the model unchanged.

The fault is a property of the step, as in the digits mode: after a rollback an LR spike keeps
going until its window ends, random tokens keep coming until theirs does, the
``attn_logit_growth`` ramp keeps its schedule. The loader moves on (batches are not replayed).
The guard's LR cut works through optimizer step hooks, so the loop's own ``pg["lr"] = ...``
each step does not undo it.

Score: the final held-out loss on ``FINAL_HELD`` fixed batches of 32 x 64 tokens (the first
``cfg.held_batches`` are the recorder's; more of them for a less noisy final number).
"""

from __future__ import annotations

import hashlib
import math
import time

import numpy as np

from benchmarks.evaluation.guard_table import (
    reference_runs,
    rollback_columns,
    saved_without_guard,
    scenario_groups,
    variant_order,
)
from benchmarks.evaluation.transformer import (
    CTX,
    build_model,
    fault_active,
    load_text,
    lr_at,
    make_config,
    param_groups,
)

FAULTS = ("healthy", "lr_spike", "attn_logit_growth", "random_tokens")
FINAL_HELD = 8


def live_run(
    fault: str, seed: int, steps: int, guard_kwargs: dict | None, rule: str | None = None
) -> dict:
    """One scenario run under a live TrainingMonitor (and a Guard unless ``guard_kwargs`` None).

    ``rule`` is the LayerMonitor's ``rule=`` (None: the library default). The row keeps the
    per-step training loss and state (``trace_loss``, ``trace_state``: H/W/C) for analysis.
    """
    import torch
    from torch import nn

    from streamtopo import Guard
    from streamtopo.integrations.training import TrainingMonitor

    cfg = make_config(fault, seed, steps, "eval")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, held = load_text()
    train_t = torch.from_numpy(train.astype(np.int64))
    held_t = torch.from_numpy(held.astype(np.int64))
    held_starts = np.random.default_rng(12345).integers(0, len(held) - CTX - 1, (FINAL_HELD, 32))

    def batch_at(starts):
        return torch.as_tensor(starts)[:, None] + torch.arange(CTX + 1)

    model = build_model(cfg)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.95))
    lossf = nn.CrossEntropyLoss()
    guard = None if guard_kwargs is None else Guard(**guard_kwargs)
    layer_kw = None if rule is None else {"rule": rule}
    tm = TrainingMonitor(model, optimizer=opt, guard=guard, layer=layer_kw)
    states = []

    losses = np.full(steps, np.nan)
    alarm_steps = 0
    stopped_at = None
    cpu, wall = time.process_time(), time.perf_counter()
    try:
        for t in range(steps):
            lr = lr_at(cfg, t)
            for grp in opt.param_groups:
                grp["lr"] = lr * grp["mult"]
            starts = rng.integers(0, len(train) - CTX - 1, size=cfg.batch)
            chunk = train_t[batch_at(starts)]
            if fault_active(cfg, t) and cfg.fault.endswith("random_tokens"):
                chunk = torch.randint(0, 128, chunk.shape)
            logits, _ = model(chunk[:, :-1])
            loss = lossf(logits.flatten(0, 1), chunk[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses[t] = float(loss.detach())
            status = tm.step(loss)
            alarm_steps += status.state != "HEALTHY"
            states.append(str(status.state.value)[0])
            if guard is not None and guard.should_stop:  # tm.should_stop is the alarm itself
                stopped_at = t
                break
        with torch.no_grad():
            held_losses = []
            for st in held_starts:
                ch = held_t[batch_at(st)]
                out, _ = model(ch[:, :-1])
                held_losses.append(float(lossf(out.flatten(0, 1), ch[:, 1:].flatten())))
        interventions = [
            [i.step, i.action, i.restored_step, i.onset, i.level, i.reason[:160]]
            for i in tm.interventions_
        ]
    finally:
        tm.close()
    test_loss = float(np.mean(held_losses))
    return {
        "test_loss": test_loss if math.isfinite(test_loss) else 1e9,
        "train_loss_tail": float(np.nanmean(losses[max(0, (stopped_at or steps) - 20) :])),
        "alarm_steps": int(alarm_steps),
        "cpu_s": time.process_time() - cpu,
        "wall": time.perf_counter() - wall,
        "loss_hash": hashlib.sha1(losses.tobytes()).hexdigest(),
        "stopped_at": stopped_at,
        "rollbacks": 0 if guard is None else guard.rollbacks_,
        "steps_redone": 0 if guard is None else guard.steps_redone_,
        "interventions": interventions,
        "trace_loss": [round(float(x), 4) for x in losses[: len(states)]],
        "trace_state": "".join(states),
        "layer_rule": str(tm.layer_monitor.rule),
        "arch": f"d{cfg.width} L{cfg.depth} b{cfg.batch} lr{cfg.lr:g} qkln={int(cfg.qk_norm)}",
    }


def summarise(rows: list[dict]) -> str:
    """Per variant x scenario: runs saved, stops, rollbacks, steps redone, healthy identity."""
    healthy = reference_runs(rows)
    lines = [
        "| variant | scenario | runs | saved | stopped | final held-out loss / healthy "
        "(mean, max) | rollbacks | steps redone (mean per rollback) | interventions "
        "| same losses as no guard | rescued (failed without guard) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    bare = saved_without_guard(
        rows,
        healthy,
        lambda r, h: r["stopped_at"] is None and r["test_loss"] <= 1.02 * h["test_loss"],
    )
    for v in variant_order(rows):
        for f, fr, ref in scenario_groups(rows, v, FAULTS, healthy):
            done = [r["stopped_at"] is None for r in fr]
            ok = [r["test_loss"] <= 1.02 * h["test_loss"] for r, h in zip(fr, ref, strict=True)]
            saved = sum(d and x for d, x in zip(done, ok, strict=True))
            ratios = [r["test_loss"] / h["test_loss"] for r, h in zip(fr, ref, strict=True)]
            rb, redone, same = rollback_columns(fr, ref)
            failed = [bare.get((f, r["seed"])) is False for r in fr]
            good = [d and o for d, o in zip(done, ok, strict=True)]
            rescued = sum(x and g for x, g in zip(failed, good, strict=True))
            lines.append(
                f"| {v} | {f} | {len(fr)} | {saved} | {sum(not d for d in done)} "
                f"| {np.mean(ratios):.3f}, {max(ratios):.3f} | {rb} | {redone:.0f} "
                f"| {sum(len(r['interventions']) for r in fr)} "
                f"| {f'{same}/{len(fr)}' if f == 'healthy' else ''} "
                f"| {f'{rescued}/{sum(failed)}' if v != 'none' else ''} |"
            )
    lines.append("")
    lines.append(
        "saved: ran to the end and final held-out loss (8 fixed batches of 32 x 64 tokens) "
        "<= 1.02 x the same seed's healthy run without guard. stopped: the guard used up "
        "max_rollbacks (scored at the stop). interventions: rollbacks + stops + no_snapshot "
        "records. rescued: saved among the runs whose no-guard run was not."
    )
    return "\n".join(lines) + "\n"
