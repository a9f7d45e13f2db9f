"""The sweep of bad inputs to TrainingMonitor (issue 16): construction and ``step``. Only
StreamtopoError subclasses escape, naming the argument; a refused construction leaves no
hooks on the model and writes no file; a refused ``step`` leaves ``state_dict()`` unchanged."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from streamtopo import CentroidMonitor, LossRiseDetector  # noqa: E402
from streamtopo.errors import StreamtopoError  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402
from tests.reliability_io_helpers import hashes  # noqa: E402


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3))


def _hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    ) + sum(len(p._backward_hooks or {}) for p in model.parameters() if p._backward_hooks)


CTOR = [
    ({"model": 5}, "model"),
    ({"model": None}, "model"),
    ({"signals": "grad_norm"}, "signals"),
    ({"signals": ["foo"]}, "signals"),
    ({"signals": []}, "signals"),
    ({"signals": ["grad_norm", "grad_norm"]}, "signals"),
    ({"signals": ["update_ratio"]}, "optimizer"),
    ({"every": 0}, "every"),
    ({"every": "1"}, "every"),
    ({"every": 1.5}, "every"),
    ({"feature_warmup": -1}, "feature_warmup"),
    ({"centroid_every": 0}, "centroid_every"),
    ({"writer": 5}, "writer"),
    ({"writer": print, "log_dir": "LOG"}, "log_dir"),
    ({"log_dir": "LOG", "run_id": "../x"}, "run_id"),
    ({"log_dir": "LOG", "run_id": 5}, "run_id"),
    ({"stop_on": ["nope"]}, "stop_on"),
    ({"guard_on": ["nope"]}, "guard_on"),
    ({"groups": ["nope"]}, "groups"),
    ({"layer": "x"}, "layer"),
    ({"layer": {"window": 0}}, "window"),
    ({"loss": "x"}, "loss"),
    ({"loss": {"span": 0}}, "span"),
    ({"loss": {"factor": 1.0}}, "factor"),
    ({"loggers": [5]}, "loggers"),
    ({"on_alarm": 5}, "on_alarm"),
]


@pytest.mark.parametrize("kwargs,name", CTOR, ids=[f"ctor-{i}" for i in range(len(CTOR))])
def test_bad_training_monitor_arguments(tmp_path, kwargs, name):
    model = _model()
    hooks = _hooks(model)
    args = {"model": model, **kwargs}
    if args.get("log_dir") == "LOG":
        args["log_dir"] = tmp_path / "logs"
    with pytest.raises(StreamtopoError) as info:
        TrainingMonitor(**args)
    assert name in str(info.value), str(info.value)
    assert _hooks(model) == hooks  # nothing left attached
    assert hashes(tmp_path) == {}


def _monitor(**kwargs) -> tuple[nn.Module, TrainingMonitor]:
    model = _model()
    tm = TrainingMonitor(model, loss=LossRiseDetector(span=5), **kwargs)
    g = torch.Generator().manual_seed(1)
    for _ in range(4):
        x, y = torch.randn(16, 8, generator=g), torch.randint(0, 3, (16,), generator=g)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        tm.step(loss, labels=y)
        model.zero_grad()
    x = torch.randn(16, 8, generator=g)
    loss = nn.functional.cross_entropy(model(x), torch.randint(0, 3, (16,), generator=g))
    loss.backward()
    return model, tm


STEPS = [
    (lambda tm: tm.step("1.0"), "loss"),
    (lambda tm: tm.step([1.0, 2.0]), "loss"),
    (lambda tm: tm.step(torch.ones(3)), "loss"),
    (lambda tm: tm.step(object()), "loss"),
    (lambda tm: tm.step(1j), "loss"),
    (lambda tm: tm.step(True), "loss"),
]


@pytest.mark.parametrize("call,name", STEPS, ids=[f"step-{i}" for i in range(len(STEPS))])
def test_bad_training_monitor_steps(call, name):
    _, tm = _monitor()
    before = json.dumps(tm.state_dict(), sort_keys=True, default=str)
    with pytest.raises(StreamtopoError) as info:
        call(tm)
    assert name in str(info.value), str(info.value)
    assert json.dumps(tm.state_dict(), sort_keys=True, default=str) == before


LABELS = [
    (lambda tm: tm.step(1.0, labels=torch.zeros(5, dtype=torch.long)), "labels"),
    (lambda tm: tm.step(1.0, labels=torch.full((16,), 0.5)), "labels"),
    (lambda tm: tm.step(1.0, labels="x"), "labels"),
    (lambda tm: tm.step(1.0, labels=torch.zeros(16, 2, dtype=torch.long)), "labels"),
]


@pytest.mark.parametrize("call,name", LABELS, ids=[f"labels-{i}" for i in range(len(LABELS))])
def test_bad_training_monitor_labels(call, name):
    _, tm = _monitor(centroid=CentroidMonitor(3, warmup=0, baseline_checks=1))
    before = json.dumps(tm.state_dict(), sort_keys=True, default=str)
    with pytest.raises(StreamtopoError) as info:
        call(tm)
    assert name in str(info.value), str(info.value)
    assert json.dumps(tm.state_dict(), sort_keys=True, default=str) == before


# issue 16 leftovers: refused before any hook or file (the options are checked first)
CTOR_MORE = [
    ({"layer": {"nope": 1}}, "layer"),
    ({"layer": {"nope": 1}, "log_dir": "LOG"}, "nope"),
    ({"layer": {"n_layers": 3}}, "n_layers"),
    ({"layer": {"signals": ("act_norm",)}}, "signals"),
    ({"layer": {5: 1}}, "layer"),
    ({"centroid": 5}, "centroid"),
    ({"centroid": 5, "log_dir": "LOG"}, "CentroidMonitor"),
    ({"collapse": 5}, "collapse"),
    ({"collapse": "x", "log_dir": "LOG"}, "CollapseMonitor"),
    ({"collapse": CentroidMonitor(3)}, "collapse"),
    ({"centroid": LossRiseDetector()}, "centroid"),
]


@pytest.mark.parametrize(
    "kwargs,name", CTOR_MORE, ids=[f"ctor-more-{i}" for i in range(len(CTOR_MORE))]
)
def test_bad_layer_and_feature_monitor_arguments(tmp_path, kwargs, name):
    test_bad_training_monitor_arguments(tmp_path, kwargs, name)


LABELS_MORE = [  # out of the centroid monitor's classes: refused before the call counter moves
    (lambda tm: tm.step(1.0, labels=torch.full((16,), 7)), "labels"),
    (lambda tm: tm.step(1.0, labels=torch.full((16,), 3)), "n_classes=3"),
    (lambda tm: tm.step(1.0, labels=torch.full((16,), -1)), "labels"),
]


@pytest.mark.parametrize(
    "call,name", LABELS_MORE, ids=[f"labels-more-{i}" for i in range(len(LABELS_MORE))]
)
def test_labels_outside_the_centroid_classes_change_nothing(call, name):
    _, tm = _monitor(centroid=CentroidMonitor(3, warmup=0, baseline_checks=1))
    calls = tm.step_
    test_bad_training_monitor_labels(call, name)  # the same checks on a fresh monitor
    with pytest.raises(StreamtopoError, match=name):
        call(tm)
    assert tm.step_ == calls
