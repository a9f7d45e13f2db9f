"""Issue 16 leftovers in TrainingMonitor's row sink (real torch): two TrainingMonitors on one
RunWriter are refused unless named (the RunWriter's claim passes through the sink), and an
``acknowledge()`` row lands at the step of the row its monitor writes next, after a guard's
rollback too, so replay applies it where the live monitor did."""

from __future__ import annotations

import gc

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from streamtopo import CentroidMonitor, CollapseMonitor, Guard, State  # noqa: E402
from streamtopo.errors import InputError  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor, TrainingStatus  # noqa: E402
from streamtopo.io import RunWriter, read_run, replay  # noqa: E402


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3)
    )


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _train(model, tm, opt, t):
    g = torch.Generator().manual_seed(t)
    x, y = torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g)
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return tm.step(loss.detach(), labels=y)


def test_second_unnamed_training_monitor_on_one_writer_is_refused(tmp_path):
    with RunWriter(tmp_path, run_id="two") as w:
        m1, m2 = _model(0), _model(1)
        tm1 = TrainingMonitor(m1, writer=w)
        with pytest.raises(InputError, match=r"table 'layer'.*layer=\{'name': 'eval'\}"):
            TrainingMonitor(m2, writer=w)
        assert _hooks(m2) == 0  # nothing left on the refused model
        # named layer but unnamed loss: the loss table is refused the same way
        with pytest.raises(InputError, match=r"table 'loss'.*loss=\{'name': 'eval'\}"):
            TrainingMonitor(m2, writer=w, layer={"name": "eval"})
        assert _hooks(m2) == 0
        # a centroid monitor handed to the second one is claimed too
        c1, c2 = CentroidMonitor(3), CentroidMonitor(3)
        tm1.close()
        del tm1
        gc.collect()
        tm1 = TrainingMonitor(m1, writer=w, centroid=c1)
        with pytest.raises(InputError, match="table 'centroid'"):
            TrainingMonitor(
                m2, writer=w, layer={"name": "eval"}, loss={"name": "eval"}, centroid=c2
            )
        assert c2.writer is None and _hooks(m2) == 0
        # the centroid claimed, the collapse refused: neither given monitor is changed
        k1, k2, c3 = CollapseMonitor(), CollapseMonitor(), CentroidMonitor(3, name="x")
        tm3 = TrainingMonitor(
            _model(2), writer=w, layer={"name": "c"}, loss={"name": "c"}, collapse=k1
        )
        with pytest.raises(InputError, match="table 'collapse'"):
            TrainingMonitor(
                m2, writer=w, layer={"name": "d"}, loss={"name": "d"}, centroid=c3, collapse=k2
            )
        assert c3.writer is None and k2.writer is None and _hooks(m2) == 0
        tm3.close()
        del tm3
        tm2 = TrainingMonitor(m2, writer=w, layer={"name": "eval"}, loss={"name": "eval"})
        opt1 = torch.optim.SGD(m1.parameters(), lr=0.01)
        opt2 = torch.optim.SGD(m2.parameters(), lr=0.01)
        for t in range(5):
            _train(m1, tm1, opt1, t)
            _train(m2, tm2, opt2, t)
        tm1.close()
        tm2.close()
    for table in ("layer", "layer.eval", "loss", "loss.eval"):
        assert read_run(w.run_dir, table=table).collect()["step"].to_list() == list(range(5))


def _acks(run_dir):
    return read_run(run_dir, table="events").collect()["step"].to_list()


def _run_with_rollback_and_acknowledge(log_dir, every, ack_after):
    """A real Adam run; the guard rolls back to step 30 at step 32 (an injected COLLAPSE, as in
    test_guard); the layer monitor is acknowledged after each call in ``ack_after``."""
    model = _model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tm = TrainingMonitor(model, log_dir=log_dir, run_id="ack", every=every)
    guard = Guard(every=10, margin=0, patience=1).attach(model=model, optimizer=opt, monitors=[tm])
    statuses, acked_at = [], []
    for t in range(60):
        st = _train(model, tm, opt, t)
        seen = TrainingStatus(t, State.COLLAPSE, "injected", fired=("loss",)) if t == 32 else st
        action = guard.step(t, seen)
        if t == 32:
            assert action is not None and action.action == "rollback"
        statuses.append(st)
        if t in ack_after:
            tm.layer_monitor.acknowledge()
            acked_at.append(t)
    tm.close()
    assert guard.rollbacks_ == 1 and guard.interventions_[0].restored_step == 30
    return tm, statuses, acked_at


@pytest.mark.parametrize("every", [1, 2, 3])
def test_acknowledge_after_a_rollback_lands_on_the_next_layer_row(tmp_path, every):
    tm, statuses, acked_at = _run_with_rollback_and_acknowledge(tmp_path, every, (36, 47, 59))
    layer_steps = read_run(tm.run_dir_, table="layer").collect()["step"].to_list()
    assert layer_steps == [s.step for s in statuses if s.evaluated]
    assert layer_steps == sorted(set(layer_steps))
    # each acknowledgement is logged at the step of the first layer row written after it
    # (the last one came after the last row: it goes one past it, where nothing follows)
    expected = [min(s for s in layer_steps if s > t) for t in acked_at[:2]]
    expected.append(layer_steps[-1] + 1)
    assert _acks(tm.run_dir_) == expected
    events = read_run(tm.run_dir_, table="events").collect()
    assert events["table"].to_list() == ["layer"] * 3
    out = replay(tm.run_dir_)  # replays (a rollback is not replayed; the acks are applied)
    assert out["step"].to_list() == layer_steps


def test_acknowledging_the_attention_monitor_logs_an_event_of_its_table(tmp_path):
    """The attention LayerMonitor's acknowledge() row used to meet the attention-row converter
    (a raw KeyError); it is an events row of table ``attention`` at that table's next step."""
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    model = nn.Sequential(nn.TransformerEncoder(layer, 2, enable_nested_tensor=False))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    tm = TrainingMonitor(model, log_dir=tmp_path, signals=("grad_norm", "attn_entropy"), every=2)
    for t in range(7):
        loss = model(torch.randn(4, 5, 16)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        tm.step(loss.detach())
        if t == 2:
            tm.attention_monitor.acknowledge()
    tm.close()
    events = read_run(tm.run_dir_, table="events").collect()
    assert events["table"].to_list() == ["attention"] and events["step"].to_list() == [4]
    assert read_run(tm.run_dir_, table="attention").collect()["step"].to_list() == [0, 2, 4, 6]
