"""False alarms in early training: the first 150 steps of 28 small real torch runs.

    nice -n 15 python benchmarks/eval_early_training.py            # ~6 CPU-minutes
    nice -n 15 python benchmarks/eval_early_training.py --steps 100 --seeds 2

Every run is healthy early training (nothing is injected), the part of a run where the
change detector (``rule="cusum"``) is calibrating and the streak rule is still blind. The
claim this measures: *no false COLLAPSE in early training* (COLLAPSE stops a run through
``should_stop`` and triggers a guard).

Runs: 9 setups x 3 seeds (digits MLPs/CNN, as in CHANGEPOINT.md "The jump check": default
init + Adam; std-0.02 init (a Hugging Face model's ``post_init``); a 10-layer std-0.02 net
that never trains; SGD 0.1; an 8-layer std-0.02 net with SGD; LayerNorm+GELU with a zero-init
head + AdamW; a 50-step LR warm-up; a 2-conv CNN; a 2-block Hugging Face GPT-2 built from a
local config on next-token prediction of digit rows) and the raw-loop example's 6-layer
regression MLP (1 seed): 28 runs. Each run is trained once through
:class:`~streamtopo.integrations.training.TrainingMonitor` (its collectors, ``every=1``,
signals act_norm + grad_norm); the recorded per-layer values are then replayed through
``LayerMonitor.run`` under each rule, so every rule sees exactly the same values (streaming
equals batch). ``cusum, no calibration cap`` is the change detector as it was before the cap
(``ChangeDetector(calibration_cap=False)``, patched in for this row only).

Printed per rule: runs with an alarm episode, runs that reach COLLAPSE, runs a
``LayerMonitor.should_stop`` would end (``patience`` = 3 consecutive COLLAPSE evaluations),
and where (setup, seed, first step).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIGNALS = ("act_norm", "grad_norm")
SETUPS = (
    "mlp5_adam",
    "mlp5_std002_adam",
    "mlp10_std002_adam",
    "mlp5_sgd",
    "mlp8_std002_sgd",
    "ln_gelu_zero_head_adamw",
    "mlp5_warmup50",
    "cnn2_adam",
    "gpt2_tiny_adamw",
)


def _mlp(torch, depth: int, width: int = 64, std: float | None = None):
    layers: list = []
    d = 64
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(d, width), torch.nn.ReLU()]
        d = width
    layers.append(torch.nn.Linear(d, 10))
    model = torch.nn.Sequential(*layers)
    if std is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                torch.nn.init.normal_(m.weight, std=std)
                torch.nn.init.zeros_(m.bias)
    return model


def _build(torch, setup: str):
    """(model, optimizer, lr schedule or None, task) of a setup; task "cls", "img" or "lm"."""
    nn = torch.nn
    if setup == "mlp5_adam":
        m = _mlp(torch, 5)
        return m, torch.optim.Adam(m.parameters(), 3e-3), None, "cls"
    if setup == "mlp5_std002_adam":
        m = _mlp(torch, 5, std=0.02)
        return m, torch.optim.Adam(m.parameters(), 3e-3), None, "cls"
    if setup == "mlp10_std002_adam":
        m = _mlp(torch, 10, std=0.02)
        return m, torch.optim.Adam(m.parameters(), 3e-3), None, "cls"
    if setup == "mlp5_sgd":
        m = _mlp(torch, 5)
        return m, torch.optim.SGD(m.parameters(), 0.1), None, "cls"
    if setup == "mlp8_std002_sgd":
        m = _mlp(torch, 8, std=0.02)
        return m, torch.optim.SGD(m.parameters(), 0.1), None, "cls"
    if setup == "ln_gelu_zero_head_adamw":
        blocks: list = []
        d = 64
        for _ in range(5):
            blocks += [nn.Linear(d, 64), nn.LayerNorm(64), nn.GELU()]
            d = 64
        head = nn.Linear(64, 10)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        m = nn.Sequential(*blocks, head)
        return m, torch.optim.AdamW(m.parameters(), 3e-3), None, "cls"
    if setup == "mlp5_warmup50":
        m = _mlp(torch, 5)
        return m, torch.optim.Adam(m.parameters(), 3e-3), lambda t: min(1.0, (t + 1) / 50), "cls"
    if setup == "cnn2_adam":
        m = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(16 * 64, 64), nn.ReLU(), nn.Linear(64, 10),
        )  # fmt: skip
        return m, torch.optim.Adam(m.parameters(), 3e-3), None, "img"
    if setup == "gpt2_tiny_adamw":
        from transformers import GPT2Config, GPT2LMHeadModel

        cfg = GPT2Config(
            vocab_size=17,
            n_positions=64,
            n_embd=32,
            n_layer=2,
            n_head=2,
            bos_token_id=0,
            eos_token_id=0,
            loss_type="ForCausalLM",
        )
        m = GPT2LMHeadModel(cfg)
        return m, torch.optim.AdamW(m.parameters(), 1e-3), None, "lm"
    if setup == "raw_loop_example":
        m = nn.Sequential(
            *[x for _ in range(6) for x in (nn.Linear(32, 32), nn.ReLU())], nn.Linear(32, 1)
        )
        return m, torch.optim.Adam(m.parameters(), 1e-3), None, "reg"
    raise ValueError(f"unknown setup {setup!r}")


def record(setup: str, seed: int, steps: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train one run through TrainingMonitor; its per-step (signal -> (T, L)) values, losses."""
    import torch

    from streamtopo import load_digits
    from streamtopo.integrations.training import TrainingMonitor

    torch.manual_seed(seed)
    images, labels = load_digits()
    X, Y = torch.from_numpy(images), torch.from_numpy(labels)
    model, opt, sched, task = _build(torch, setup)
    lr0 = [g["lr"] for g in opt.param_groups]
    rows: dict[str, list[np.ndarray]] = {s: [] for s in SIGNALS}
    losses = []
    gen = torch.Generator().manual_seed(seed)
    with TrainingMonitor(model, signals=SIGNALS, loss=False, stop_on=()) as tm:
        for t in range(steps):
            if sched is not None:
                for g, lr in zip(opt.param_groups, lr0, strict=True):
                    g["lr"] = lr * sched(t)
            idx = torch.randint(0, len(X), (64,), generator=gen)
            if task == "lm":  # next-token prediction of a digit image's quantised pixels
                tok = (X[idx] * 16).clamp(0, 16).long()
                loss = model(input_ids=tok, labels=tok).loss
            elif task == "reg":
                x = torch.randn(64, 32, generator=gen)
                loss = (model(x) - x[:, :1].sin()).square().mean()
            else:
                x = X[idx].view(-1, 1, 8, 8) if task == "img" else X[idx]
                loss = torch.nn.functional.cross_entropy(model(x), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tm.step(loss)
            for s in SIGNALS:
                rows[s].append(np.array(tm.values_[s], dtype=np.float64))
            losses.append(float(loss.detach()))
    return {s: np.stack(v) for s, v in rows.items()}, np.array(losses)


@contextlib.contextmanager
def _uncapped():
    """The change detector as it was before the calibration cap (this row only)."""
    import streamtopo.monitors._cusum_rule as rule_module

    orig = rule_module.ChangeDetector
    rule_module.ChangeDetector = functools.partial(orig, calibration_cap=False)
    try:
        yield
    finally:
        rule_module.ChangeDetector = orig


RULES = {
    "streak, no early rule": ({"rule": "streak", "early_rule": "none"}, contextlib.nullcontext),
    "streak + early cusum (session 5)": (
        {"rule": "streak", "early_rule": "cusum", "keep_detector": False},
        contextlib.nullcontext,
    ),
    # today's default: the detector watches the layers only (no log h0 stream), and is kept on
    # after the warm-up (not reached in these 150 steps)
    "default (streak + kept detector)": ({"rule": "streak"}, contextlib.nullcontext),
    "cusum, no calibration cap": ({"rule": "cusum"}, _uncapped),
    "cusum": ({"rule": "cusum"}, contextlib.nullcontext),
}


def score(values: dict[str, np.ndarray], kw: dict, patience: int = 3) -> dict:
    """First alarm step, first COLLAPSE step, first step a should_stop would be set."""
    from streamtopo import LayerMonitor

    arr = np.stack([values[s] for s in SIGNALS], axis=1)  # (T, S, L)
    frame = LayerMonitor(arr.shape[2], SIGNALS, **kw).run(arr)
    state = frame["state"].to_numpy()
    reason = frame["reason"].to_list()
    alarm = np.flatnonzero(state != "HEALTHY")
    col = np.flatnonzero(state == "COLLAPSE")
    starts = (state != "HEALTHY") & np.r_[True, state[:-1] == "HEALTHY"]
    run = 0
    stop = None
    for t, s in enumerate(state):
        run = run + 1 if s == "COLLAPSE" else 0
        if run >= patience:
            stop = t
            break
    first = int(alarm[0]) if alarm.size else None
    return {
        "alarm": first,
        "collapse": int(col[0]) if col.size else None,
        "stop": stop,
        "episodes": int(np.count_nonzero(starts)),
        "reason": reason[first] if first is not None else "",
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument(
        "--cache",
        default=".eval-cache/early-training",
        help="recorded values (re-scoring after a library change skips the training)",
    )
    args = ap.parse_args(argv)
    t_start = time.process_time()
    runs = [(s, seed) for s in SETUPS for seed in range(args.seeds)] + [("raw_loop_example", 0)]
    data = {}
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    for setup, seed in runs:
        path = cache / f"{setup}-{seed}-{args.steps}.npz"
        if path.exists():  # recorded before: the same values (training is seeded)
            with np.load(path, allow_pickle=False) as z:
                data[(setup, seed)] = {s: z[s] for s in SIGNALS}
            continue
        values, loss = record(setup, seed, args.steps)
        np.savez(path, **values)
        data[(setup, seed)] = values
        print(
            f"recorded {setup} seed {seed}: {values['act_norm'].shape[1]} layers, loss "
            f"{loss[:5].mean():.3f} -> {loss[-5:].mean():.3f}",
            file=sys.stderr,
        )
    t_rec = time.process_time() - t_start
    results = {}
    for name, (kw, ctx) in RULES.items():
        with ctx():
            results[name] = {key: score(v, kw) for key, v in data.items()}
    n = len(runs)
    print(f"## Early training: first {args.steps} steps of {n} healthy runs\n")
    print("| rule | runs with an alarm | runs reaching COLLAPSE | runs stopped (3 COLLAPSE) | "
          "alarm episodes | where (setup seed: first alarm / COLLAPSE step) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for name, res in results.items():
        al = [k for k, r in res.items() if r["alarm"] is not None]
        co = [k for k, r in res.items() if r["collapse"] is not None]
        st = [k for k, r in res.items() if r["stop"] is not None]
        where = ", ".join(
            f"{s} {sd}: {res[(s, sd)]['alarm']}"
            + (f"/{res[(s, sd)]['collapse']}" if res[(s, sd)]["collapse"] is not None else "")
            for s, sd in al
        )
        eps = sum(r["episodes"] for r in res.values())
        print(
            f"| {name} | {len(al)}/{n} | {len(co)}/{n} | {len(st)}/{n} | {eps} | {where or '—'} |"
        )
    print("\nFirst alarm reasons (cusum):\n")
    for (s, sd), r in results["cusum"].items():
        if r["alarm"] is not None:
            print(f"- {s} {sd}, step {r['alarm']}: {r['reason']}")
    print(
        f"\nRecorded in {t_rec:.0f} CPU-s, scored in "
        f"{time.process_time() - t_start - t_rec:.1f} CPU-s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
