"""TrainingMonitor wiring: a step() that raises changes nothing; absent gradients are not NaN."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402

from streamtopo.errors import InputError, StreamtopoError  # noqa: E402
from streamtopo.integrations.training import TrainingMonitor  # noqa: E402


def make(seed=0, depth=4):
    torch.manual_seed(seed)
    layers = []
    for _ in range(depth - 1):
        layers += [nn.Linear(16, 16), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(16, 4))
    return model, torch.optim.SGD(model.parameters(), lr=0.05)


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)


def fit_step(model, opt, seed):
    x, y = batch(seed)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss, y


def snapshot(tm):
    return (
        tm.step_,
        tm._monitored,
        len(tm._losses),
        tm.host_copies_,
        tm.state_dict(),
    )


def deep_equal(a, b) -> bool:
    """Equality of nested containers of arrays/floats where NaN equals NaN."""
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and deep_equal(dataclasses.astuple(a), dataclasses.astuple(b))
    if isinstance(a, (np.ndarray, np.generic, float)):
        return np.array_equal(
            np.asarray(a), np.asarray(b), equal_nan=np.asarray(a).dtype.kind == "f"
        )
    return a == b


def same_state(a, b):
    return a[:4] == b[:4] and deep_equal(a[4], b[4])


# ------------------------------------------------------------------ item 1: raising changes nothing
@pytest.mark.parametrize("every", [1, 2])
def test_a_step_that_raises_changes_nothing(every):
    """Issue 16 item 2: a rejected call neither advances the schedule nor buffers its loss."""
    from streamtopo.monitors.collapse import CollapseMonitor

    model, opt = make()
    ref_model, ref_opt = make()
    tm = TrainingMonitor(model, every=every, collapse=CollapseMonitor(check_every=1))
    ref = TrainingMonitor(ref_model, every=every, collapse=CollapseMonitor(check_every=1))
    for t in range(6):
        loss, y = fit_step(model, opt, t)
        before = snapshot(tm)
        if t % every == 0:
            with pytest.raises(StreamtopoError, match="labels"):
                tm.step(loss * 1e6, labels=y[:3])  # wrong number of labels: rejected
            assert same_state(snapshot(tm), before)
        with pytest.raises(StreamtopoError, match="loss"):
            tm.step(torch.ones(2), labels=y)
        assert same_state(snapshot(tm), before)
        status = tm.step(loss, labels=y)
        opt.zero_grad()
        ref_loss, ref_y = fit_step(ref_model, ref_opt, t)
        ref_status = ref.step(ref_loss, labels=ref_y)
        ref_opt.zero_grad()
        assert deep_equal(status, ref_status)  # the rejected calls left no trace
    # a training step that does not increase: refused before anything moves
    before = snapshot(tm)
    for bad, match in (
        (5, "step must be an int in \\[6, 2\\*\\*62\\) .*the last step was 5"),
        (2**62, "2\\*\\*62"),
        (True, "step must be an int"),
        (6.0, "got 6.0"),
    ):
        with pytest.raises(StreamtopoError, match=match):
            tm.step(torch.tensor(5.0), step=bad)
        assert same_state(snapshot(tm), before)
    tm.close()
    ref.close()


# ------------------------------------------------------------------ item 2: absent is not NaN
def test_layer_monitor_absent_values_are_never_a_collapse():
    from streamtopo.monitors.layer import LayerMonitor

    rng = np.random.default_rng(0)
    names = [f"l{i}" for i in range(5)]
    mon = LayerMonitor(5, ("grad_norm", "act_norm"), layer_names=names, patience=2)
    for t in range(40):
        v = rng.lognormal(size=(2, 5))
        missing = np.zeros((2, 5), bool)
        if 10 <= t < 30:
            missing[0, 2] = True  # l2 frozen: no gradient, activations still measured
            v[0, 2] = np.nan
        st = mon.check(v, missing=missing)
        assert st.state.value != "COLLAPSE" and not mon.should_stop
        if 10 <= t < 30:
            assert st.absent == ("l2",) and st.nonfinite == ()
            assert st.reason.startswith("layers [l2] absent (no value this step)")
            assert math.isnan(st.z)  # left out of the rules
    # a real NaN (not flagged missing) still collapses
    v = rng.lognormal(size=(2, 5))
    v[1, 4] = np.nan
    st = mon.check(v, missing=np.zeros(5, bool))
    assert st.state.value == "COLLAPSE" and st.nonfinite == (4,) and st.absent == ()


def test_absent_values_with_nonfinite_raise_do_not_raise():
    from streamtopo.monitors.layer import LayerMonitor

    mon = LayerMonitor(3, nonfinite="raise")
    st = mon.check([1.0, np.nan, 2.0], missing=[False, True, False])
    assert st.absent == ("1",)
    with pytest.raises(InputError, match="NaN/inf"):
        mon.check([1.0, np.nan, 2.0], missing=[True, False, False])
    assert mon.step == 1


@pytest.mark.parametrize(
    "missing, words",
    [
        (np.zeros(4, bool), "shape"),
        (np.zeros(3, int), "bool"),
        ("abc", "bool"),
    ],
)
def test_bad_missing_is_rejected_and_changes_nothing(missing, words):
    from streamtopo.monitors.layer import LayerMonitor

    mon = LayerMonitor(3)
    mon.check([1.0, 2.0, 3.0])
    before = mon.state_dict()
    with pytest.raises(StreamtopoError, match=words):
        mon.check([1.0, 2.0, 3.0], missing=missing)
    assert deep_equal(mon.state_dict(), before)


def test_replay_of_absent_values_is_bit_identical(tmp_path):
    from streamtopo.io import RunWriter, read_run, replay
    from streamtopo.monitors.layer import LayerMonitor

    rng = np.random.default_rng(1)
    signals = ("grad_norm", "act_norm")
    writer = RunWriter(tmp_path, run_id="absent", flush_rows=16, roll_rows=64)
    mon = LayerMonitor(6, signals, writer=writer, baseline=20, raise_after=3)
    live, masks = [], []
    for t in range(150):
        v = rng.lognormal(size=(2, 6)).astype(np.float32)
        m = np.zeros((2, 6), bool)
        if 40 <= t < 80:
            m[0, 1] = True
            v[0, 1] = 7.0  # ignored: the value is missing
        if t == 100:
            v[1, 3] = np.nan  # a real NaN
        masks.append(m)
        live.append(mon.check(v, missing=m))
    writer.close()
    assert sum(s.state.value == "COLLAPSE" for s in live) == 1
    rec = read_run(writer.run_dir).collect()
    col = rec["grad_norm/1"]
    assert col.is_null().to_list() == [40 <= t < 80 for t in range(150)]  # logged as null
    assert rec["act_norm/3"].is_nan().to_list()[100] and rec["act_norm/3"].null_count() == 0
    out = replay(writer.run_dir)
    h0 = np.asarray([s.h0 for s in live])
    assert np.array_equal(np.asarray(out["h0"]).view(np.int64), h0.view(np.int64))
    assert out["state"].to_list() == [str(s.state) for s in live]
    assert out["reason"].to_list() == [s.reason for s in live]


def _warm(model, opt, tm, n=5):
    for t in range(n):
        loss, y = fit_step(model, opt, 100 + t)
        assert tm.step(loss, labels=y).state.value == "HEALTHY"
        opt.zero_grad()


def _frozen(model, opt, seed):
    model[0].requires_grad_(False)
    loss, _ = fit_step(model, opt, seed)
    return loss


def _grad_none(model, opt, seed):
    x, y = batch(seed)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for p in model[0].parameters():
        p.grad = None
    opt.step()
    return loss


def _no_grad(model, opt, seed):
    x, y = batch(seed)
    with torch.no_grad():
        return nn.functional.cross_entropy(model(x), y)


def _no_backward(model, opt, seed):
    x, y = batch(seed)
    return nn.functional.cross_entropy(model(x), y)


@pytest.mark.parametrize(
    "case, absent",
    [
        (_frozen, ("0",)),
        (_grad_none, ("0",)),
        (_no_grad, ("0", "2", "4", "6")),
        (_no_backward, ("0", "2", "4", "6")),
    ],
)
def test_a_missing_gradient_is_absent_not_a_collapse(case, absent):
    """Issue 16 item 1: frozen layer, grad=None, no_grad forward, forward without backward."""
    model, opt = make()
    tm = TrainingMonitor(model)
    _warm(model, opt, tm)
    for t in range(8):
        loss = case(model, opt, t)
        status = tm.step(loss)
        opt.zero_grad()
        assert status.state.value != "COLLAPSE", status.reason
        assert status.layer.absent == absent and status.layer.nonfinite == ()
        assert f"layers [{', '.join(absent)}] absent (no value this step)" in status.reason
        assert not tm.should_stop
    tm.close()


def test_a_real_nan_gradient_still_collapses():
    model, opt = make()
    tm = TrainingMonitor(model)
    _warm(model, opt, tm)
    x, y = batch(7)
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    with torch.no_grad():
        model[2].weight.grad[0, 0] = float("nan")
    status = tm.step(loss)
    assert status.state.value == "COLLAPSE" and status.layer.nonfinite == (1,)
    assert status.layer.absent == ()
    tm.close()


# ------------------------------------------------------------------ item 3: transformer signals
ALL_SIGNALS = ("act_norm", "grad_norm", "update_ratio", "attn_entropy", "attn_logit", "out_logit")
VOCAB = 40


class TinyEncoderLM(nn.Module):
    """Stock nn.TransformerEncoder (its layers call attention with need_weights=False)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, VOCAB)

    def forward(self, ids):
        return self.head(self.encoder(self.emb(ids)))


