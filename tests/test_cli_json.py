"""CLI: --json parsed for every command that has it, --help with defaults and an example,
a closed pipe ends quietly; statuses render as HTML in Jupyter."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from streamtopo import LayerMonitor
from streamtopo.alarms import State
from streamtopo.app.cli import _COMMANDS, build_parser, main
from streamtopo.io import RunWriter
from streamtopo.monitors import LayerStatus


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    with RunWriter(tmp_path_factory.mktemp("runs"), run_id="r") as w:
        mon = LayerMonitor(n_layers=5, signals=("act_norm",), writer=w)
        for t in range(300):
            v = np.exp(rng.normal(0, 0.05, 5)) * np.arange(1, 6)
            if t >= 250:
                v[2] *= 100.0
            mon.check(v)
    return w.run_dir


def run_json(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # one object, one line
    doc = json.loads(out)
    assert doc["schema"] == f"streamtopo.{argv[0]}/1"
    return doc


def test_h0_json(capsys, tmp_path):
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0]])
    np.save(tmp_path / "p.npy", pts)
    doc = run_json(capsys, ["h0", str(tmp_path / "p.npy"), "--metric", "euclidean", "--json"])
    assert doc["bars"] == [
        {"birth": 0.0, "death": 1.0, "merge": ["0", "1"]},
        {"birth": 0.0, "death": 2.0, "merge": ["1", "2"]},
        {"birth": 0.0, "death": None, "merge": None},
    ]
    assert doc["h0"] == 3.0 and doc["metric"] == "euclidean" and doc["names"] == ["0", "1", "2"]


def test_collapse_and_centroid_json(capsys):
    doc = run_json(capsys, ["collapse", "--variant", "default", "--json"])
    assert doc["n_points"] == 1797 and doc["dims"] == 64
    assert set(doc["variants"]) == {"default"}
    assert 0.0 <= doc["variants"]["default"]["ci"] <= 1.0
    assert isinstance(doc["flags"], list) and "anisotropy" in doc["components"]
    doc = run_json(capsys, ["centroid", "--json"])
    assert doc["n_train"] + doc["n_test"] == 1797
    assert len(doc["merges"]) == 9  # 10 classes: 9 MST edges
    assert doc["h0_gap"] == pytest.approx(doc["h0_train"] - doc["h0_test"])


def test_replay_and_report_json(capsys, run_dir, tmp_path):
    doc = run_json(capsys, ["replay", str(run_dir), "--json"])
    assert doc["steps"] == 300 and doc["overrides"] == {}
    (rank0,) = doc["summary"]
    assert rank0["steps"] == 300 and rank0["final_status"] in ("WATCH", "COLLAPSE")
    assert rank0["first_alarm_step"] >= 250
    doc = run_json(capsys, ["report", str(run_dir), "--out", str(tmp_path / "r.html"), "--json"])
    assert doc["html"] == str(tmp_path / "r.html") and doc["figures"] >= 1


@pytest.mark.parametrize("name", sorted(_COMMANDS))
def test_every_help_has_an_example_and_defaults(name):
    sub = build_parser()._subparsers._group_actions[0].choices[name]
    text = sub.format_help()
    assert "example:\n  streamtopo " in text
    with_default = [
        a
        for a in sub._actions
        if a.option_strings and a.default not in (None, False) and a.dest != "help"
    ]
    for action in with_default:
        assert f"(default: {action.default})" in " ".join(text.split())


def test_demo_is_listed_first():
    text = build_parser().format_help()
    assert text.index("    demo ") < text.index("    h0 ")


def test_a_closed_pipe_ends_quietly(tmp_path):
    # 20000 bars (~500 kB) cannot fit in a pipe buffer: the writer meets the closed pipe
    np.save(tmp_path / "p.npy", np.random.default_rng(0).normal(size=(20000, 2)))
    argv = ["h0", str(tmp_path / "p.npy"), "--metric", "euclidean"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamtopo", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141
    assert first.startswith(b"H0 of 20000 points")
    assert err == b""


def test_replay_into_head_is_clean(run_dir):
    shell = f"{sys.executable} -m streamtopo replay {run_dir} | head -3"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, timeout=120)
    assert done.returncode == 0
    assert done.stderr == b""
    assert len(done.stdout.splitlines()) == 3


def test_status_repr_html():
    from streamtopo.integrations.training import TrainingStatus

    layer = LayerStatus(
        4, State.COLLAPSE, "z=+9", h0=0.5, z=9.0, direction="rising", culprits=("l<1>", "l2")
    )
    html = layer._repr_html_()
    assert "COLLAPSE" in html and "#c62828" in html and "l&lt;1&gt;, l2" in html
    ts = TrainingStatus(4, State.COLLAPSE, "layer: z=+9", fired=("layer",), layer=layer)
    html = ts._repr_html_()
    assert "TrainingStatus · step 4" in html
    assert "<td style='text-align:left'>layer</td>" in html and "COLLAPSE (step 4): z=+9" in html
