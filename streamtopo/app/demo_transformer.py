"""``streamtopo demo --model transformer``: a char-level transformer, an instability, the signals.

A small decoder-only transformer (stock ``nn.TransformerEncoderLayer`` blocks, pre-LN, causal
mask, untied head, no qk-layernorm) learns the next byte of the installed standard library's
``*.py`` files (no download). Faults:

- ``attn-growth`` (the default with ``--model transformer``): from 30% of the steps the
  learning rate ramps to ×30 its peak by 45% and stays there; without qk-layernorm the
  attention logits grow by orders of magnitude and one block's attention entropy collapses
  while the loss only stalls (Wortsman et al. 2023). The attention signals carry the warning.
- ``lr-spike``: at 60% of the steps the learning rate jumps ×30 for ``steps // 12`` steps (an
  abrupt fault: the loss-rise rule sees it first, the layer and attention monitors within a
  few steps).
- ``none`` keeps it healthy.
 A TrainingMonitor watches every signal:
activation, gradient and update-ratio norms per block (LayerMonitor), attention entropy and
max attention logit per attention module (the ``attention`` monitor), output-logit statistics
(logged), and the loss. With ``guard=True`` a :class:`~streamtopo.Guard` rolls the run back
on an alarm, and an unguarded copy of the model on the same batches shows what it saved.
"""

from __future__ import annotations

import copy
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["FAULTS", "run_transformer_demo"]

FAULTS = ("attn-growth", "lr-spike", "none")
_VOCAB, _CTX, _WIDTH, _DEPTH, _HEADS, _BATCH = 128, 64, 64, 3, 4, 16
_LR = 3e-3
_GROWTH = 30.0  # attn-growth: the LR multiplier reached at the end of the ramp


def _text(max_bytes: int = 2_000_000) -> np.ndarray:
    """The standard library's top-level ``*.py`` files, sorted and concatenated, as tokens."""
    root = Path(sysconfig.get_paths()["stdlib"])
    chunks, n = [], 0
    for path in sorted(root.glob("*.py")):
        data = path.read_bytes()
        chunks.append(data)
        n += len(data)
        if n >= max_bytes:
            break
    tokens = np.frombuffer(b"".join(chunks), dtype=np.uint8).astype(np.int64)
    return np.minimum(tokens, _VOCAB - 1)


def _build_model(torch: Any) -> Any:
    nn = torch.nn
    torch_ = torch

    class CharTransformer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(_VOCAB, _WIDTH)
            self.pos = nn.Embedding(_CTX, _WIDTH)
            self.blocks = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    _WIDTH, _HEADS, 4 * _WIDTH, dropout=0.0, batch_first=True, norm_first=True
                )
                for _ in range(_DEPTH)
            )
            self.norm = nn.LayerNorm(_WIDTH)
            self.head = nn.Linear(_WIDTH, _VOCAB)
            self.register_buffer(
                "mask", nn.Transformer.generate_square_subsequent_mask(_CTX), persistent=False
            )

        def forward(self, ids: Any) -> Any:
            T = ids.shape[1]
            # through the module (not .weight[:T]): a group never called has no activation
            # norm, so it would be absent at every step and keep the layer monitor blind
            x = self.tok(ids) + self.pos(torch_.arange(T, device=ids.device))
            for block in self.blocks:
                x = block(x, src_mask=self.mask[:T, :T], is_causal=True)
            return self.head(self.norm(x))

    return CharTransformer()


