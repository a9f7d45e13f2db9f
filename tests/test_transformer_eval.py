"""The transformer evaluation runs end to end on a tiny run, and its records round-trip."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks.evaluation import transformer as tx
from benchmarks.evaluation import transformer_detectors as tdet


def test_tiny_run_records_every_signal_and_round_trips(tmp_path):
    cfg = tx.make_config("early_random_tokens", 0, steps=60)
    assert cfg.t0 == 30  # early faults start at step >= 30
    cfg.width, cfg.depth, cfg.batch, cfg.eval_every = 64, 3, 8, 20
    rec = tx.run(cfg)
    T, L = 60, 3
    for name in tx.PER_STEP:
        arr = getattr(rec, name)
        assert arr.shape == (T, L) and np.isfinite(arr).all(), name
    assert rec.loss.shape == rec.out_logit_max.shape == rec.out_logit_mean.shape == (T,)
    assert rec.eval_steps.tolist() == [19, 39, 59]
    assert (rec.attn_entropy > 0).all() and (rec.attn_entropy <= np.log(64) + 1e-6).all()
    assert (rec.update_ratio > 0).all()
    # random tokens from step 30: the loss jumps towards log(128), the onset is right there
    assert rec.loss[35:].mean() > rec.loss[20:30].mean() + 0.5
    onset = tx.failure_onset(rec)
    assert onset is not None and 30 <= onset <= 40
    path = tmp_path / "r.npz"
    tx.save(rec, path)
    back = tx.load(path)
    assert back.config == rec.config
    for name in (*tx.PER_STEP, "loss", "test_loss", "eval_steps"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name))
    rows = tdet.score_records([back])
    assert {r["detector"] for r in rows} == set(tdet.BASELINES)
    assert "early_random_tokens" in tdet.table(rows)


def test_threshold_baselines_on_synthetic_records():
    cfg = tx.make_config("attn_logit_growth", 0, steps=20)
    z = np.zeros((20, 2))
    logit = np.full((20, 2), 10.0)
    logit[8:, 1] = 150.0
    logit[15, 0] = np.nan  # non-finite counts as above the threshold
    ent = np.full((20, 2), 1.5)
    ent[12:, 0] = 0.05
    rec = tx.TransformerRecord(
        cfg, z, z, ent, logit, z, np.zeros(20), np.zeros(20), np.ones(20), np.arange(20), z[:, 0]
    )
    assert np.flatnonzero(tdet.attn_logit_thr(rec))[0] == 12  # 5th consecutive step above
    assert np.flatnonzero(tdet.attn_entropy_thr(rec))[0] == 16
