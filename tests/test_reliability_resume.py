"""Issue 16 item 4c and issue 20's run-id policy: reopening a run takes a decision, and a
continued run never writes a step twice by accident."""

from __future__ import annotations

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.errors import InputError, InputTypeError
from streamtopo.io import RunWriter, read_run, replay
from tests.journal_rows import layer_row
from tests.reliability_io_helpers import hashes, rows, run_with_parts


def test_reusing_a_run_id_is_an_error_by_default_and_changes_nothing(tmp_path):
    run = run_with_parts(tmp_path, run_id="exp1", steps=12)
    before = hashes(run)
    with pytest.raises(InputError, match="run_id 'exp1' already holds rows") as info:
        RunWriter(tmp_path, run_id="exp1")
    assert "resume='allow'" in str(info.value)
    assert hashes(run) == before
    assert read_run(run).collect()["step"].to_list() == list(range(12))


def test_resume_must_needs_an_existing_run_and_creates_nothing(tmp_path):
    with pytest.raises(InputError, match=r"resume='must'.*'typo'"):
        RunWriter(tmp_path, run_id="typo", resume="must")
    assert not (tmp_path / "run=typo").exists()
    run_with_parts(tmp_path, run_id="exp", steps=5)
    with RunWriter(tmp_path, run_id="exp", resume="must") as w:
        assert w.next_step_ == 5


def test_a_new_rank_of_an_existing_run_is_not_a_reuse(tmp_path):
    run_with_parts(tmp_path, run_id="dist", steps=5)
    with RunWriter(tmp_path, run_id="dist", rank=1) as w:  # resume="never" is fine
        rows(w, range(3))
    assert read_run(w.run_dir).collect().group_by("rank").len().sort("rank").rows() == [
        (0, 5),
        (1, 3),
    ]


def test_a_fresh_monitor_at_step_0_is_refused_with_the_way_on(tmp_path):
    run = run_with_parts(tmp_path, steps=12)
    before = hashes(run)
    with RunWriter(tmp_path, run_id="r", resume="allow", flush_rows=4) as w:
        with pytest.raises(InputError, match="up to step 11") as info:
            w(layer_row(0))
        assert "step_offset='continue'" in str(info.value) and "rewind_to" in str(info.value)
        with pytest.raises(InputError, match="up to step 11"):
            w(layer_row(11))
        w(layer_row(12))  # after the last step: fine
        with pytest.raises(InputError, match="up to step 11"):
            w(layer_row(5))
    assert read_run(run).collect()["step"].to_list() == list(range(13))
    assert {k: v for k, v in hashes(run).items() if k in before} == before


def test_a_real_monitor_restarting_at_0_is_refused_and_continue_renumbers_it(tmp_path):
    with RunWriter(tmp_path, run_id="m") as w:
        mon = LayerMonitor(n_layers=4, writer=w)
        for s in range(20):
            mon.check([1.0, 2.0, 3.0 + s % 2, 4.0])
    with RunWriter(tmp_path, run_id="m", resume="allow") as w2:
        fresh = LayerMonitor(n_layers=4, writer=w2)
        with pytest.raises(InputError, match="up to step 19"):
            fresh.check([1.0, 2.0, 3.0, 4.0])
    with RunWriter(tmp_path, run_id="m", resume="allow", step_offset="continue") as w3:
        fresh = LayerMonitor(n_layers=4, writer=w3)
        for _ in range(5):
            fresh.check([1.0, 2.0, 3.0, 4.0])
    assert read_run(w.run_dir).collect()["step"].to_list() == list(range(25))


def test_rewind_to_accepts_steps_from_the_checkpoint_and_replay_keeps_the_later_copy(tmp_path):
    run = run_with_parts(tmp_path, steps=20)
    with RunWriter(tmp_path, run_id="r", resume="allow", rewind_to=15) as w:
        with pytest.raises(InputError, match="rewind_to=15"):
            w(layer_row(14))
        for s in range(15, 25):
            w(layer_row(s, h0=100.0 + s))
    df = read_run(run).collect()
    assert df.height == 30  # both copies of 15..19 stay on disk
    out = replay(run, monitor=LayerMonitor(n_layers=4, signals=("grad_norm", "act_norm")))
    assert out["step"].to_list() == list(range(25))
    assert out["live_h0"].to_list()[15:] == [100.0 + s for s in range(15, 25)]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"resume": "yes"}, "resume must be one of"),
        ({"resume": None}, "resume must be one of"),
        ({"rewind_to": 3}, "rewind_to .* needs resume='allow'"),
        ({"rewind_to": -1, "resume": "allow"}, "rewind_to must be an integer >= 0"),
        ({"rewind_to": 2**62, "resume": "allow"}, "rewind_to must be < 2\\*\\*62"),
        ({"rewind_to": 1.5, "resume": "allow"}, "rewind_to must be an integer"),
        (
            {"rewind_to": 3, "resume": "allow", "step_offset": "continue"},
            "rewind_to .* int step_offset",
        ),
        ({"step_offset": -1}, "step_offset must be in \\[0, 2\\*\\*62\\)"),
        ({"step_offset": 2**62}, "step_offset must be in"),
        ({"step_offset": "later"}, "step_offset must be an int or 'continue'"),
    ],
)
def test_bad_resume_arguments(tmp_path, kwargs, match):
    with pytest.raises((InputError, InputTypeError), match=match):
        RunWriter(tmp_path, run_id="a", **kwargs)
    assert not (tmp_path / "run=a").exists()


def test_step_offset_plus_step_may_not_leave_the_int64_safe_range(tmp_path):
    with RunWriter(tmp_path, run_id="o", step_offset=2**62 - 2) as w:
        w(layer_row(0))
        w(layer_row(1))
        with pytest.raises(InputError, match="2\\*\\*62"):
            w(layer_row(2))
    assert read_run(w.run_dir).collect()["step"].to_list() == [2**62 - 2, 2**62 - 1]
    assert np.iinfo(np.int64).max > 2**62
