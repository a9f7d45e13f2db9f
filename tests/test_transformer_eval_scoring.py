"""The calibrated transformer evaluation: scoring semantics and the entry point (synthetic runs)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from benchmarks import eval_detection
from benchmarks.evaluation import transformer as tx
from benchmarks.evaluation import transformer_eval as te


def _record(fault: str, seed: int = 0, steps: int = tx.EVAL_STEPS, jump_at: int | None = None):
    """A synthetic record: log-normal per-block signals, a falling loss, a x50 jump if asked."""
    cfg = tx.make_config(fault, seed, steps)
    rng = np.random.default_rng(seed)
    L = cfg.depth
    sig = {k: np.exp(rng.normal(0, 0.02, (steps, L)) + rng.normal(0, 1, L)) for k in tx.PER_STEP}
    loss = 2.0 + np.exp(-np.arange(steps) / 100.0) + rng.normal(0, 0.01, steps)
    if jump_at is not None:
        sig["grad_norm"][jump_at:, 1] *= 50.0
        loss[jump_at + 20 :] += 2.0
    ev = np.arange(cfg.eval_every - 1, steps, cfg.eval_every)
    return tx.TransformerRecord(
        cfg, **sig, out_logit_max=np.ones(steps), out_logit_mean=np.zeros(steps), loss=loss,
        eval_steps=ev, test_loss=loss[ev],
    )  # fmt: skip


def test_score_counts_false_alarms_leads_and_masked_failures():
    rec = _record("lr_spike")  # t0 = 280 (40% of 700)
    assert te.healthy_end(rec) == 280
    a = np.zeros(700, dtype=bool)
    a[100:110] = True  # one false-alarm episode, 10 healthy steps in alarm
    a[300:320] = True  # detection 20 steps after t0
    s = te.score(a, rec, onset=310)
    assert (s["fa"], s["in_alarm"], s["first"], s["lead"], s["masked"]) == (1, 10, 300, 10, False)
    b = np.zeros(700, dtype=bool)
    b[270:400] = True  # running at t0 and no new episode after it: masked, not detected
    s = te.score(b, rec, onset=310)
    assert (s["fa"], s["first"], s["lead"], s["masked"]) == (1, None, None, True)
    growth = _record("attn_logit_growth")  # no t0: healthy until the LR ramp starts (30%)
    assert te.healthy_end(growth) == 210
    assert te.healthy_end(_record("healthy")) == 700


def test_poisson_upper_bound_matches_the_exact_values():
    assert te.poisson_upper(0) == pytest.approx(2.9957, abs=1e-3)
    assert te.poisson_upper(3) == pytest.approx(7.7537, abs=1e-3)


def test_library_detectors_replay_the_records_and_catch_a_jump():
    dets = te.detectors()
    for name in ("loss_rise", "grad_norm_z", "attn_logit_thr (>100)", "attn_entropy_thr (<0.1)"):
        assert name in dets
    for rule in te.RULES:
        assert f"{rule} [act+grad] or [logit+ent] or loss" in dets
        assert f"{rule} [act+grad+upd+logit+ent] topology only" in dets
    healthy, faulty = _record("healthy", 1), _record("lr_spike", 1, jump_at=300)
    res = te.evaluate([healthy, faulty], {k: dets[k] for k in ("cusum [grad]", "streak [grad]")})
    for name, rows in res.items():
        (_, o_h, s_h), (_, _, s_f) = rows
        assert o_h is None and s_h["fa"] == 0, name
        assert s_f["first"] is not None and 300 <= s_f["first"] <= 330, (name, s_f)
        m = te.summarise(rows)
        assert m["scenarios"]["lr_spike"]["detected"] == 1 and m["healthy_steps"] == 700 + 280


def test_eval_detection_transformer_subcommand_writes_the_table(tmp_path, capsys):
    for fault, jump in (("healthy", None), ("lr_spike", 300)):
        tx.save(_record(fault, 0, jump_at=jump), tx.record_path(tmp_path, fault, 0, tx.EVAL_STEPS))
    argv = ["transformer", "calib", "--cache", str(tmp_path), "--out", str(tmp_path)]
    assert eval_detection.main([*argv, "--only", r"^loss_rise$|cusum \[grad\]$"]) == 0
    text = (tmp_path / "calib-table.md").read_text()
    assert "| loss_rise |" in text and "| cusum [grad] |" in text and "lr_spike" in text
    assert "2 runs (1 healthy)" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # no records of that plan there
        eval_detection.main(["transformer", "fresh", "--cache", str(tmp_path / "none")])


def test_plans_are_disjoint_and_interleaved():
    calib = set(tx.plan_jobs("calib"))
    fresh = tx.plan_jobs("fresh")
    assert not calib & set(fresh)
    assert fresh[0][0] == "healthy" and fresh[1][0] == "attn_logit_growth"
    assert {f for f, _ in fresh} == set(tx.EVALUATED)
