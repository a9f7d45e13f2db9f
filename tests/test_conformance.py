"""One conformance suite over every monitor class (river's ``checks/`` and torchmetrics' tester
are the models): what the Monitor contract promises, tested once for all of them.

For each case (a monitor class with a configuration and a stream of inputs):

- state through ``torch.save``/``torch.load(weights_only=True)`` and through ``json`` continues
  bit-identically (statuses equal, by ``repr``, to an uninterrupted monitor's);
- ``state_dict()`` holds plain containers only (dict, list, str, int, float, bool, None);
- bad input raises a streamtopo error and leaves ``state_dict()`` unchanged;
- a state saved with another configuration raises :class:`InputError` naming the difference
  and leaves the monitor unchanged;
- every writer row has the one envelope (``monitor`` = ``kind``, ``step`` of a returned status,
  ``wall_time``, ``config`` = the monitor's JSON config);
- ``reset()`` gives the state of a freshly constructed monitor, and ``step_``,
  ``last_status_`` and ``should_stop`` mean the same everywhere.

DepthProfile is not a monitor (a one-shot profile, no per-step check) and is not here; the
TrainingMonitor composes these monitors and is checked in ``test_torch_training.py``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from streamtopo.errors import InputError, StreamtopoError
from streamtopo.monitors import (
    CentroidMonitor,
    CollapseMonitor,
    LayerMonitor,
    LossRiseDetector,
    Monitor,
    MonitorStatus,
    MorseMonitor,
)


@dataclass
class Case:
    """A monitor configuration and a deterministic stream of inputs for it."""

    name: str
    make: Callable[..., Monitor]  # make(writer=None) -> a fresh monitor
    other: Callable[[], Monitor]  # a monitor with a different configuration
    inputs: Callable[[], list[Any]]  # the stream (the same on every call)
    step: Callable[[Monitor, Any], MonitorStatus]  # feed one input, return the status
    bad: Callable[[Monitor, Any], list[Callable[[], Any]]]  # calls that must raise
    split: int  # steps before the state is saved


def _centroid_inputs() -> list[Any]:
    rng = np.random.default_rng(0)
    means = rng.normal(size=(4, 6)) * 2
    out = []
    for t in range(8):
        ytr, yte = rng.integers(0, 4, 120), rng.integers(0, 4, 40)
        shift = 0.0 if t < 5 else 1.5
        Xtr = means[ytr] + rng.normal(size=(120, 6))
        Xte = means[yte] + rng.normal(size=(40, 6)) + shift * (yte == 1)[:, None]
        out.append((Xtr, ytr, Xte, yte, 1.0 - 0.1 * t + (0.5 if t > 5 else 0.0)))
    return out


def _centroid_step(mon: Any, x: Any) -> MonitorStatus:
    Xtr, ytr, Xte, yte, loss = x
    mon.update(Xtr, ytr)
    mon.update(Xte, yte, split="test")
    return mon.check(test_loss=loss)


def _centroid_bad(mon: Any, x: Any) -> list[Callable[[], Any]]:
    Xtr, ytr = x[0], x[1]
    return [
        lambda: mon.update(Xtr, ytr + 4),
        lambda: mon.update(Xtr[:, :3], ytr),
        lambda: mon.update(Xtr, ytr, split="val"),
        lambda: mon.check(Xtr, ytr),
        lambda: mon.check(test_loss="low"),
    ]


def _collapse_inputs() -> list[Any]:
    rng = np.random.default_rng(1)
    scale = np.ones(5)
    out = []
    for t in range(10):
        if t >= 6:
            scale[2:] *= 0.2
        out.append((rng.normal(size=(40, 5)) * scale, rng.integers(0, 3, 40)))
    return out


def _collapse_step(mon: Any, x: Any) -> MonitorStatus:
    return mon.check(*x)


def _collapse_bad(mon: Any, x: Any) -> list[Callable[[], Any]]:
    X, y = x
    nxt = mon.step_ + (-mon.step_ % mon.check_every)  # the next step that is checked
    return [
        lambda: mon.check(X[:, :2], step=nxt),
        lambda: mon.check(X, y[:-1], step=nxt),
        lambda: mon.check(X[:2], step=nxt),
        lambda: mon.check(ci=float("nan"), step=nxt),
        lambda: mon.check(X, step=mon.step_ - 1),  # steps must increase
    ]


def _morse_inputs() -> list[Any]:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 3))
    out = [X.copy()]
    for _ in range(7):
        X = X.copy()
        rows = rng.choice(30, size=3, replace=False)
        X[rows] += rng.normal(scale=0.5, size=(3, 3))
        out.append(X)
    return out


def _morse_bad(mon: Any, x: Any) -> list[Callable[[], Any]]:
    nan = x.copy()
    nan[0, 0] = np.nan
    return [lambda: mon.check(x[:5]), lambda: mon.check(nan), lambda: mon.check("abc")]


def _layer_inputs() -> list[Any]:
    rng = np.random.default_rng(3)
    x = np.exp(rng.normal(size=(2, 6))[None] + rng.normal(0, 0.05, size=(60, 2, 6)))
    x[40:, 0, 2] *= np.exp(np.arange(20))[:, None][:, 0]  # one layer diverges
    x[33, 1, 4] = np.nan
    return list(x)


def _layer_bad(mon: Any, x: Any) -> list[Callable[[], Any]]:
    calls = [lambda: mon.check(x[:, :4]), lambda: mon.check(x[:1]), lambda: mon.check("abc")]
    if mon.transform == "log":  # negative values have no log
        calls.append(lambda: mon.check(-x))
    return calls


def _loss_inputs() -> list[Any]:
    rng = np.random.default_rng(4)
    loss = 2.0 * np.exp(-np.arange(80) / 30) + rng.normal(0, 0.01, 80)
    loss[50:] += np.linspace(0, 3, 30)
    loss[20] = np.nan
    return [float(v) for v in loss]


def _loss_bad(mon: Any, x: Any) -> list[Callable[[], Any]]:
    return [lambda: mon.check("1.0"), lambda: mon.check([x, x]), lambda: mon.check(None)]


_LAYER_KW = {
    **{"window": 4, "baseline": 20, "raise_after": 3, "escalate_after": 15, "clear_after": 3},
    **{"capacity": 16, "refresh_every": 10},  # saved after the ring wrapped and a refresh
}

CASES = [
    Case(
        "centroid",
        lambda writer=None: CentroidMonitor(4, warmup=0, baseline_checks=2, writer=writer),
        lambda: CentroidMonitor(4, warmup=0, baseline_checks=3),
        _centroid_inputs,
        _centroid_step,
        _centroid_bad,
        split=4,
    ),
    Case(
        "centroid-ema-seed",
        lambda writer=None: CentroidMonitor(
            4, mode="ema", rule="seed", half_life=3, history="test", groups=4, writer=writer
        ),
        lambda: CentroidMonitor(4, mode="ema", rule="seed", half_life=3, history="test"),
        _centroid_inputs,
        _centroid_step,
        _centroid_bad,
        split=3,
    ),
    Case(
        "collapse",
        lambda writer=None: CollapseMonitor(
            check_every=2, baseline_checks=2, topology=False, writer=writer
        ),
        lambda: CollapseMonitor(check_every=2, baseline_checks=3, topology=False),
        _collapse_inputs,
        _collapse_step,
        _collapse_bad,
        split=5,
    ),
    Case(
        "collapse-seed000",
        lambda writer=None: CollapseMonitor(
            check_every=1, variant="seed000", mode="seed", threshold=0.3, writer=writer
        ),
        lambda: CollapseMonitor(check_every=1, variant="seed000", mode="seed", threshold=0.4),
        _collapse_inputs,
        _collapse_step,
        _collapse_bad,
        split=4,
    ),
    Case(
        "morse",
        lambda writer=None: MorseMonitor(scale=1.0, writer=writer),
        lambda: MorseMonitor(scale=1.5),
        _morse_inputs,
        lambda mon, x: mon.check(x),
        _morse_bad,
        split=3,
    ),
    Case(
        "morse-cosine-tolerance",
        lambda writer=None: MorseMonitor(metric="cosine", tolerance=0.05, writer=writer),
        lambda: MorseMonitor(metric="cosine", tolerance=0.1),
        _morse_inputs,
        lambda mon, x: mon.check(x),
        _morse_bad,
        split=4,
    ),
    Case(
        "layer",
        lambda writer=None: LayerMonitor(6, ("g", "a"), **_LAYER_KW, writer=writer),
        lambda: LayerMonitor(6, ("g", "a"), **{**_LAYER_KW, "window": 5}),
        _layer_inputs,
        lambda mon, x: mon.check(x),
        _layer_bad,
        split=37,
    ),
    Case(
        "layer-peak-every2",
        lambda writer=None: LayerMonitor(
            6, ("g", "a"), rule="peak", transform="none", window=1, check_every=2, writer=writer
        ),
        lambda: LayerMonitor(6, ("g", "a"), rule="peak", transform="none", window=1),
        _layer_inputs,
        lambda mon, x: mon.check(x),
        _layer_bad,
        split=41,
    ),
    Case(
        "loss",
        lambda writer=None: LossRiseDetector(span=10, writer=writer),
        lambda: LossRiseDetector(span=11),
        _loss_inputs,
        lambda mon, x: mon.check(x),
        _loss_bad,
        split=55,
    ),
]
IDS = [c.name for c in CASES]


def test_every_monitor_class_is_covered():
    import streamtopo.monitors as m

    classes = {getattr(m, n) for n in m.__all__}
    monitors = {c for c in classes if isinstance(c, type) and issubclass(c, Monitor)}
    covered = {type(case.make()) for case in CASES}
    assert monitors - {Monitor} == covered


def _plain(v: Any) -> bool:
    if v is None or isinstance(v, (bool, int, float, str)):
        return True
    if isinstance(v, list):
        return all(_plain(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _plain(x) for k, x in v.items())
    return False


def _dump(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True)


def _run(case: Case, mon: Monitor, inputs: list[Any]) -> list[str]:
    return [repr(case.step(mon, x)) for x in inputs]


def _through_torch(state: dict[str, Any]) -> dict[str, Any]:
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def _through_json(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(state))


@pytest.mark.parametrize("carry", [_through_torch, _through_json], ids=["torch", "json"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_state_round_trip_continues_bit_identically(case, carry):
    inputs = case.inputs()
    ref = case.make()
    expected = _run(case, ref, inputs)
    a = case.make()
    _run(case, a, inputs[: case.split])
    state = a.state_dict()
    assert _plain(state)
    b = case.make()
    b.load_state_dict(carry(state))
    assert _dump(b.state_dict()) == _dump(state)
    assert b.step_ == a.step_ and repr(b.last_status_) == repr(a.last_status_)
    assert _run(case, b, inputs[case.split :]) == expected[case.split :]
    assert _dump(b.state_dict()) == _dump(ref.state_dict())
    assert b.should_stop == ref.should_stop


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_bad_input_raises_and_leaves_state_unchanged(case):
    inputs = case.inputs()
    mon = case.make()
    _run(case, mon, inputs[: case.split])
    before = _dump(mon.state_dict())
    calls = case.bad(mon, inputs[case.split])
    assert calls
    for call in calls:
        with pytest.raises(StreamtopoError):
            call()
        assert _dump(mon.state_dict()) == before
    # and the monitor carries on as if nothing had happened
    ref = case.make()
    _run(case, ref, inputs[: case.split])
    assert _run(case, mon, inputs[case.split :]) == _run(case, ref, inputs[case.split :])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_mismatch_raises_and_changes_nothing(case):
    inputs = case.inputs()
    a = case.make()
    _run(case, a, inputs[: case.split])
    other = case.other()
    assert other.config != a.config
    before = _dump(other.state_dict())
    with pytest.raises(InputError, match="config"):
        other.load_state_dict(a.state_dict())
    assert _dump(other.state_dict()) == before
    with pytest.raises(InputError, match="config"):
        a.load_state_dict(other.state_dict())
    with pytest.raises(StreamtopoError):
        a.load_state_dict({"config": a.config})
    with pytest.raises(StreamtopoError):
        a.load_state_dict("not a state")
    # a config rebuilds an identical monitor
    assert type(a)(**a.config).config == a.config


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_writer_rows_share_one_envelope(case):
    rows: list[dict[str, Any]] = []
    mon = case.make(writer=rows.append)
    statuses = [case.step(mon, x) for x in case.inputs()]
    assert rows
    steps = {s.step for s in statuses}
    for row in rows:
        assert row["monitor"] == mon.kind
        assert isinstance(row["step"], int) and row["step"] in steps
        assert isinstance(row["wall_time"], float)
        assert row["config"] == mon.config
        json.dumps(row["config"])
    # every evaluation is logged (monitors that record data may log the other steps too)
    assert {s.step for s in statuses if s.evaluated} <= {row["step"] for row in rows}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_reset_equals_a_fresh_monitor(case):
    fresh = case.make()
    assert fresh.step_ == 0 and fresh.last_status_ is None and fresh.should_stop is False
    mon = case.make()
    statuses = _run(case, mon, case.inputs())
    assert mon.last_status_ is not None and repr(mon.last_status_) == statuses[-1]
    mon.reset()
    assert _dump(mon.state_dict()) == _dump(fresh.state_dict())
    assert mon.step_ == 0 and mon.last_status_ is None
    assert _run(case, mon, case.inputs()) == statuses


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_statuses_share_the_base(case):
    mon = case.make()
    for x in case.inputs():
        s = case.step(mon, x)
        assert isinstance(s, MonitorStatus)
        assert s.alarm == (s.state != "HEALTHY")
        assert isinstance(s.reason, str) and isinstance(s.evaluated, bool)
