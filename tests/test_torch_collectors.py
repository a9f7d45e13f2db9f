"""Collectors against independent per-parameter / per-module references."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)  # tiny layers on a shared 2-core machine: one thread is fastest
from torch import nn  # noqa: E402

from streamtopo.errors import InputError, InputTypeError  # noqa: E402
from streamtopo.integrations.torch import (  # noqa: E402
    ActivationNormCollector,
    AttentionEntropyCollector,
    AttentionTap,
    FeatureCollector,
    GradNormCollector,
    collect,
    layer_groups,
)


def mlp(depth=5, width=16, seed=0):
    torch.manual_seed(seed)
    layers = [nn.Linear(8, width), nn.ReLU()]
    for _ in range(depth - 2):
        layers += [nn.Linear(width, width), nn.ReLU()]
    layers.append(nn.Linear(width, 3))
    return nn.Sequential(*layers)


class TiedLM(nn.Module):
    """Embedding tied to the head, a direct parameter on the root, and a block list."""

    def __init__(self, vocab=11, d=8, n_blocks=3):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(5, d))
        self.blocks = nn.ModuleList(
            [nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d)) for _ in range(n_blocks)]
        )
        self.unused = nn.Linear(d, d)  # never called: grad stays None
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, idx):
        h = self.emb(idx) + self.pos[: idx.shape[1]]
        for b in self.blocks:
            h = h + b(h)
        return self.head(h)


def reference_grad_norms(groups):
    """Per-parameter ``.grad.norm()`` in float64, summed in quadrature per group."""
    out = []
    for g in groups:
        sq = 0.0
        seen = False
        for p in g.module.parameters(recurse=g.recurse):
            if p.grad is not None:
                seen = True
                sq += float(p.grad.double().norm()) ** 2
        out.append(math.sqrt(sq) if seen else math.nan)
    return np.array(out)


def test_auto_groups_on_common_shapes():
    assert [g.name for g in layer_groups(mlp(4))] == ["0", "2", "4", "6"]
    names = [g.name for g in layer_groups(TiedLM())]
    assert names == ["root", "emb", "blocks.0", "blocks.1", "blocks.2", "unused", "head"]

    class Wrapper(nn.Module):  # a single child is opened until there are layers
        def __init__(self):
            super().__init__()
            self.net = mlp(3)

    assert [g.name for g in layer_groups(Wrapper())] == ["net.0", "net.2", "net.4"]

    # a TransformerEncoder inside a Sequential is a stack: its layers become the groups
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2, enable_nested_tensor=False
    )
    names = [g.name for g in layer_groups(nn.Sequential(nn.Linear(4, 8), enc, nn.Linear(8, 2)))]
    assert names == ["0", "1.layers.0", "1.layers.1", "2"]

    class HeadsBlock(nn.Module):  # attention heads in a ModuleList, most parameters in the MLP
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList(nn.Linear(8, 2) for _ in range(4))
            self.mlp = nn.Sequential(nn.Linear(8, 32), nn.Linear(32, 8))

    stack = nn.Sequential(HeadsBlock(), HeadsBlock())
    assert [g.name for g in layer_groups(stack)] == ["0", "1"]


def test_groups_by_regex_and_names():
    model = TiedLM()
    assert [g.name for g in layer_groups(model, r"blocks\.\d+")] == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
    ]
    # outermost only: the blocks' inner Linear layers are not separate groups
    assert [g.name for g in layer_groups(model, r"blocks\.\d+(\.\d+)?")] == [
        "blocks.0",
        "blocks.1",
        "blocks.2",
    ]
    assert [g.name for g in layer_groups(model, ["head", "emb"])] == ["head", "emb"]


@pytest.mark.parametrize(
    "groups, exc, words",
    [
        (r"nothing\d", InputError, "matches no module"),
        ("(", InputError, "not a valid regular expression"),
        (["emb", "nope"], InputError, "'nope'"),
        (["emb", "emb"], InputError, "duplicate"),
        (3, InputTypeError, "got 3"),
    ],
)
def test_bad_groups(groups, exc, words):
    with pytest.raises(exc, match=words):
        layer_groups(TiedLM(), groups)


def test_bad_model_and_frozen_group():
    with pytest.raises(InputTypeError, match=r"torch\.nn\.Module"):
        GradNormCollector("model")
    model = mlp(3)
    for p in model[0].parameters():
        p.requires_grad_(False)
    with pytest.raises(InputError, match="'0' has no parameter that requires grad"):
        GradNormCollector(model)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_grad_norms_match_per_parameter_reference(seed):
    model = TiedLM()
    torch.manual_seed(seed)
    idx = torch.randint(0, 11, (4, 5))
    scale = 10.0 ** (seed * 3 - 3)  # 1e-3, 1, 1e3: tiny and huge gradients
    (model(idx).square().mean() * scale).backward()
    coll = GradNormCollector(model)
    got = coll.compute()
    ref = reference_grad_norms(layer_groups(model))
    assert got.dtype == np.float32 and got.shape == (7,)
    assert np.isnan(got[5]) and np.isnan(ref[5])  # `unused` has no grad at all
    keep = ~np.isnan(ref)
    np.testing.assert_allclose(got[keep], ref[keep], rtol=1e-5)
    # tied weight counts in both emb and head
    assert got[1] == got[6]
    assert coll.host_copies == 1


def test_grad_norms_bf16_params_and_nonfinite():
    model = mlp(3).to(torch.bfloat16)
    model(torch.randn(6, 8, dtype=torch.bfloat16)).float().square().mean().backward()
    coll = GradNormCollector(model)
    ref = reference_grad_norms(layer_groups(model))
    np.testing.assert_allclose(coll.compute(), ref, rtol=1e-5)
    model[2].weight.grad[0, 0] = float("inf")
    got = coll.compute()
    assert np.isinf(got[1]) and np.isfinite(got[[0, 2]]).all()


def test_grad_scaler_unscale_path():
    model = mlp(4, seed=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    x = torch.randn(16, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x).float().square().mean()
    scaler.scale(loss).backward()
    coll = GradNormCollector(model)
    scaled = coll.compute()
    scaler.unscale_(opt)
    unscaled = coll.compute()
    ref = reference_grad_norms(layer_groups(model))
    np.testing.assert_allclose(unscaled, ref, rtol=1e-5)
    np.testing.assert_allclose(scaled / 2.0**10, unscaled, rtol=1e-5)
    scaler.step(opt)
    scaler.update()


def test_activation_rms_matches_reference_and_pools_forwards():
    model = mlp(4, seed=1)
    groups = layer_groups(model)
    outs: list[list[torch.Tensor]] = [[] for _ in groups]
    handles = [
        g.module.register_forward_hook(lambda m, a, o, k=k: outs[k].append(o.detach().double()))
        for k, g in enumerate(groups)
    ]
    acts = ActivationNormCollector(model)
    model(torch.randn(5, 8))
    model(torch.randn(7, 8) * 100)  # two forwards of different size: pooled over elements
    with torch.no_grad():
        model.eval()
        model(torch.randn(3, 8) * 1e6)  # eval forwards are ignored by default
        model.train()
    got = acts.compute()
    for h in handles:
        h.remove()
    ref = [
        math.sqrt(
            sum(float(o[:].square().sum()) for o in outs[k][:2])
            / sum(o.numel() for o in outs[k][:2])
        )
        for k in range(len(groups))
    ]
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    # sums reset after collection; a layer that did not run is NaN
    assert np.isnan(acts.compute()).all()
    acts.close()


def test_close_removes_every_hook_and_outputs_unchanged():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True),
        num_layers=2,
        enable_nested_tensor=False,
    )
    model = nn.Sequential(nn.Linear(4, 8), enc, nn.Linear(8, 3))
    x = torch.randn(2, 6, 4)
    before = model(x)
    before.sum().backward()
    g_before = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    collectors = [
        ActivationNormCollector(model),
        AttentionEntropyCollector(model),
        FeatureCollector(model),
        GradNormCollector(model),
    ]
    assert any(m._forward_hooks for m in model.modules())
    after = model(x)
    after.sum().backward()
    assert torch.equal(before, after)
    assert all(torch.equal(a, p.grad) for a, p in zip(g_before, model.parameters(), strict=True))
    for c in collectors:
        c.close()
        c.close()  # idempotent
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def entropy_ref(p: torch.Tensor) -> float:
    p = p.detach().double()
    h = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(-1)
    return float(h.mean())


@pytest.mark.parametrize("average", [True, False])
def test_attention_entropy_of_multihead_attention(average):
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    model = nn.ModuleDict({"a": mha})
    ent = AttentionEntropyCollector(model)
    x = torch.randn(3, 5, 8)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, -2:] = True  # padded keys: probability exactly 0, counted as absent
    _, w = mha(x, x, x, need_weights=True, average_attn_weights=average, key_padding_mask=mask)
    assert ent.layer_names == ("a",)
    assert ent.compute()[0] == pytest.approx(entropy_ref(w), rel=1e-5)
    assert ent.compute()[0] != ent.compute()[0]  # nothing since: NaN


def test_attention_entropy_forced_weights_inside_encoder():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
    x = torch.randn(2, 4, 8)
    plain = model(x)
    ent = AttentionEntropyCollector(model, force_weights=True)
    forced = model(x)
    torch.testing.assert_close(forced, plain, rtol=1e-5, atol=1e-6)
    values = ent.compute()
    # reference: rerun each attention module with explicit per-head weights
    h, ref = x, []
    for blk in model.layers:
        _, w = blk.self_attn(h, h, h, need_weights=True, average_attn_weights=False)
        ref.append(entropy_ref(w))
        h = blk(h)
    np.testing.assert_allclose(values, ref, rtol=1e-5)
    assert 0 < values.min() and values.max() <= math.log(4) + 1e-6
    ent.close()
    # without forcing, the encoder asks for no weights: the probabilities are recomputed from
    # the attention inputs on the first batch element (every head, all 4 queries here)
    ent2 = AttentionEntropyCollector(model)
    model(x)
    sampled = ent2.compute()
    ent2.close()
    h, ref0 = x, []
    for blk in model.layers:
        _, w = blk.self_attn(h, h, h, need_weights=True, average_attn_weights=False)
        ref0.append(entropy_ref(w[0]))
        h = blk(h)
    np.testing.assert_allclose(sampled, ref0, rtol=1e-5)
    assert not ent2.missing_.any()


def test_attention_tap_custom_block_and_no_attention_error():
    class Block(nn.Module):
        def __init__(self, temp):
            super().__init__()
            self.temp = temp
            self.tap = AttentionTap()

        def forward(self, s):
            return self.tap((s / self.temp).softmax(-1))

    torch.manual_seed(0)
    model = nn.Sequential(Block(0.1), Block(10.0))
    ent = AttentionEntropyCollector(model)
    s = torch.randn(2, 3, 6, 6)
    p0 = (s / 0.1).softmax(-1)
    p1 = (p0 / 10.0).softmax(-1)  # the second block sees the first one's output
    model(s)
    np.testing.assert_allclose(ent.compute(), [entropy_ref(p0), entropy_ref(p1)], rtol=1e-5)
    with pytest.raises(InputError, match="AttentionTap"):
        AttentionEntropyCollector(mlp(3))


def test_feature_collector_penultimate_and_named_layer():
    model = mlp(3, seed=2)
    x = torch.randn(9, 8)
    feats = FeatureCollector(model)
    model(x)
    ref = model[:4](x)  # everything before the last Linear
    np.testing.assert_allclose(feats.take(), ref.detach().numpy(), rtol=1e-6)
    named = FeatureCollector(model, layer="2")
    model(x)
    np.testing.assert_allclose(named.take(), model[:3](x).detach().numpy(), rtol=1e-6)
    with pytest.raises(InputError, match="'zz'"):
        FeatureCollector(model, layer="zz")
    fresh = FeatureCollector(mlp(3))
    with pytest.raises(InputError, match="no features captured"):
        fresh.take()


def test_collect_packs_everything_into_one_copy():
    model = mlp(4)
    acts, grads = ActivationNormCollector(model), GradNormCollector(model)
    losses = torch.tensor([1.0, 2.0, 3.0])
    model(torch.randn(4, 8)).sum().backward()
    a, g, extra = collect([acts, grads], extra=losses)
    assert a.shape == g.shape == (4,)
    np.testing.assert_array_equal(extra, [1.0, 2.0, 3.0])
    assert acts.host_copies == grads.host_copies == 1


def test_disabled_collectors_record_nothing_and_leave_no_hooks():
    model = mlp(3)
    acts = ActivationNormCollector(model)
    acts.enabled = False
    assert not any(m._forward_hooks for m in model.modules())  # torch's fast call path
    model(torch.randn(2, 8))
    assert np.isnan(acts.compute()).all()
    acts.enabled = True
    model(torch.randn(2, 8))
    assert np.isfinite(acts.compute()).all()
    acts.close()
    acts.enabled = True  # a closed collector stays closed
    assert not any(m._forward_hooks for m in model.modules())
