"""Alarms where users already look: TensorBoard files, log(dict) loggers, logging, on_alarm."""

from __future__ import annotations

import logging
import math

import pytest

torch = pytest.importorskip("torch")

from streamtopo.alarms import State  # noqa: E402
from streamtopo.errors import InputTypeError  # noqa: E402
from streamtopo.integrations.loggers import AlarmReporter, status_scalars  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402
from streamtopo.monitors import MonitorStatus  # noqa: E402

# 10 healthy losses, 3 non-finite ones (COLLAPSE at once, stop after 2), then healthy again
LOSSES = [1.0] * 10 + [math.nan] * 3 + [1.0] * 5


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(4)])


def _train(tm: TrainingMonitor, model: torch.nn.Module, losses=LOSSES) -> list:
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    out = []
    for value in losses:
        loss = model(torch.randn(16, 8)).square().mean()
        loss.backward()
        opt.step()
        out.append(tm.step(value))
        opt.zero_grad()
    return out


class Recorder:
    """The generic ``log(dict, step=)`` protocol (what a W&B run offers)."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def log(self, data: dict, step: int | None = None) -> None:
        self.rows.append((step, dict(data)))


class ScalarRecorder:
    """The ``add_scalar(tag, value, step)`` protocol (a SummaryWriter's)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []
        self.flushed = 0

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.calls.append((tag, value, step))

    def flush(self) -> None:
        self.flushed += 1


def test_tensorboard_event_files_hold_the_streamtopo_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    model = _model()
    sw = SummaryWriter(log_dir=str(tmp_path))
    loss_cfg = {"stop_patience": 2}
    with TrainingMonitor(model, loggers=[sw], loss=loss_cfg) as tm:
        statuses = _train(tm, model)
    sw.close()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for key in (
        "streamtopo/state",
        "streamtopo/calibrating",
        "streamtopo/h0",
        "streamtopo/layer/state",
        "streamtopo/layer/h0",
        "streamtopo/loss/state",
        "streamtopo/loss/loss",
    ):
        assert key in tags
    state = acc.Scalars("streamtopo/state")
    assert [e.step for e in state] == [s.step for s in statuses]
    assert [e.value for e in state] == [float(State(s.state).severity) for s in statuses]
    assert [e.value for e in state][10:13] == [2.0, 2.0, 2.0]
    # a NaN loss is left out of the loss curve, not written as NaN
    assert [e.step for e in acc.Scalars("streamtopo/loss/loss")] == [
        t for t, v in enumerate(LOSSES) if not math.isnan(v)
    ]


def test_log_and_add_scalar_protocols_receive_the_same_keys():
    model = _model()
    rec, sc = Recorder(), ScalarRecorder()
    with TrainingMonitor(model, every=2, loggers=[rec, sc]) as tm:
        statuses = _train(tm, model, [1.0] * 6)
    # evaluated steps only, and step 5, whose buffered loss close() checks
    assert [step for step, _ in rec.rows] == [0, 2, 4, 5]
    assert not statuses[-1].evaluated and tm.status_.evaluated and tm.status_.step == 5
    assert rec.rows[-1][1] == status_scalars(tm.status_)
    assert {tag for tag, _, _ in sc.calls} == set(rec.rows[-1][1])
    assert sorted({step for _, _, step in sc.calls}) == [0, 2, 4, 5]
    assert sc.flushed == 1  # close() flushes, does not close


def test_alarm_start_stop_and_end_are_logged_and_hooked(caplog):
    model = _model()
    hooked = []
    with caplog.at_level(logging.INFO, logger="streamtopo"):
        with TrainingMonitor(model, loss={"stop_patience": 2}, on_alarm=hooked.append) as tm:
            _train(tm, model)
    records = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "streamtopo"]
    warnings = [m for lvl, m in records if lvl == logging.WARNING]
    infos = [m for lvl, m in records if lvl == logging.INFO]
    assert len(warnings) == 2
    assert warnings[0].startswith("streamtopo alarm starts at step 10: COLLAPSE")
    assert "non-finite loss nan" in warnings[0]
    assert warnings[1].startswith("streamtopo says stop at step 11: COLLAPSE")
    assert infos == ["streamtopo alarm ends at step 13 (HEALTHY)"]
    assert [(s.step, s.state) for s in hooked] == [(10, State.COLLAPSE), (11, State.COLLAPSE)]


