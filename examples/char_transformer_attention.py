"""A tiny character-level transformer trained on Python's own standard-library source, with
attention entropy per layer beside activation and gradient norms.

    python examples/char_transformer_attention.py [--steps 300]

The text is read from the installed standard library (no download). Each attention block
passes its probabilities through ``AttentionTap`` (the protocol for custom blocks), so
``TrainingMonitor(signals=(..., "attn_entropy"))`` sees them; a second LayerMonitor watches the
entropies. Halfway through, the attention of block 1 is forced to (nearly) one-hot by scaling
its query weights ×30 — its entropy collapses and the attention monitor says so.
"""

import argparse
import math
import sysconfig
from pathlib import Path

import torch
from torch import nn

from streamtopo.integrations.torch import AttentionTap
from streamtopo.integrations.training import TrainingMonitor


def stdlib_text(n_chars: int = 200_000) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, total = [], 0
    for name in ("textwrap.py", "string.py", "fractions.py", "heapq.py", "bisect.py", "this.py"):
        path = root / name
        if path.exists():
            text = path.read_text(encoding="utf-8", errors="replace")
            parts.append(text)
            total += len(text)
        if total >= n_chars:
            break
    return "".join(parts)[:n_chars]


class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads, self.dk = heads, d // heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.tap = AttentionTap()  # marks the attention probabilities for streamtopo
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, self.heads, self.dk).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.dk)
        mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        probs = self.tap(scores.masked_fill(~mask, float("-inf")).softmax(-1))
        y = (probs @ v).transpose(1, 2).reshape(B, T, D)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class CharLM(nn.Module):
    def __init__(self, vocab: int, d: int = 64, n_blocks: int = 4, ctx: int = 64) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Embedding(ctx, d)
        self.blocks = nn.ModuleList(Block(d, 4) for _ in range(n_blocks))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for b in self.blocks:
            h = b(h)
        return self.head(self.ln(h))


def main(steps: int = 300, ctx: int = 64) -> None:
    torch.manual_seed(0)
    text = stdlib_text()
    chars = sorted(set(text))
    code = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([code[c] for c in text])
    model = CharLM(len(chars), ctx=ctx)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tm = TrainingMonitor(model, signals=("act_norm", "grad_norm", "attn_entropy"))
    print(
        f"{len(text)} characters of stdlib source, vocab {len(chars)}; layers "
        f"{list(tm.layer_names)}; attention layers {list(tm.attention_monitor.layer_names)}"
    )
    for step in range(steps):
        if step == steps // 2:
            with torch.no_grad():  # sharpen block 1's attention: its entropy collapses
                model.blocks[1].qkv.weight[:64].mul_(30.0)
            print(f"step {step}: block 1 queries scaled x30")
        starts = torch.randint(0, len(data) - ctx - 1, (32,))
        x = torch.stack([data[s : s + ctx] for s in starts])
        y = torch.stack([data[s + 1 : s + ctx + 1] for s in starts])
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        status = tm.step(loss)
        if step % 50 == 0 or step == steps - 1 or (status.fired and step % 10 == 0):
            att = status.attention
            print(
                f"step {step:4d} loss {loss.item():.3f} state {status.state} "
                f"attention h0 {att.h0:.3f} {att.state} {status.reason}"
            )
    entropies = tm.values_["attn_entropy"]  # the last monitored step's values, per layer
    names = tm.attention_monitor.layer_names
    per_block = {n: round(float(v), 3) for n, v in zip(names, entropies, strict=True)}
    print("attention entropy (nats) per block:", per_block)
    tm.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=300)
    main(p.parse_args().steps)
