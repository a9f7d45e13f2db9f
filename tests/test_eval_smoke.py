"""The detection evaluation runs end to end on real training runs (smallest setting)."""

from __future__ import annotations

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
