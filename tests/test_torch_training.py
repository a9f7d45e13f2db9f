"""TrainingMonitor: unchanged training, one host copy per monitored step, combined alarms."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny layers on a shared 2-core machine: one thread is fastest
from torch import nn  # noqa: E402

from streamtopo.errors import InputError, InputTypeError  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402
from streamtopo.monitors.loss import LossRiseDetector  # noqa: E402


def make(seed=0, depth=6):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g))
        for _ in range(n)
    ]


def train(n, tm_kwargs=None, seed=0):
    model, opt = make(seed)
    tm = TrainingMonitor(model, **tm_kwargs) if tm_kwargs is not None else None
    losses, statuses = [], []
    for x, y in batches(n):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        if tm is not None:
            statuses.append(tm.step(loss, labels=y))
        opt.zero_grad()
        losses.append(loss.item())
    return losses, statuses, tm, model


@pytest.mark.parametrize("every", [1, 3])
def test_identical_loss_curve_with_and_without_monitor(every):
    plain, _, _, m1 = train(40)
    watched, statuses, tm, m2 = train(40, {"every": every})
    assert plain == watched  # bitwise
    assert all(torch.equal(a, b) for a, b in zip(m1.parameters(), m2.parameters(), strict=True))
    assert [s.evaluated for s in statuses] == [t % every == 0 for t in range(40)]
    assert tm.host_copies_ == len(range(0, 40, every))
    tm.close()


def test_loss_alarm_sees_every_loss_in_order_despite_every():
    losses, statuses, tm, _ = train(40, {"every": 4})
    ref = LossRiseDetector()
    expected = [ref.check(x) for x in losses[:37]]
    # steps 37..39 come after the last monitored step (36): still buffered on the device
    assert tm.loss_monitor.state_dict() == ref.state_dict()
    # the status at a monitored step reports the loss of that very step
    for t, s in enumerate(statuses):
        if s.evaluated:
            assert s.loss == expected[t]
    tm.close()


def test_layer_monitor_gets_collector_values():
    rows = []
    model, _ = make()
    tm = TrainingMonitor(model, writer=rows.append, every=1)
    x, y = batches(1)[0]
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    ref_grad = [
        float(torch.cat([p.grad.flatten() for p in model[2 * k].parameters()]).norm())
        for k in range(6)
    ]
    tm.step(loss)
    layer_rows = [r for r in rows if r["monitor"] == "layer"]
    loss_rows = [r for r in rows if r["monitor"] == "loss"]
    assert len(layer_rows) == len(loss_rows) == 1
    r = layer_rows[0]
    assert r["signals"] == ("act_norm", "grad_norm")
    assert r["layer_names"] == ("0", "2", "4", "6", "8", "10")
    np.testing.assert_allclose(r["values"][1], ref_grad, rtol=1e-5)
    assert loss_rows[0]["loss"] == pytest.approx(loss.item())
    json.dumps(r["config"])
    tm.close()


def test_loss_rise_fires_and_is_named():
    model, _ = make()
    tm = TrainingMonitor(model, signals=("act_norm",))
    for t in range(60):
        model(torch.randn(4, 16))
        status = tm.step(1.0 if t < 50 else 5.0)
    assert status.state == "WATCH" and "loss" in status.fired
    assert status.reason.startswith("loss: loss 5 > 1.1 x EMA")
    assert not tm.should_stop
    for _ in range(3):
        model(torch.randn(4, 16))
        status = tm.step(float("nan"))
    assert status.state == "COLLAPSE" and tm.should_stop
    tm2 = TrainingMonitor(model, signals=("act_norm",), stop_on=("layer",))
    for _ in range(3):
        model(torch.randn(4, 16))
        tm2.step(float("nan"))
    assert not tm2.should_stop
    tm.close()
    tm2.close()


def same(a, b) -> bool:
    """Dataclass equality where NaN equals NaN."""
    fa, fb = dataclasses.astuple(a), dataclasses.astuple(b)
    return len(fa) == len(fb) and all(
        x == y
        or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        for x, y in zip(fa, fb, strict=True)
    )


def test_state_dict_round_trip_continues_identically():
    _, ref_statuses, ref_tm, _ = train(60, {"every": 2})
    model, opt = make()
    data = batches(60)
    tm = TrainingMonitor(model, every=2)
    for t, (x, y) in enumerate(data):
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        s = tm.step(loss)
        opt.zero_grad()
        if t == 30:  # right after a monitored step: nothing buffered
            buf = io.BytesIO()  # as a checkpoint stores it: loads with weights_only=True
            torch.save(tm.state_dict(), buf)
            buf.seek(0)
            saved = torch.load(buf, weights_only=True)
            tm.close()
            tm = TrainingMonitor(model, every=2)
            tm.load_state_dict(saved)
        if t > 30 and s.evaluated:
            assert same(s.layer, ref_statuses[t].layer)
            assert same(s.loss, ref_statuses[t].loss)
    tm.close()
    ref_tm.close()


def test_close_removes_hooks_and_step_after_close_raises():
    model, _ = make()
    tm = TrainingMonitor(model, signals=("act_norm", "grad_norm"))
    assert any(m._forward_hooks for m in model.modules())
    tm.close()
    tm.close()
    assert not any(m._forward_hooks for m in model.modules())
    with pytest.raises(InputError, match="closed"):
        tm.step(1.0)


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        ({"signals": ("act_norm", "weights")}, InputError, "signals must be distinct"),
        ({"signals": "act_norm"}, InputTypeError, "signals must be a sequence"),
        ({"every": 0}, InputError, "every"),
        ({"writer": 3}, InputTypeError, "writer must be callable"),
        ({"groups": ["0"]}, InputError, "needs at least 2"),
        ({"loss": "yes"}, InputTypeError, "loss must be"),
        ({"layer": 5}, InputTypeError, "layer must be"),
    ],
)
def test_bad_arguments_leave_no_hooks(kwargs, exc, words):
    model, _ = make()
    with pytest.raises(exc, match=words):
        TrainingMonitor(model, **kwargs)
    assert not any(m._forward_hooks for m in model.modules())


def test_bad_loss_type():
    model, _ = make()
    with TrainingMonitor(model) as tm:
        with pytest.raises(InputError, match="one element"):
            tm.step(torch.ones(3))
        with pytest.raises(InputTypeError, match="loss must be a number"):
            tm.step("0.3")
        assert tm.step_ == 0


@pytest.mark.parametrize("signals", [("act_norm", "grad_norm"), ("act_norm",)])
def test_step_without_a_forward_pass_reports_absent_layers_not_a_collapse(signals):
    """Issue 16 item 1: no activations captured since the last monitored step is *absent*."""
    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tm = TrainingMonitor(model, signals=signals)
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    assert tm.step(loss).state == "HEALTHY"
    opt.step()
    status = tm.step(loss)  # no forward pass since the last step
    assert status.state == "HEALTHY" and status.evaluated
    assert status.layer.absent == ("0", "1", "2") and not status.layer.nonfinite
    assert status.reason == "layer: layers [0, 1, 2] absent (no value this step)"
    assert tm.values_["act_norm"].shape == (3,) and np.isnan(tm.values_["act_norm"]).all()
    for _ in range(3):  # forward passes again: measured again
        loss = model(torch.randn(8, 4)).pow(2).mean()
        loss.backward()
        opt.step()
        status = tm.step(loss)
        opt.zero_grad()
    assert status.state == "HEALTHY" and status.layer.absent == ()
    assert np.isfinite(tm.values_["act_norm"]).all()
    tm.close()