def tiny_gpt2():
    import transformers

    cfg = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=2, n_head=4, attn_pdrop=0.0,
        resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(cfg)


def token_batch(t):
    g = torch.Generator().manual_seed(t)
    start = torch.randint(0, VOCAB, (8, 1), generator=g)
    return (start + torch.arange(17)) % VOCAB  # learnable: next token = this + 1


def run_lm(kind, steps, tmp_path, signals=ALL_SIGNALS):
    from streamtopo.io import read_run

    torch.manual_seed(0)
    model = TinyEncoderLM() if kind == "encoder" else tiny_gpt2()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    tm = TrainingMonitor(model, log_dir=tmp_path, signals=signals, optimizer=opt)
    statuses, values = [], []
    for t in range(steps):
        ids = token_batch(t)
        if kind == "encoder":
            logits = model(ids[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        else:
            loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        statuses.append(tm.step(loss))
        values.append({k: v.copy() for k, v in tm.values_.items()})
        opt.zero_grad()
    tm.close()
    return tm, statuses, values, read_run(tm.run_dir_, table="out_logit").collect()


@pytest.mark.parametrize("kind", ["encoder", "gpt2"])
def test_transformer_signals_on_a_healthy_run(kind, tmp_path):
    """Issue 18: no false alarm at step 0 (the old bug), values finite, one host copy a step."""
    steps = 30
    tm, statuses, values, out_logit = run_lm(kind, steps, tmp_path)
    assert tm.host_copies_ == steps
    assert all(s.state.value == "HEALTHY" and not s.alarm for s in statuses), [
        s.reason for s in statuses if s.alarm
    ]
    assert statuses[0].layer.calibrating and statuses[0].attention.calibrating
    assert not tm.should_stop
    for v in values:
        assert set(v) == set(ALL_SIGNALS)
        assert all(np.isfinite(x).all() for x in v.values())
    assert statuses[-1].attention.absent == () and statuses[-1].layer.absent == ()
    assert tm.attention_monitor.signals == ("attn_entropy", "attn_logit")
    assert tm.attention_monitor.escalate_after == 10**6
    # the streak rule's early change detector: CUSUM after 100 values (layers), 200 (attention)
    assert tm.attention_monitor.early_rule == "cusum" == tm.layer_monitor.early_rule
    # after the warm-up: the layer monitor keeps its change detector, the attention monitor
    # has the streak rule alone (slow attention-logit growth; CHANGEPOINT.md "Kept detector")
    assert tm.layer_monitor.keep_detector and tm.layer_monitor.raise_after == 20
    assert not tm.attention_monitor.keep_detector and tm.attention_monitor.raise_after == 8
    assert tm.attention_monitor.min_history == 200 and tm.layer_monitor.min_history == 100
    assert tm.layer_monitor.signals == ("act_norm", "grad_norm", "update_ratio")
    assert out_logit["step"].to_list() == list(range(steps))
    assert np.isfinite(out_logit["max_abs"].to_numpy()).all()
    assert "out_logit" not in tm.monitors  # logged, not alarmed on


def test_signals_that_cannot_be_collected_fail_at_construction():
    model, _ = make()
    with pytest.raises(InputError, match="optimizer"):
        TrainingMonitor(model, signals=("grad_norm", "update_ratio"))
    for sig in ("attn_entropy", "attn_logit"):
        with pytest.raises(InputError, match="attention module"):
            TrainingMonitor(model, signals=("grad_norm", sig))
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


# ------------------------------------------------------------------ item 4: the guard
def digits_run(
    spike, guard, log_dir=None, steps=600, t0=300, window=50, seed=0, every=1, step_of=None
):
    """An Adam MLP on the bundled digits; LR x100 (1e-3 -> 0.1) for steps t0..t0+window;
    ``step_of(t)`` is the training step given to ``tm.step`` (default: none given)."""
    from streamtopo.data import load_digits

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    X, y = load_digits()
    perm = rng.permutation(len(y))
    X, y = X[perm], y[perm]
    X = (X - X[:1300].mean(0)) / (X[:1300].std(0) + 1e-3)
    xt, yt = torch.tensor(X[:1300], dtype=torch.float32), torch.tensor(y[:1300])
    xe, ye = torch.tensor(X[1300:], dtype=torch.float32), torch.tensor(y[1300:])
    model = nn.Sequential(
        nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )  # fmt: skip
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tm = TrainingMonitor(model, log_dir=log_dir, optimizer=opt, guard=guard, every=every)
    losses, statuses = [], []
    for t in range(steps):
        for g in opt.param_groups:
            g["lr"] = 0.1 if spike and t0 <= t < t0 + window else 1e-3
        idx = torch.as_tensor(rng.integers(0, 1300, size=64))
        loss = nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        statuses.append(tm.step(loss, step=None if step_of is None else step_of(t)))
        losses.append(loss.detach())
        if tm.should_stop:
            break
    with torch.no_grad():
        out = model(xe)
        test_loss = float(nn.functional.cross_entropy(out, ye))
        test_acc = float((out.argmax(1) == ye).float().mean())
    tm.close()
    return test_loss, torch.stack(losses), statuses, tm, test_acc


def test_guard_saves_an_lr_spike_run(tmp_path, caplog):
    """Issue 19, seed 0: test loss (accuracy) healthy 0.063 (0.980), spiked 2.34 (0.165),
    spiked with ``Guard()`` 0.119 (0.964): saved by the evaluation's criterion (accuracy within
    2% of healthy). The previous default (act_on=WATCH, patience=10) gave 0.056 (0.978)."""
    import logging

    from streamtopo import Guard
    from streamtopo.io import read_run

    healthy, *_, healthy_acc = digits_run(False, None)
    spiked, *_, spiked_acc = digits_run(True, None)
    with caplog.at_level(logging.WARNING, logger="streamtopo"):
        saved, _, statuses, tm, saved_acc = digits_run(True, Guard(), log_dir=tmp_path)
    assert spiked > 10 * healthy and spiked_acc < 0.5 * healthy_acc  # the spike ruins the run
    assert saved_acc >= 0.98 * healthy_acc and saved < 0.1 * spiked  # the guard saves it
    recs = tm.interventions_
    assert [r.action for r in recs] == ["rollback"] and recs[0].restored_step < 300
    assert [s.intervention for s in statuses if s.intervention is not None] == recs
    assert [s.step for s in statuses] == list(range(600))  # the global step never goes back
    warned = [r for r in caplog.records if "streamtopo guard" in r.getMessage()]
    assert len(warned) == len(recs)
    assert tm.summary()["guard"]["rollbacks"] == 1 and not tm.should_stop
    for table in ("layer", "loss", "interventions"):
        steps = read_run(tm.run_dir_, table=table).collect()["step"].to_list()
        assert steps == sorted(set(steps)), table  # no step repeats after the rollback
    layer_rows = read_run(tm.run_dir_).collect().height
    assert layer_rows == 600


def test_guard_on_a_healthy_run_changes_nothing():
    from streamtopo import Guard

    plain, losses, _, _, _ = digits_run(False, None, steps=300)
    guarded, glosses, _, tm, _ = digits_run(False, Guard(), steps=300)
    assert tm.interventions_ == [] and guarded == plain
    assert torch.equal(losses.view(torch.int32), glosses.view(torch.int32))  # bit-identical


def test_guard_bad_wiring_registers_nothing():
    from streamtopo import Guard

    model, _ = make()
    with pytest.raises(StreamtopoError, match="guard"):
        TrainingMonitor(model, guard="yes")
    with pytest.raises(StreamtopoError, match="optimizer"):
        TrainingMonitor(model, guard=Guard())
    assert all(not m._forward_hooks for m in model.modules())


@pytest.mark.parametrize("rule", ["streak", "peak", "cusum"])
def test_absent_layers_under_every_rule(rule):
    from streamtopo.monitors.layer import LayerMonitor

    rng = np.random.default_rng(2)
    mon = LayerMonitor(4, rule=rule, layer_names=["a", "b", "c", "d"], patience=1)
    for t in range(60):
        v = rng.lognormal(size=4)
        st = mon.check(v, missing=np.array([False, t >= 30, False, False]))
        assert st.state.value != "COLLAPSE" and not mon.should_stop
        if t >= 30:
            assert st.absent == ("b",) and "layers [b] absent (no value this step)" in st.reason


def test_a_held_attention_drift_stays_watch_and_does_not_stop_the_run():
    """Issue 18: one block's entropy sharpens and stays there (as in healthy transformer runs);
    without absorption the layer monitor turns 50 steps of WATCH into COLLAPSE and the
    attention monitor's setting holds WATCH to the end; with the default absorption (issue 17)
    both absorb the held shift after 30 evaluations and end the alarm."""
    from streamtopo import LayerMonitor

    rng = np.random.default_rng(0)
    x = 2.5 + 0.1 * rng.normal(size=(600, 2, 4))
    x[300:, 0, 3] -= 0.5  # block 3's entropy drops by 0.5 nats and holds
    sigs = ("attn_entropy", "attn_logit")
    old = LayerMonitor(4, sigs, absorb_after=0, keep_detector=False)
    attention_old = LayerMonitor(4, sigs, escalate_after=10**6, absorb_after=0, keep_detector=False)
    d, a = old.run(x)["state"].to_list(), attention_old.run(x)["state"].to_list()
    assert "COLLAPSE" in d and old.should_stop  # the layer monitor escalates
    assert "WATCH" in a and "COLLAPSE" not in a and not attention_old.should_stop
    assert a[-1] == "WATCH"  # an alarm that never ends
    for mon in (LayerMonitor(4, sigs), LayerMonitor(4, sigs, escalate_after=10**6)):
        frame = mon.run(x)
        states, reasons = frame["state"].to_list(), frame["reason"].to_list()
        start = states.index("WATCH")
        assert 300 <= start < 320 and "COLLAPSE" not in states and not mon.should_stop
        end = states.index("HEALTHY", start)
        assert 29 <= end - start <= 40  # absorbed at the 30th evaluation holding one level
        assert end - start + 1 == 30
        assert reasons[end].startswith("shift absorbed (held 30 evaluations)")
        assert states[-1] == "HEALTHY"
