"""One step axis: the training step in every status and table (issue 20), losses buffered after
the last monitored step checked at close(), the guard through TrainingMonitor (issue 19)."""

from __future__ import annotations

import logging
from contextlib import nullcontext

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402

from streamtopo import Guard  # noqa: E402
from streamtopo.errors import InputError, InputTypeError  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402
from streamtopo.io import read_run, replay  # noqa: E402

from .test_training_wire import digits_run  # noqa: E402


def mlp(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 2)
    )
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def steps_of(run_dir, table):
    return read_run(run_dir, table=table).collect()["step"].to_list()


def test_every_table_and_status_is_on_the_training_step_axis(tmp_path, caplog):
    """every=5 with the trainer's steps 100, 102, ...: the layer table and the sub-statuses
    carry those steps (not the monitored-step count 0..9), the loss table every step, and the
    NaN losses of the last two steps (after the last monitored step) are checked at close()."""
    model, opt = mlp()
    alarms = []
    tm = TrainingMonitor(model, log_dir=tmp_path, every=5, on_alarm=alarms.append)
    given = [100 + 2 * t for t in range(48)]
    statuses = []
    g = torch.Generator().manual_seed(0)
    for t, step in enumerate(given):
        x = torch.randn(32, 8, generator=g)
        loss = nn.functional.cross_entropy(model(x), (x[:, 0] > 0).long())
        loss.backward()
        opt.step()
        opt.zero_grad()
        statuses.append(tm.step(loss * float("nan") if t >= 46 else loss, step=step))
    monitored = given[::5]
    for t, (st, step) in enumerate(zip(statuses, given, strict=True)):
        last = monitored[t // 5]
        assert (st.step, st.layer.step, st.loss.step, st.evaluated) == (
            step,
            last,
            last,
            t % 5 == 0,
        )
    assert statuses[-1].state == "HEALTHY" and alarms == []
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        tm.close()
    final = tm.status_
    assert (final.step, final.loss.step, final.layer.step, final.state) == (
        194,
        194,
        190,
        "COLLAPSE",
    )
    assert [a.step for a in alarms] == [194]  # told at close(), as at a monitored step
    assert any("alarm starts at step 194" in r.getMessage() for r in caplog.records)
    assert steps_of(tm.run_dir_, "layer") == monitored
    assert steps_of(tm.run_dir_, "loss") == given
    replayed = replay(tm.run_dir_)  # reads the step column: bit-identical on the sparse axis
    assert replayed["step"].to_list() == monitored
    assert np.array_equal(
        replayed["h0"].to_numpy().view(np.int64), replayed["live_h0"].to_numpy().view(np.int64)
    )
    assert tm.host_copies_ == len(monitored) + 1  # + one at close() for steps 192, 194
    from streamtopo.report import build_report

    summary = build_report(tm.run_dir_, tmp_path / "r.html", interactive=False).markdown
    assert "the loss rule fired at step 192" in summary.read_text()  # the first NaN's row


def test_a_given_step_must_increase_and_a_rejected_one_changes_nothing():
    model, opt = mlp()
    with TrainingMonitor(model) as tm:
        for step in (3, 4, 9):
            loss = model(torch.randn(4, 8)).square().mean()
            loss.backward()
            opt.step()
            assert tm.step(loss, step=step).step == step
            opt.zero_grad()
        before = tm.state_dict()
        for bad in (9, 8, -1):
            with pytest.raises(InputError, match=r"step must be an int in \[10, 2\*\*62\)"):
                tm.step(loss, step=bad)
        with pytest.raises(InputTypeError, match="step must be an int"):
            tm.step(loss, step="10")
        # compared as JSON: NaN (a change detector's unset prediction) equals NaN there
        assert dump(tm.state_dict()) == dump(before)
        loss = model(torch.randn(4, 8)).square().mean()
        loss.backward()
        assert tm.step(loss).step == 10  # default: the last step + 1
        assert tm.state_dict()["step"] == 11


def test_guard_rollback_with_every_and_given_steps_repeats_no_step(tmp_path):
    """A rollback restores the monitors' counters but not the training step: with every=3 and
    the trainer's steps 1, 2, ... every table stays strictly increasing, replay bit-identical."""
    _, _, statuses, tm, _ = digits_run(
        True, Guard(act_on="WATCH", patience=10), log_dir=tmp_path, every=3, step_of=lambda t: t + 1
    )
    recs = tm.interventions_
    assert [r.action for r in recs] == ["rollback"] and 300 < recs[0].step < 350
    assert [s.step for s in statuses] == list(range(1, 601))
    assert [s.intervention for s in statuses if s.intervention is not None] == recs
    layer = steps_of(tm.run_dir_, "layer")
    assert layer == list(range(1, 601, 3))  # monitored calls 0, 3, ...: steps 1, 4, ...
    assert steps_of(tm.run_dir_, "loss") == list(range(1, 601))
    assert steps_of(tm.run_dir_, "interventions") == [r.step for r in recs]
    for st in statuses:
        assert st.layer.step <= st.step and st.loss.step <= st.step
    replayed = replay(tm.run_dir_)
    assert replayed["step"].to_list() == layer
    # the monitors were restored mid-run: replay restores its monitor at the same place (the
    # rollback's step lies between two monitored steps), so every row matches, bit for bit
    assert np.array_equal(
        replayed["h0"].to_numpy().view(np.int64), replayed["live_h0"].to_numpy().view(np.int64)
    )
    assert replayed["state"].to_list() == replayed["live_state"].to_list()
    assert replayed["intervention"].drop_nulls().len() == 1


def test_attach_guard_checks_before_attaching():
    model, opt = mlp()
    with TrainingMonitor(model) as tm:
        with pytest.raises(InputTypeError, match=r"guard must be a streamtopo\.Guard"):
            tm.attach_guard(None, opt)
        with pytest.raises(InputError, match="optimizer"):
            tm.attach_guard(Guard(), None)
        assert tm.guard is None
        other, other_opt = mlp(1)
        taken = Guard().attach(other, other_opt)
        with pytest.raises(InputError, match="already attached"):
            tm.attach_guard(taken, opt)
        guard = Guard(every=1)
        tm.attach_guard(guard, opt)
        assert tm.guard is guard and guard.state.model is model
        with pytest.raises(InputError, match="already has a guard"):
            tm.attach_guard(Guard(), opt)
        loss = model(torch.randn(4, 8)).square().mean()
        loss.backward()
        opt.step()
        tm.step(loss, step=7)
        assert guard.snapshot_steps_ == [7]  # the guard sees the training step
    with pytest.raises(InputError, match="closed"):
        tm.attach_guard(Guard(), opt)


def test_resume_continues_a_run_from_a_checkpoint_state(tmp_path):
    """A raw loop: state saved after step 5, the run went on to step 9, then a new process
    resumes from the state: steps 6.. are written again and supersede the recorded ones."""
    model, opt = mlp()

    def train(tm, steps, seed):
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            loss = model(torch.randn(8, 8, generator=g)).square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            tm.step(loss)

    with TrainingMonitor(model, log_dir=tmp_path, run_id="r") as tm:
        train(tm, 6, 0)
        state = tm.state_dict()
        train(tm, 4, 1)
    for bad, match in (({"resume": "allow"}, "needs log_dir"), ({"resume": "yes"}, "resume must")):
        with pytest.raises(InputError, match=match):
            TrainingMonitor(model, **bad)
    assert not any(m._forward_hooks for m in model.modules())  # nothing registered
    with pytest.raises(InputError, match="already holds rows"):
        TrainingMonitor(model, log_dir=tmp_path, run_id="r")
    with TrainingMonitor(model, log_dir=tmp_path, run_id="r", resume="must") as tm2:
        tm2.load_state_dict(state)
        train(tm2, 4, 1)
        assert tm2.status_.step == 9 and tm2.step_ == 10
    assert steps_of(tm.run_dir_, "layer") == list(range(10)) + list(range(6, 10))
    replayed = replay(tm.run_dir_)
    assert replayed["step"].to_list() == list(range(10))
    assert (replayed["h0"] == replayed["live_h0"]).all()
    # no saved state (the callback came later), but the trainer's step: continued from there
    with TrainingMonitor(model, log_dir=tmp_path, run_id="r", resume="allow") as tm3:
        loss = model(torch.randn(8, 8)).square().mean()
        loss.backward()
        assert tm3.step(loss, step=8).step == 8
    assert steps_of(tm.run_dir_, "layer")[-3:] == [8, 9, 8]
    with TrainingMonitor(model, log_dir=tmp_path, run_id="r", resume="allow") as tm4:
        loss = model(torch.randn(8, 8)).square().mean()
        loss.backward()
        with pytest.raises(InputError, match="already records table 'loss' up to step 9"):
            tm4.step(loss)  # no step given: the writer refuses to write step 0 again


@pytest.mark.parametrize("fails", [False, True])
def test_close_checks_the_buffered_losses_unless_training_failed(fails):
    """A failed loop's close() (``with`` left by an exception) runs no collective for them."""
    model, opt = mlp()
    with pytest.raises(RuntimeError, match="boom") if fails else nullcontext():
        with TrainingMonitor(model, every=4) as tm:
            for _ in range(3):
                loss = model(torch.randn(8, 8)).square().mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                tm.step(loss)
            if fails:
                raise RuntimeError("boom")
    checked = 1 if fails else 3
    assert tm.loss_monitor.step_ == checked and tm.host_copies_ == 1 + (not fails)
    assert tm.status_.loss.step == checked - 1


def test_layer_rows_through_the_field_path_equal_the_dict_path(tmp_path):
    """A RunWriter takes the layer rows field by field (no dict) through TrainingMonitor's sink,
    stamped with the training step as a dict row is; a plain callable writer gets dict rows.
    Same run both ways: the same steps, values and states."""
    rows = []
    for writer in (None, rows.append):
        model, opt = mlp()
        kw = {"writer": writer} if writer else {"log_dir": tmp_path, "run_id": "fields"}
        tm = TrainingMonitor(model, every=3, **kw)
        assert (tm._sink.append_layer is None) == (writer is not None)
        g = torch.Generator().manual_seed(0)
        for t in range(30):
            x = torch.randn(32, 8, generator=g)
            loss = nn.functional.cross_entropy(model(x), (x[:, 0] > 0).long())
            loss.backward()
            opt.step()
            opt.zero_grad()
            tm.step(loss, step=1000 + 7 * t)
        tm.close()
    got = read_run(tmp_path / "run=fields", table="layer").collect()
    dict_rows = [r for r in rows if r.get("monitor") == "layer"]
    assert got["step"].to_list() == [r["step"] for r in dict_rows] == list(range(1000, 1210, 21))
    assert got["state"].to_list() == [r["state"] for r in dict_rows]
    for i, row in enumerate(dict_rows):
        for a, sig in enumerate(row["signals"]):
            for b, name in enumerate(row["layer_names"]):
                missing = row.get("missing") is not None and row["missing"][a, b]
                expected = None if missing else row["values"][a, b]
                assert got[f"{sig}/{name}"][i] == expected


def dump(state) -> str:
    import json

    return json.dumps(state, sort_keys=True, default=repr)
