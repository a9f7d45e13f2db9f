"""TrainingMonitor wiring: a step() that raises changes nothing; absent gradients are not NaN."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402

from streamtopo.errors import InputError, StreamtopoError  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402


def make(seed=0, depth=4):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)


def fit_step(model, opt, seed):
    x, y = batch(seed)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss, y


def snapshot(tm):
    return (
        tm.step_,
        tm._monitored,
        len(tm._losses),
        tm.host_copies_,
        {n: m.state_dict() for n, m in tm.monitors.items()},
    )


def deep_equal(a, b) -> bool:
    """Equality of nested containers of arrays/floats where NaN equals NaN."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and deep_equal(dataclasses.astuple(a), dataclasses.astuple(b))
    if isinstance(a, (np.ndarray, np.generic, float)):
        return np.array_equal(
            np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"
        )
    return a == b


def same_state(a, b):
    return a[:4] == b[:4] and deep_equal(a[4], b[4])


# ------------------------------------------------------------------ item 1: raising changes nothing
@pytest.mark.parametrize("every", [1, 2])
def test_a_step_that_raises_changes_nothing(every):
    """Issue 16 item 2: a rejected call neither advances the schedule nor buffers its loss."""
    from streamtopo.monitors.collapse import CollapseMonitor

    model, opt = make()
    ref_model, ref_opt = make()
    tm = TrainingMonitor(model, every=every, collapse=CollapseMonitor(check_every=1))
    ref = TrainingMonitor(ref_model, every=every, collapse=CollapseMonitor(check_every=1))
    for t in range(6):
        loss, y = fit_step(model, opt, t)
        before = snapshot(tm)
        if t % every == 0:
            with pytest.raises(StreamtopoError, match="labels"):
                tm.step(loss * 1e6, labels=y[:3])  # wrong number of labels: rejected
            assert same_state(snapshot(tm), before)
        with pytest.raises(StreamtopoError, match="loss"):
            tm.step(torch.ones(2), labels=y)
        assert same_state(snapshot(tm), before)
        status = tm.step(loss, labels=y)
        opt.zero_grad()
        ref_loss, ref_y = fit_step(ref_model, ref_opt, t)
        ref_status = ref.step(ref_loss, labels=ref_y)
        ref_opt.zero_grad()
        assert deep_equal(status, ref_status)  # the rejected calls left no trace
    # no forward pass: the check runs before anything moves
    opt.step()
    before = snapshot(tm)
    if tm.step_ % every == 0:
        with pytest.raises(InputError, match="no forward pass"):
            tm.step(torch.tensor(5.0))
        assert same_state(snapshot(tm), before)
    tm.close()
    ref.close()
