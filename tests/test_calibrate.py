"""streamtopo calibrate: the chosen knob meets the false-alarm target on held-out healthy runs,
the config it writes is what LayerMonitor/TrainingMonitor load, and the command line prints it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamtopo.app.calibrate import calibrate, candidates, garwood_upper
from streamtopo.app.cli import main
from streamtopo.errors import InputError, InputTypeError
from streamtopo.io import RunWriter
from streamtopo.monitors.layer import LayerMonitor

L, SIGNALS, T = 4, ("grad_norm", "act_norm"), 700
TARGET = 3.0  # false alarms per 1k: 4,200 healthy evaluations can certify it


def healthy(seed: int, steps: int = T) -> np.ndarray:
    """Per-layer levels, a slow shared decay (LR decay: invisible in log space), AR(1) noise
    with heavy tails and rare kicks: the sensitive knobs raise false alarms, the quiet ones
    few."""
    rng = np.random.default_rng(seed)
    levels = rng.normal(0.0, 1.0, size=(1, 2, L))
    e = 0.05 * rng.standard_t(3, size=(steps, 2, L))
    e += (rng.random((steps, 2, L)) < 0.01) * rng.normal(0.0, 0.25, size=(steps, 2, L))
    ar = np.zeros((steps, 2, L))
    for t in range(1, steps):
        ar[t] = 0.9 * ar[t - 1] + e[t]
    decay = -np.linspace(0.0, 1.0, steps)[:, None, None]
    return np.exp(levels + ar + decay)


def write(log_dir, run_id: str, x: np.ndarray):
    with RunWriter(log_dir, run_id=run_id) as w:
        mon = LayerMonitor(x.shape[2], SIGNALS, window=8, writer=w)
        for row in x:
            mon.check(row)
    return w.run_dir


def episodes(states: np.ndarray) -> int:
    alarm = states != "HEALTHY"
    return int((alarm & ~np.concatenate([[False], alarm[:-1]])).sum())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    return [write(root / "logs", f"h{k}", healthy(k)) for k in range(6)]


@pytest.fixture(scope="module")
def cal(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("cfg") / "streamtopo.json"
    return calibrate(runs, target_fa=TARGET, rule="cusum", workers=1, horizon=100, out=out)


@pytest.fixture(scope="module")
def kept(runs, tmp_path_factory):
    """The runs' own rule: the default monitor (streak rule + kept change detector)."""
    out = tmp_path_factory.mktemp("cfg") / "kept.json"
    return calibrate(runs, target_fa=TARGET, workers=1, horizon=100, out=out)


def test_the_chosen_knob_meets_the_target_on_held_out_runs(cal):
    assert cal.rule == "cusum" and cal.runs == 6 and cal.steps == 6 * T
    assert cal.certified
    chosen = [r for r in cal.rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["knob"] == cal.knob
    # certified: the exact Poisson upper bound of the chosen knob is within the target
    assert chosen[0]["upper"] == pytest.approx(
        1000.0 * garwood_upper(chosen[0]["alarms"]) / cal.steps
    )
    assert chosen[0]["upper"] <= TARGET
    # the grid is informative: the most sensitive knobs alarm on healthy runs and fail
    assert not cal.rows[-1]["meets"] and cal.rows[-1]["alarms"] > 0
    # held-out healthy runs (other seeds) with the written config: near or under the target
    steps = alarms = 0
    for k in range(100, 110):
        x = healthy(k)
        mon = LayerMonitor(L, SIGNALS, config=cal.path)
        alarms += episodes(mon.run(x)["state"].to_numpy())
        steps += x.shape[0]
    assert 1000.0 * alarms / steps <= 2.0 * TARGET
    # injected faults: the x30 jump is caught at once wherever it was scored
    jump = chosen[0]["faults"]["jump x30"]
    assert jump["scored"] + jump["masked"] == 6 and jump["detected"] == jump["scored"] > 0
    assert jump["median_delay"] <= 1.0


def test_the_config_loads_into_layer_and_training_monitors(cal):
    doc = json.loads(Path(cal.path).read_text())
    assert doc["format"] == "streamtopo-config" and doc["layer"]["rule"] == "cusum"
    assert doc["calibration"]["knob"] == cal.knob
    mon = LayerMonitor(L, SIGNALS, config=cal.path)
    assert mon.rule == "cusum" and mon.fa_per_1k == cal.knob["fa_per_1k"] and mon.window == 8
    # the config's settings replace the arguments it names, the others stay
    mon = LayerMonitor(L, SIGNALS, window=32, patience=7, config={"fa_per_1k": 0.5})
    assert (mon.window, mon.patience, mon.fa_per_1k) == (32, 7, 0.5)
    torch = pytest.importorskip("torch")
    from streamtopo.integrations.training import TrainingMonitor

    model = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
    with TrainingMonitor(model, config=cal.path) as tm:
        assert tm.layer_monitor.fa_per_1k == cal.knob["fa_per_1k"]
        assert tm.layer_monitor.rule == "cusum"
    with pytest.raises(InputError, match="not both"):
        TrainingMonitor(model, config=cal.path, layer={"config": cal.path})


def test_the_default_monitor_is_calibrated_with_its_change_detector(kept):
    # the runs recorded the default (streak + kept detector): both rules' knobs are chosen
    assert kept.rule == "streak" and kept.certified
    assert [r["knob"] for r in kept.rows] == candidates("streak", detector=True)
    assert set(kept.knob) == {"watch_z", "raise_after", "fa_per_1k"}
    chosen = [r for r in kept.rows if r["chosen"]]
    assert len(chosen) == 1 and chosen[0]["upper"] <= TARGET
    # the detector's knob is live: at fixed streak knobs a larger fa_per_1k finds the x30
    # jump sooner (the detector, not the streak rule, catches it first)
    by = {tuple(r["knob"].values()): r for r in kept.rows}
    slow = by[(3.0, 20, 0.02)]["faults"]["jump x30"]["median_delay"]
    fast = by[(3.0, 20, 0.5)]["faults"]["jump x30"]["median_delay"]
    assert fast < slow
    # the written config is the default monitor with the chosen knobs
    mon = LayerMonitor(L, SIGNALS, config=kept.path)
    assert mon.rule == "streak" and mon.keep_detector and mon.early_rule == "cusum"
    assert {k: getattr(mon, k) for k in kept.knob} == kept.knob
    # held-out healthy runs with it: near or under the target
    steps = alarms = 0
    for k in range(100, 110):
        x = healthy(k)
        alarms += episodes(LayerMonitor(L, SIGNALS, config=kept.path).run(x)["state"].to_numpy())
        steps += x.shape[0]
    assert 1000.0 * alarms / steps <= 2.0 * TARGET


def test_bad_configs_raise_naming_the_key(tmp_path):
    with pytest.raises(InputError, match=r"unknown key\(s\) \['fa_per_1000'\]"):
        LayerMonitor(L, config={"fa_per_1000": 0.1})
    with pytest.raises(InputError, match=r"unknown key\(s\) \['n_layers'\]"):
        LayerMonitor(L, config={"n_layers": 3})
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "streamtopo-config", "version": 1, "layers": {}}')
    with pytest.raises(InputError, match="unknown key"):
        LayerMonitor(L, config=bad)
    bad.write_text("not json")
    with pytest.raises(InputError, match="is not JSON"):
        LayerMonitor(L, config=bad)
    with pytest.raises(InputError, match="cannot be read"):
        LayerMonitor(L, config=tmp_path / "missing.json")
    with pytest.raises(InputTypeError, match="config must be a path"):
        LayerMonitor(L, config=3)
    with pytest.raises(InputError, match="fa_per_1k must be a positive"):
        LayerMonitor(L, config={"fa_per_1k": -1})


