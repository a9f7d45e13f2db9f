"""Host synchronisations of TrainingMonitor, counted on CPU.

On CUDA every call that reads a tensor's data on the host (``.item()``, ``.cpu()``,
``.numpy()``, ``.tolist()``, ``bool(t)``/``float(t)``, ``np.asarray(t)``, a blocking ``.to()``
of a device tensor, data-dependent shapes such as ``nonzero``/``unique``) waits for the device.
A ``TorchFunctionMode`` sees every such call made from Python, on any device, so counting them
on CPU counts what would be a synchronisation on CUDA: the monitor must make exactly one per
monitored step (its single packed copy) and none in between.
"""

from __future__ import annotations

from collections import Counter

import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402

from streamtopo.integrations.training import TrainingMonitor  # noqa: E402

# what reads tensor data on the host (or, for nonzero/unique/masked_select, sizes an output
# from the data): each is a device synchronisation on CUDA
HOST_READS = frozenset(
    {
        "item",
        "cpu",
        "numpy",
        "tolist",
        "__bool__",
        "__float__",
        "__int__",
        "__index__",
        "__array__",
        "nonzero",
        "unique",
        "masked_select",
    }
)


class HostReads(TorchFunctionMode):
    """Counts host reads by name; a ``.to()`` with a device and ``non_blocking=False`` counts
    as ``"to(blocking)"`` (a blocking copy between devices)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in HOST_READS:
            self.counts[name] += 1
        elif name == "to" and not kwargs.get("non_blocking", False):
            if any(isinstance(a, (torch.device, str)) for a in args[1:]) or "device" in kwargs:
                self.counts["to(blocking)"] += 1
        return func(*args, **kwargs)


class Tiny(nn.Module):
    """Embedding, two encoder layers (need_weights=False inside), a head: every signal."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(11, 16)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True) for _ in range(2)
        )
        self.head = nn.Linear(16, 11)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(12))

    def forward(self, idx):
        h = self.emb(idx)
        for block in self.blocks:
            h = block(h, src_mask=self.mask, is_causal=True)
        return self.head(h)


def run(every: int, signals: tuple[str, ...] | None, steps: int = 9):
    """Host reads per training step (forward, backward, optimizer step, ``tm.step``), after
    two warm-up steps (first-call caches: query indices, the causal mask's bias)."""
    torch.manual_seed(0)
    model = Tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tm = None
    if signals is not None:
        tm = TrainingMonitor(model, signals=signals, every=every, optimizer=opt)
    idx = torch.randint(0, 11, (4, 13))
    per_step = []
    for t in range(steps + 2):
        with HostReads() as reads:
            logits = model(idx[:, :-1])
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if tm is not None:
                tm.step(loss)
        if t >= 2:
            per_step.append(reads.counts)
    if tm is not None:
        tm.close()
    return per_step


ALL = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit", "out_logit")


def test_the_training_loop_alone_reads_nothing_on_the_host():
    # the reference: what the loop below does without a monitor
    assert all(sum(c.values()) == 0 for c in run(1, None))


@pytest.mark.parametrize("signals", [("act_norm", "grad_norm"), ALL])
@pytest.mark.parametrize("every", [1, 3])
def test_one_host_read_per_monitored_step_and_none_between(signals, every):
    per_step = run(every, signals)
    for t, counts in enumerate(per_step, start=2):
        if t % every == 0:
            assert counts == Counter({"numpy": 1}), (t, counts)
        else:
            assert counts == Counter(), (t, counts)


def test_the_counter_sees_a_per_parameter_item_loop():
    # the counter is not blind: the classic pattern reads once per parameter
    model = Tiny()
    model(torch.randint(0, 11, (2, 12))).sum().backward()
    with HostReads() as reads:
        norms = [p.grad.norm().item() for p in model.parameters() if p.grad is not None]
        float(torch.stack([p.grad.norm() for p in model.parameters()]).sum())
    assert reads.counts == Counter({"item": len(norms), "__float__": 1})