def run_transformer_demo(
    fault: str = "attn-growth",
    steps: int = 600,
    out: str | Path = "streamtopo-demo",
    *,
    seed: int = 0,
    guard: bool = False,
    stream: Any = None,
) -> dict[str, Any]:
    """Run the transformer demo; return a dict with the run directory, alarms and numbers."""
    from ..errors import InputError

    if fault not in FAULTS:
        raise InputError(f"fault must be one of {FAULTS} with model='transformer', got {fault!r}")
    stream = sys.stdout if stream is None else stream

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    import torch

    from ..guard import Guard
    from ..integrations.training import TrainingMonitor

    t_start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        tokens = torch.from_numpy(_text())
        model = _build_model(torch)
        shadow = copy.deepcopy(model) if guard else None
        opt = torch.optim.AdamW(model.parameters(), lr=_LR, weight_decay=0.01)
        sopt = torch.optim.AdamW(shadow.parameters(), lr=_LR, weight_decay=0.01) if guard else None
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        signals = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit")
        tm = TrainingMonitor(
            model,
            log_dir=out,
            run_id=f"demo-transformer-{fault}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}",
            signals=(*signals, "out_logit"),
            optimizer=opt,
            guard=Guard() if guard else None,
        )
        fault_at, spike_len = int(steps * 0.6), max(10, steps // 12)
        ramp = (int(steps * 0.3), int(steps * 0.45))  # attn-growth: LR x1 -> x_GROWTH
        if fault == "attn-growth":
            fault_at = ramp[0]
        warm = max(10, steps // 10)
        say(
            f"training a {_DEPTH}-block char-level transformer (width {_WIDTH}, context {_CTX}) "
            f"on the standard library's source for {steps} steps; fault '{fault}' at {fault_at}"
        )
        first: dict[str, int] = {}
        logit_max: list[float] = []
        entropy_min: list[float] = []
        losses: list[float] = []
        shadow_losses: list[float] = []
        status = None
        try:
            for step in range(steps):
                lr = _LR * min(1.0, (step + 1) / warm)
                if fault == "lr-spike" and fault_at <= step < fault_at + spike_len:
                    lr *= 30
                elif fault == "attn-growth" and step >= ramp[0]:
                    lr *= 1 + (_GROWTH - 1) * min(1.0, (step - ramp[0] + 1) / (ramp[1] - ramp[0]))
                starts = torch.from_numpy(rng.integers(0, len(tokens) - _CTX - 1, _BATCH))
                batch = torch.stack([tokens[s : s + _CTX + 1] for s in starts.tolist()])
                for o in (opt, sopt) if guard else (opt,):
                    for g in o.param_groups:
                        g["lr"] = lr
                loss = _step(torch, model, opt, batch)
                if guard:
                    shadow_losses.append(float(_step(torch, shadow, sopt, batch)))
                losses.append(float(loss))
                status = tm.step(loss)
                for name in status.fired:
                    first.setdefault(name, step)
                if status.intervention is not None:
                    say(f"  >>> guard: {status.intervention.message}")
                v = tm.values_
                logit_max.append(float(np.nanmax(v["attn_logit"])))
                entropy_min.append(float(np.nanmin(v["attn_entropy"])))
                if step % max(10, steps // 20) == 0 or step == steps - 1:
                    say(
                        f"{step + 1:>5}/{steps} loss {losses[-1]:6.3f} | max attn logit "
                        f"{np.nanmax(v['attn_logit']):7.2f} | min attn entropy "
                        f"{np.nanmin(v['attn_entropy']):5.2f} | max |out logit| "
                        f"{v['out_logit'][0]:6.2f} | {status.state.value}"
                    )
                if tm.should_stop:
                    say(f"  >>> step {step}: should_stop ({status.reason}); stopping")
                    break
        finally:
            tm.close()
        tail = max(1, spike_len // 2)
        result: dict[str, Any] = {
            "fault": fault,
            "fault_at": fault_at,
            "first_alarm": first,
            "run_dir": tm.run_dir_,
            "final_loss": float(np.mean(losses[-tail:])),
            "interventions": [i.message for i in tm.interventions_],
            "summary": tm.summary(),
        }
        if guard:
            result["unguarded_final_loss"] = float(np.mean(shadow_losses[-tail:]))
        alarms = ", ".join(f"{k} at step {v}" for k, v in sorted(first.items())) or "none"
        say("")
        say(f"fault '{fault}' at step {fault_at}; first alarms: {alarms}")
        if fault != "none" and fault_at < len(losses):
            before = slice(max(0, fault_at - 50), fault_at)
            result["attention"] = {
                "max_logit_before": max(logit_max[before]),
                "max_logit_after": max(logit_max[fault_at:]),
                "min_entropy_before": min(entropy_min[before]),
                "min_entropy_after": min(entropy_min[fault_at:]),
            }
            a = result["attention"]
            say(
                f"attention: max logit {a['max_logit_before']:.1f} in the {fault_at - before.start}"
                f" steps before the fault -> {a['max_logit_after']:.1f} after; min entropy "
                f"{a['min_entropy_before']:.2f} -> {a['min_entropy_after']:.2f} nats"
            )
            if "loss" not in first:
                lb, le = float(np.mean(losses[before])), float(np.mean(losses[-tail:]))
                how = "it did not rise" if le <= lb else "it rose too little for the rule"
                say(
                    f"loss-rise alarm: never (training loss {lb:.2f} before the fault, "
                    f"{le:.2f} at the end): {how}"
                )
        if guard:
            say(
                f"guard: {len(result['interventions'])} intervention(s); final training loss "
                f"(mean of the last {tail} steps) {result['final_loss']:.3f} with the guard, "
                f"{result['unguarded_final_loss']:.3f} without"
            )
        say(f"run directory : {tm.run_dir_}")
        say(f"total time    : {time.perf_counter() - t_start:.1f} s")
        return result
    finally:
        torch.set_num_threads(threads)


def _step(torch: Any, model: Any, opt: Any, batch: Any) -> Any:
    logits = model(batch[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, _VOCAB), batch[:, 1:].reshape(-1))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()