def test_streak_knobs_and_an_uncertifiable_target(runs):
    # a streak monitor without the kept detector: the streak knobs alone
    one = calibrate(
        runs[:2], target_fa=1.0, rule="streak", workers=1, horizon=30,
        overrides={"keep_detector": False},
    )  # fmt: skip
    assert [r["knob"] for r in one.rows] == candidates("streak")
    assert set(one.knob) == {"watch_z", "raise_after"}
    assert one.config["layer"]["keep_detector"] is False
    # 1,400 evaluations cannot bound 1 per 1k at 95 % (that needs 2,996 even with no alarm)
    assert not one.certified and "needs >= 2,996" in one.note
    assert not any(r["meets"] for r in one.rows)


def test_parallel_workers_give_the_serial_result(runs):
    serial = calibrate(runs[:2], target_fa=3.0, rule="cusum", workers=1, horizon=20)
    parallel = calibrate(runs[:2], target_fa=3.0, rule="cusum", workers=2, horizon=20)
    assert parallel.rows == serial.rows and parallel.knob == serial.knob


def test_bad_arguments_raise(runs, tmp_path):
    with pytest.raises(InputError, match="neither a run directory"):
        calibrate([tmp_path])
    with pytest.raises(InputError, match="target_fa must be a positive"):
        calibrate(runs, target_fa=0.0)
    with pytest.raises(InputError, match="rule must be one of"):
        calibrate(runs, rule="peak")
    other = write(tmp_path, "other", healthy(0, 60)[:, :, :3].copy() + 0.0)
    with pytest.raises(InputError, match="3 layers"):
        calibrate([runs[0], other])
    with RunWriter(tmp_path, run_id="peak") as w:  # a rule calibrate has no knobs for
        mon = LayerMonitor(L, SIGNALS, window=8, rule="peak", writer=w)
        for row in healthy(1, 60):
            mon.check(row)
    with pytest.raises(InputError, match=r"records rule='peak'.*pass rule="):
        calibrate(w.run_dir)
    assert calibrate(w.run_dir, target_fa=50.0, rule="cusum", workers=1, horizon=10).runs == 1


def test_cli_prints_the_table_and_json(runs, tmp_path, capsys):
    out = tmp_path / "c.json"
    args = ["calibrate", *map(str, runs[:2]), "--target-fa", "5", "--workers", "1"]
    assert main([*args, "--horizon", "50", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "chosen: rule='streak'" in text and "| knob |" in text and str(out) in text
    assert main([*args, "--horizon", "50", "--rule", "cusum", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["schema"] == "streamtopo.calibrate/1" and payload["runs"] == 2
    assert payload["rule"] == "cusum" and set(payload["knob"]) == {"fa_per_1k"}
    assert payload["config"]["layer"]["fa_per_1k"] == payload["knob"]["fa_per_1k"]


def test_import_streamtopo_stays_light():
    code = (
        "import sys, streamtopo; streamtopo.calibrate; "
        "heavy = ('numba', 'polars', 'tqdm', 'scipy', 'torch'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
