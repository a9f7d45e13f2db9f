"""The detection evaluation runs end to end on real training runs (smallest setting)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

pytest.importorskip("torch")
ROOT = Path(__file__).resolve().parents[1]


def test_eval_detection_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eval_detection.py"), "--smoke",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    df = pl.read_parquet(tmp_path / "runs.parquet")
    # every fault scenario x every detector, baselines and streamtopo's monitors alike
    assert df["fault"].n_unique() == 6
    detectors = set(df["detector"].unique())
    assert {"loss_rise", "max_layer_z", "st_layer[act] default", "st_collapse default"} <= detectors
    assert df.group_by("fault", "seed").len()["len"].unique().to_list() == [len(detectors)]
    table = (tmp_path / "table.md").read_text()
    # the header opens the file; every detector has a row after it
    assert table.count("\n| ") == len(detectors)


def test_eval_guard_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eval_guard.py"), "--smoke",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    # every fault x {no guard, guard}, one seed
    assert sorted((r["fault"], r["variant"]) for r in rows) == sorted(
        (f, v)
        for f in ("healthy", "lr_spike", "dead_relu", "explode", "wd_ramp")
        for v in ("none", "default")
    )
    healthy = {r["variant"]: r for r in rows if r["fault"] == "healthy"}
    assert healthy["default"]["interventions"] == []  # no rollback on the healthy run
    assert healthy["default"]["loss_hash"] == healthy["none"]["loss_hash"]
    table = (tmp_path / "table.md").read_text()
    assert table.count("| default | ") == 6  # 5 faults + the abrupt total


def test_eval_guard_transformer_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eval_guard.py"), "--model", "transformer",
         "--smoke", "--rule", "cusum", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "rows.jsonl").read_text().splitlines()]
    # healthy and lr_spike x {no guard, Guard()}, one seed, 60 steps
    assert sorted((r["fault"], r["variant"], r["steps"]) for r in rows) == sorted(
        (f, v, 60) for f in ("healthy", "lr_spike") for v in ("none", "default")
    )
    healthy = {r["variant"]: r for r in rows if r["fault"] == "healthy"}
    assert healthy["default"]["interventions"] == []
    assert healthy["default"]["loss_hash"] == healthy["none"]["loss_hash"]
    assert all(0.0 < r["test_loss"] < 10.0 for r in rows)  # a held-out loss, not the 1e9 marker
    # --rule reaches the LayerMonitor; every step's loss and state are kept for analysis
    assert {(r["rule"], r["layer_rule"]) for r in rows} == {("cusum", "cusum")}
    assert all(len(r["trace_loss"]) == len(r["trace_state"]) == 60 for r in rows)
    table = (tmp_path / "table.md").read_text()
    assert table.count("| default | ") == 2 and table.count("| none | ") == 2