def test_layer_culprits_and_direction_reach_the_warning(caplog):
    from streamtopo.monitors import LayerStatus

    layer = LayerStatus(
        7, State.WATCH, "layer z=+9", h0=1.0, z=9.0, direction="rising", culprits=("l2", "l3")
    )
    from streamtopo.integrations.training import TrainingStatus

    status = TrainingStatus(7, State.WATCH, "layer: layer z=+9", fired=("layer",), layer=layer)
    reporter = AlarmReporter()
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        reporter.report(status, stop=True)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "streamtopo alarm starts at step 7: WATCH; (layer: layer z=+9); "
        "layer culprits: l2, l3; layer direction: rising",
        "streamtopo says stop at step 7: WATCH; (layer: layer z=+9); "
        "layer culprits: l2, l3; layer direction: rising",
    ]


def test_an_escalation_warns_and_a_new_episode_hooks_again(caplog):
    hooked = []
    reporter = AlarmReporter(on_alarm=hooked.append)
    states = ["HEALTHY", "WATCH", "COLLAPSE", "HEALTHY", "WATCH"]
    with caplog.at_level(logging.INFO, logger="streamtopo"):
        for t, s in enumerate(states):
            reporter.report(MonitorStatus(t, State(s), ""))
        reporter.report(MonitorStatus(5, State.COLLAPSE, "", evaluated=False))  # a repeat
    levels = [(r.levelname, r.getMessage().split(" at ")[0]) for r in caplog.records]
    assert levels == [
        ("WARNING", "streamtopo alarm starts"),
        ("WARNING", "streamtopo alarm escalates"),
        ("INFO", "streamtopo alarm ends"),
        ("WARNING", "streamtopo alarm starts"),
    ]
    assert [s.step for s in hooked] == [1, 4]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"loggers": [Recorder(), object()]}, "loggers[1] must have log_metrics"),
        ({"on_alarm": "slack"}, "on_alarm must be callable"),
    ],
)
def test_bad_loggers_fail_at_construction_and_leave_no_hooks(kwargs, needle):
    model = _model()
    with pytest.raises(InputTypeError) as info:
        TrainingMonitor(model, **kwargs)
    assert needle in str(info.value)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())


def test_a_single_logger_needs_no_list():
    rec = Recorder()
    reporter = AlarmReporter(rec)
    reporter.report(MonitorStatus(3, State.HEALTHY, "", calibrating=True))
    assert rec.rows == [(3, {"streamtopo/state": 0.0, "streamtopo/calibrating": 1.0})]


def test_wandb_offline_run_receives_the_keys(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = wandb.init(project="streamtopo-test", dir=str(tmp_path), mode="offline")
    try:
        model = _model()
        with TrainingMonitor(model, loggers=[run], loss={"stop_patience": 2}) as tm:
            _train(tm, model)
        summary = {k: run.summary[k] for k in run.summary.keys()}
    finally:
        run.finish()
    assert summary["streamtopo/state"] == 0.0  # the last step is HEALTHY again
    # W&B's step is streamtopo's step; a step's row is committed when the next one arrives
    assert summary["_step"] == len(LOSSES) - 2
    assert {"streamtopo/layer/h0", "streamtopo/loss/state", "streamtopo/calibrating"} <= set(
        summary
    )
    assert list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))


def test_an_absorbed_shift_ends_the_alarm_with_its_reason(caplog):
    """A held shift absorbed by the streak rule ends the episode: the INFO record says so."""
    import numpy as np

    from streamtopo import LayerMonitor

    rng = np.random.default_rng(0)
    x = 2.5 + 0.1 * rng.normal(size=(400, 2, 4))
    x[300:, 0, 3] -= 0.5  # one block's entropy drops and holds
    mon = LayerMonitor(4, ("attn_entropy", "attn_logit"), escalate_after=10**6)
    reporter = AlarmReporter()
    with caplog.at_level(logging.INFO, logger="streamtopo"):
        for v in x:
            reporter.report(mon.check(v))
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(infos) == 1
    assert infos[0].startswith("streamtopo alarm ends at step ")
    assert "(HEALTHY: shift absorbed (held 30 evaluations)" in infos[0]


def test_training_status_says_a_monitor_absorbed_a_shift():
    from streamtopo.integrations._training_status import combine

    absorbed = MonitorStatus(7, State.HEALTHY, "shift absorbed (held 30 evaluations)")
    plain = MonitorStatus(7, State.HEALTHY, "ok")
    st = combine({"layer": plain, "attention": absorbed}, 7, True)
    assert st.state is State.HEALTHY and st.fired == ()
    assert st.reason == "attention: shift absorbed (held 30 evaluations)"
    assert combine({"layer": plain}, 7, True).reason == ""
