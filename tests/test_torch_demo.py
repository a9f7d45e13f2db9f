"""``streamtopo demo``: a quick real run, and the message when torch is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_demo_without_torch_says_how_to_install():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from streamtopo.app.cli import main\n"
        "sys.exit(main(['demo', '--steps', '50']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert "pip install torch==2.13.0" in proc.stderr
    assert 'pip install "streamtopo[torch]"' in proc.stderr


def test_demo_rejects_unknown_fault(capsys):
    from streamtopo.app.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--fault", "meteor"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("fault", ["dead-relu", "none"])
def test_demo_smoke(fault, tmp_path, capsys):
    pytest.importorskip("torch")
    from streamtopo.app.cli import main

    assert main(["demo", "--steps", "200", "--fault", fault, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "numba kernels ready" in out
    assert "200/200" in out or "should_stop" in out
    assert f"wrote         : {tmp_path / 'summary.md'}" in out
    summary = (tmp_path / "summary.md").read_text()
    assert f"fault `{fault}`" in summary
    verdict = next(ln for ln in out.splitlines() if ln.startswith("verdict       : "))
    assert ("healthy" in verdict) and ("NOT" not in verdict or "topology false alarms" in verdict)
    for line in (ln for ln in out.splitlines() if ln.startswith("  before the fault: ")):
        assert " by rule '" in line  # each pre-fault alarm names its monitor and rule
    assert (tmp_path / "report.html").is_file() and not list(tmp_path.glob("run=*/*.html"))
    if fault == "dead-relu":  # 120 healthy steps, then the fault is seen within a few steps
        assert "first alarms: none" not in summary
    run_dirs = list(tmp_path.glob("run=*"))
    assert len(run_dirs) == 1  # the run is logged, and its replay matches the live run exactly
    assert "identical to live = True" in out


def test_h1_diagram_of_square_point_cloud_is_not_a_warning():
    """Batch size == feature width (64 x 64) is common; ripser warns it might be a distance
    matrix, which under ``filterwarnings=error`` broke CollapseMonitor inside the demo."""
    import numpy as np

    from streamtopo.topology import h1_diagram

    X = np.random.default_rng(0).random((12, 12))
    ripser = pytest.importorskip("ripser").ripser
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")
        ref = ripser(X, maxdim=1)["dgms"][1]
    np.testing.assert_array_equal(h1_diagram(X), ref)


def test_demo_steps_must_be_at_least_50(capsys):
    from streamtopo.app.cli import main

    with pytest.raises(SystemExit):
        main(["demo", "--steps", "-5"])
    assert "--steps: expected an integer >= 50, got -5" in capsys.readouterr().err


def test_demo_guard_saves_the_lr_spike_run(tmp_path, capsys):
    """Issue 19: ``streamtopo demo --guard`` rolls the LR-spike run back and says so."""
    pytest.importorskip("torch")
    from streamtopo.app.cli import main

    args = ["demo", "--guard", "--steps", "300", "--fault", "lr-spike", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert ">>> guard: step" in out and "rollback (restored step" in out
    line = next(s for s in out.splitlines() if s.startswith("guard: "))
    assert line.startswith("guard: the guard SAVED the run (1 intervention(s))"), line
    assert "same fault without the guard nan" in line  # the unguarded copy diverged
    # replay applies the recorded rollback: the whole run replays as it ran live
    assert "replayed 300 steps from the run directory: identical to live = True" in out
    assert "the guard SAVED the run" in (tmp_path / "summary.md").read_text()


def test_demo_transformer_shows_attention_signals_and_the_guard(tmp_path, capsys):
    pytest.importorskip("torch")
    from streamtopo.app.cli import main

    args = ["demo", "--model", "transformer", "--fault", "lr-spike", "--guard", "--steps", "400"]
    args += ["--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "max attn logit" in out and "min attn entropy" in out
    assert "absent" not in out  # every block is measured at every step
    line = next(s for s in out.splitlines() if s.startswith("guard: "))
    with_guard, without = (
        float(x) for x in line.split("loss (mean of the last")[1].split()[2::4][:2]
    )
    assert line.startswith("guard: 1 intervention(s)") and with_guard < without, line
    with pytest.raises(SystemExit):
        main(["demo", "--model", "transformer", "--fault", "meteor"])


def test_demo_transformer_default_is_attention_growth_caught_by_attention_not_loss(tmp_path):
    pytest.importorskip("torch")
    import io

    from streamtopo.app.demo_transformer import run_transformer_demo

    out = io.StringIO()
    res = run_transformer_demo("attn-growth", 600, tmp_path, stream=out)
    a = res["attention"]
    # the LR ramp without qk-layernorm: attention logits grow, one block's entropy collapses
    assert a["max_logit_after"] > 4 * a["max_logit_before"], a
    assert a["min_entropy_after"] < 0.5 * a["min_entropy_before"], a
    # the attention monitor raises an alarm after the ramp starts; the loss-rise rule never does
    assert res["fault_at"] <= res["first_alarm"]["attention"], res["first_alarm"]
    assert "loss" not in res["first_alarm"], res["first_alarm"]
    assert "loss-rise alarm: never" in out.getvalue()


def test_demo_fault_must_fit_the_model(tmp_path, capsys):
    pytest.importorskip("torch")
    from streamtopo.app.cli import main

    assert main(["demo", "--fault", "attn-growth", "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert "fault must be one of" in err and "needs model='transformer'" in err
    args = ["demo", "--model", "transformer", "--fault", "dead-relu", "--out", str(tmp_path)]
    assert main(args) == 1
    assert "model='transformer'" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # nothing written before the fault is checked
