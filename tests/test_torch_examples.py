"""Smoke tests: every example runs end to end at a reduced size."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow  # whole examples, each at a reduced size

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")


def test_raw_loop(monkeypatch, capsys):
    run_example("raw_loop_layer_monitor.py", "--steps", "30", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "step    0" in out and "'steps': 30" in out


def test_cnn_centroid(monkeypatch, capsys):
    run_example("cnn_digits_centroid.py", "--epochs", "2", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "epoch 1:" in out and "closest class pairs" in out
    assert out.count(" -> [") == 9  # 10 classes: 9 merges in the dendrogram text


def test_char_transformer(monkeypatch, capsys):
    run_example("char_transformer_attention.py", "--steps", "12", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert (
        "attention layers ['blocks.0.tap', 'blocks.1.tap', 'blocks.2.tap', 'blocks.3.tap']" in out
    )
    assert "attention entropy (nats) per block" in out


@pytest.mark.filterwarnings(
    "ignore::UserWarning", "ignore:.*LeafSpec.*:FutureWarning"
)  # Lightning's own advice warnings (workers, logging) and its pytree deprecation
def test_lightning_example(monkeypatch, capsys):
    import lightning  # noqa: F401  (dev extra)

    run_example("lightning_callback.py", "--steps", "20", monkeypatch=monkeypatch)
    out = capsys.readouterr().out
    assert "stopped at step 20 of 20" in out
    assert "Lightning's CSVLogger (" in out and "20 steps with streamtopo/state" in out


def test_hf_example(monkeypatch, capsys):
    import transformers  # noqa: F401  (dev extra)

    run_example("hf_trainer_callback.py", "--steps", "10", monkeypatch=monkeypatch)
    assert "10 steps; layers ['layers.0'" in capsys.readouterr().out


def test_ddp_example(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "ddp_two_processes.py"), "--steps", "20",
         "--out", str(tmp_path)],
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rank 0] step    0" in proc.stdout
    # only rank 0 logs
    assert (tmp_path / "run=ddp-example" / "table=layer" / "rank=0").is_dir()
    assert not (tmp_path / "run=ddp-example" / "table=layer" / "rank=1").exists()


def test_replay_example(tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    run_example(
        "replay_polars_plot.py", "--steps", "150", "--out", "r.png", monkeypatch=monkeypatch
    )
    out = capsys.readouterr().out
    assert "replay == live: True" in out
    assert (tmp_path / "r.png").stat().st_size > 10_000
