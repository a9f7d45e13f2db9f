"""Transformer signals against naive recomputations: attention entropy and logits of torch and
Hugging Face attention, update ratios from parameter copies, output-logit statistics."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from streamtopo.errors import InputError  # noqa: E402
from streamtopo.integrations.torch import (  # noqa: E402
    AttentionEntropyCollector,
    AttentionLogitCollector,
    AttentionSampler,
    AttentionTap,
    OutputLogitCollector,
    UpdateRatioCollector,
    attention_sites,
    collect,
)
from tests import naive_attention as naive  # noqa: E402


def encoder(d=16, heads=4, layers=3, seed=0, norm_first=False):
    torch.manual_seed(seed)
    layer = nn.TransformerEncoderLayer(
        d, heads, 2 * d, dropout=0.0, batch_first=True, norm_first=norm_first
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def mha_scores(mha: nn.MultiheadAttention, xq, xk, qi, keep):
    """Eager MHA logits of batch element 0, written out from in_proj."""
    E, H = mha.embed_dim, mha.num_heads
    d = E // H
    w, b = mha.in_proj_weight.detach().double(), mha.in_proj_bias.detach().double()
    q = (xq[0].double() @ w[:E].T + b[:E])[qi].reshape(len(qi), H, d).transpose(0, 1)
    k = (xk[0].double() @ w[E : 2 * E].T + b[E : 2 * E]).reshape(-1, H, d).transpose(0, 1)
    return naive.scores(q, k, 1 / math.sqrt(d), keep)


def block_inputs(model, x, mask=None):
    """Inputs of every block's self-attention (post-LN encoder: the block input)."""
    ins, h = [], x
    with torch.no_grad():
        for blk in model.layers:
            ins.append(blk.norm1(h) if blk.norm_first else h)
            h = blk(h, src_mask=mask, is_causal=mask is not None)
    return ins


@pytest.mark.parametrize("max_queries", [32, 5])
@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_without_weights_matches_eager_math(max_queries, norm_first):
    model = encoder(norm_first=norm_first)
    T = 12
    x = torch.randn(3, T, 16)
    mask = nn.Transformer.generate_square_subsequent_mask(T)
    sampler = AttentionSampler(model, max_queries=max_queries)
    ent = AttentionEntropyCollector(model, sampler=sampler)
    lg = AttentionLogitCollector(model, sampler=sampler)
    model(x, mask=mask, is_causal=True)  # the layers call attention with need_weights=False
    e, m = collect([ent, lg])
    assert ent.layer_names == lg.layer_names == tuple(f"layers.{i}.self_attn" for i in range(3))
    qi = naive.query_index(T, max_queries)
    keep = torch.ones(T, T, dtype=torch.bool).tril()[qi]
    ref_e, ref_m = [], []
    for blk, xin in zip(model.layers, block_inputs(model, x, mask), strict=True):
        s = mha_scores(blk.self_attn, xin, xin, qi, keep)
        ref_e.append(naive.entropy(s))
        ref_m.append(naive.max_logit(s))
    assert np.isfinite(e).all()
    np.testing.assert_allclose(e, ref_e, rtol=1e-4)
    np.testing.assert_allclose(m, ref_m, rtol=1e-4)
    assert not ent.missing_.any() and not lg.missing_.any()


def test_decoder_layer_self_and_cross_attention_with_padding():
    torch.manual_seed(1)
    dec = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True)
    model = nn.TransformerDecoder(dec, 2)
    tgt, mem = torch.randn(2, 7, 16), torch.randn(2, 9, 16)
    pad = torch.zeros(2, 9, dtype=torch.bool)
    pad[0, -3:] = True  # the last 3 memory keys of element 0 are padding
    lg = AttentionLogitCollector(model)
    ent = AttentionEntropyCollector(model, sampler=lg.sampler)
    assert [s.kind for s in lg.sampler.sites] == ["mha"] * 4
    tgt_mask = nn.Transformer.generate_square_subsequent_mask(7)
    model(tgt, mem, tgt_mask=tgt_mask, tgt_is_causal=True, memory_key_padding_mask=pad)
    e, m = collect([ent, lg])
    qi = np.arange(7)
    causal = torch.ones(7, 7, dtype=torch.bool).tril()
    cross_keep = (~pad[0])[None].expand(7, 9)
    ref_e, ref_m, h = [], [], tgt
    with torch.no_grad():
        for blk in model.layers:
            s1 = mha_scores(blk.self_attn, h, h, qi, causal)
            h1 = blk.norm1(h + blk._sa_block(h, tgt_mask, None, True))
            s2 = mha_scores(blk.multihead_attn, h1, mem, qi, cross_keep)
            ref_e += [naive.entropy(s1), naive.entropy(s2)]
            ref_m += [naive.max_logit(s1), naive.max_logit(s2)]
            h = blk(h, mem, tgt_mask=tgt_mask, tgt_is_causal=True, memory_key_padding_mask=pad)
    np.testing.assert_allclose(e, ref_e, rtol=1e-4)
    np.testing.assert_allclose(m, ref_m, rtol=1e-4)


def test_scaling_one_blocks_queries_raises_its_logit_only():
    model = encoder(layers=4, seed=3)
    x = torch.randn(4, 10, 16)
    lg = AttentionLogitCollector(model)
    model(x)
    before = lg.compute()
    with torch.no_grad():
        attn = model.layers[2].self_attn
        attn.in_proj_weight[:16].mul_(10.0)
        attn.in_proj_bias[:16].mul_(10.0)
    model(x)
    after = lg.compute()
    ratio = after / before
    assert ratio[2] == pytest.approx(10.0, rel=1e-4)  # logits are linear in q
    np.testing.assert_allclose(ratio[:2], 1.0, rtol=1e-5)  # upstream blocks: same inputs
    assert ratio[3] < 3.0  # downstream: only its input changed


def test_attention_tap_with_and_without_logits_and_missing_mask():
    class Block(nn.Module):
        def __init__(self, give_logits):
            super().__init__()
            self.tap = AttentionTap()
            self.give = give_logits

        def forward(self, s):
            p = s.softmax(-1)
            return self.tap(p, logits=s) if self.give else self.tap(p)

    model = nn.Sequential(Block(True), Block(False))
    lg = AttentionLogitCollector(model)
    ent = AttentionEntropyCollector(model, sampler=lg.sampler)
    s = torch.randn(2, 3, 5, 5) * 4
    model(s)
    e, m = collect([ent, lg])
    assert m[0] == pytest.approx(float(s[0].abs().max()), rel=1e-6)
    assert np.isnan(m[1]) and lg.missing_.tolist() == [False, True]
    assert np.isfinite(e).all() and not ent.missing_.any()
    # no forward since: every layer missing (NaN), which is not a non-finite measurement
    e, m = collect([ent, lg])
    assert ent.missing_.all() and lg.missing_.all() and np.isnan(m).all()


def test_nonfinite_logits_are_nan_not_missing():
    model = encoder(layers=2)
    with torch.no_grad():
        model.layers[1].self_attn.in_proj_weight[0, 0] = float("nan")
    lg = AttentionLogitCollector(model)
    ent = AttentionEntropyCollector(model, sampler=lg.sampler)
    model(torch.randn(2, 6, 16))
    e, m = collect([ent, lg])
    assert np.isfinite(m[0]) and np.isnan(m[1]) and np.isnan(e[1])
    assert not lg.missing_.any() and not ent.missing_.any()


def test_unobservable_attention_is_a_clear_error():
    class MyAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = nn.Linear(8, 24)

        def forward(self, x):
            return self.qkv(x)[..., :8]

    model = nn.Sequential(nn.MultiheadAttention(8, 2), MyAttention())
    with pytest.raises(InputError, match=r"1 \(MyAttention\).*AttentionTap"):
        attention_sites(model)
    with pytest.raises(InputError, match="AttentionTap"):
        AttentionLogitCollector(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(InputError, match="max_queries"):
        AttentionSampler(encoder(), max_queries=0)


def test_eval_forwards_are_ignored_and_disabled_collectors_leave_no_hooks():
    model = encoder(layers=2)
    lg = AttentionLogitCollector(model)
    model.eval()
    with torch.no_grad():
        model(torch.randn(2, 5, 16))
    lg.compute()
    assert lg.missing_.all()
    lg.enabled = False
    assert not model.layers[0].self_attn._forward_hooks
    lg.enabled = True
    assert model.layers[0].self_attn._forward_hooks
    lg.close()
    assert not model.layers[0].self_attn._forward_hooks


# --------------------------------------------------------------------------- update ratio


def test_update_ratio_matches_parameter_copies_and_skips_unarmed_steps():
    model = encoder(layers=2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    upd = UpdateRatioCollector(model, optimizer=opt)
    assert upd.layer_names == ("layers.0", "layers.1")
    x = torch.randn(2, 5, 16)
    for step in range(4):
        upd.enabled = step % 2 == 0  # monitored every other step
        old = [[p.detach().clone() for p in blk.parameters()] for blk in model.layers]
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        if step % 2:
            continue
        ref = []
        for blk, ps in zip(model.layers, old, strict=True):
            d = torch.cat(
                [(p.detach() - o).reshape(-1) for p, o in zip(blk.parameters(), ps, strict=True)]
            )
            ref.append(float(d.double().norm() / torch.cat([o.reshape(-1) for o in ps]).norm()))
        np.testing.assert_allclose(upd.compute(), ref, rtol=1e-4)
        assert not upd.missing_.any()
    upd.enabled = True
    assert np.isnan(upd.compute()).all() and upd.missing_.all()  # no step since
    upd.close()
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_sampled_update_ratio_matches_the_same_elements_and_is_close_to_the_full_ratio():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(48, 64), nn.Tanh(), nn.Linear(64, 40), nn.Tanh())
    x = torch.randn(32, 48)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    upd = UpdateRatioCollector(model, optimizer=opt, max_elements=300)
    full = UpdateRatioCollector(model, optimizer=opt, max_elements=None)
    w0, w2 = model[0].weight, model[2].weight
    # 3072 elements in rows of 48: blocks of 32 every 11 * 32 (11 = ceil(3072 / 300), coprime
    # with 48 / gcd(32, 48) = 3); 2560 in rows of 64: every 9 * 32; the biases whole
    i0, i2 = upd.sample_of(w0), upd.sample_of(w2)
    assert i0.tolist() == [b + j for b in range(0, 3072 - 31, 352) for j in range(32)]
    assert i2.tolist() == [b + j for b in range(0, 2560 - 31, 288) for j in range(32)]
    assert upd.sample_of(model[0].bias).tolist() == list(range(64))
    assert full.sample_of(w0).tolist() == list(range(3072))
    assert set((i0 % 48).tolist()) == set(range(48))  # every column of the weight is read
    for _ in range(3):
        groups = [list(model[i].parameters()) for i in (0, 2)]
        old = [[p.detach().clone() for p in ps] for ps in groups]
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
        naive_sampled, naive_full = [], []
        for ps, olds in zip(groups, old, strict=True):
            num = den = 0.0
            for p, o in zip(ps, olds, strict=True):
                sl = upd.sample_of(p)
                new_s, old_s = p.detach().reshape(-1)[sl].double(), o.reshape(-1)[sl].double()
                scale = p.numel() / new_s.numel()
                num += scale * float((new_s - old_s).square().sum())
                den += scale * float(old_s.square().sum())
            naive_sampled.append(math.sqrt(num / den))
            d = torch.cat([(p.detach() - o).reshape(-1) for p, o in zip(ps, olds, strict=True)])
            w = torch.cat([o.reshape(-1) for o in olds]).double()
            naive_full.append(float(d.double().norm() / w.norm()))
        sampled, exact = collect([upd, full])
        np.testing.assert_allclose(sampled, naive_sampled, rtol=1e-5)
        np.testing.assert_allclose(exact, naive_full, rtol=1e-5)
        np.testing.assert_allclose(sampled, exact, rtol=0.1)  # ~10% of the weights read
        assert not upd.missing_.any()
    with pytest.raises(InputError, match="max_elements must be an integer >= 1, got 0"):
        UpdateRatioCollector(model, max_elements=0)
    upd.close()
    full.close()


def test_update_ratio_manual_snapshot_and_bad_optimizer():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    upd = UpdateRatioCollector(model)
    upd.snapshot()
    with torch.no_grad():
        model[1].weight.mul_(1.5)
        model[1].bias.mul_(1.5)
    upd.capture()
    np.testing.assert_allclose(upd.compute(), [0.0, 0.5], rtol=1e-6)
    with pytest.raises(TypeError, match=r"optimizer must be a torch\.optim\.Optimizer"):
        UpdateRatioCollector(model, optimizer="adam")


# --------------------------------------------------------------------------- Hugging Face

transformers = pytest.importorskip("transformers")


def hf_model(kind: str, impl: str):
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=50, n_positions=32, n_embd=32, n_layer=2, n_head=4,
            attn_pdrop=0.0, resid_pdrop=0.0, embd_pdrop=0.0, attn_implementation=impl,
        )  # fmt: skip
        return transformers.GPT2LMHeadModel(cfg)
    if kind == "bert":
        cfg = transformers.BertConfig(
            vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=64, max_position_embeddings=32, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, attn_implementation=impl,
        )  # fmt: skip
        return transformers.BertModel(cfg)
    cfg = transformers.LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        attn_implementation=impl,
    )  # fmt: skip
    return transformers.LlamaForCausalLM(cfg)


def hf_reference(kind, model, ids, mask):
    """Eager logits of batch element 0 per layer, from the layer inputs (hidden states)."""
    with torch.no_grad():
        return _hf_reference(kind, model, ids, mask)


def _hf_reference(kind, model, ids, mask):
    out = model(ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    T = ids.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    keep = causal if kind != "bert" else torch.ones(T, T, dtype=torch.bool)
    keep = keep & mask[0].bool()[None]
    refs = []
    for i in range(2):
        h = out.hidden_states[i][0].detach().double()
        if kind == "gpt2":
            blk = model.transformer.h[i]
            x = blk.ln_1(out.hidden_states[i])[0].detach().double()
            w, b = blk.attn.c_attn.weight.detach().double(), blk.attn.c_attn.bias.detach().double()
            qkv = x @ w + b
            q, k = qkv[:, :32], qkv[:, 32:64]
            q, k = (t.reshape(T, 4, 8).transpose(0, 1) for t in (q, k))
        elif kind == "bert":
            sa = model.encoder.layer[i].attention.self
            q = (h @ sa.query.weight.double().T + sa.query.bias.double()).reshape(T, 4, 8)
            k = (h @ sa.key.weight.double().T + sa.key.bias.double()).reshape(T, 4, 8)
            q, k = q.transpose(0, 1), k.transpose(0, 1)
        else:
            layer = model.model.layers[i]
            x = layer.input_layernorm(out.hidden_states[i])[0].detach().double()
            at = layer.self_attn
            q = (x @ at.q_proj.weight.double().T).reshape(T, 4, 8).transpose(0, 1)
            k = (x @ at.k_proj.weight.double().T).reshape(T, 2, 8).transpose(0, 1)
            cos, sin = model.model.rotary_emb(out.hidden_states[i], torch.arange(T)[None])
            q = naive.rope(q, cos[0].double(), sin[0].double())
            k = naive.rope(k, cos[0].double(), sin[0].double()).repeat_interleave(2, dim=0)
        s = naive.scores(q, k, 1 / math.sqrt(8), keep)
        probs = out.attentions[i][0]  # HF's own eager probabilities
        rows = keep.any(-1)
        refs.append((naive.entropy(s), naive.max_logit(s), probs, s, rows))
    return refs


@pytest.mark.parametrize("kind", ["gpt2", "bert", "llama"])
@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_hugging_face_attention_matches_eager_math(kind, impl):
    model = hf_model(kind, impl)
    T = 10
    ids = torch.randint(0, 50, (3, T))
    mask = torch.ones(3, T, dtype=torch.long)
    mask[0, -2:] = 0  # padded keys in the sampled element
    lg = AttentionLogitCollector(model)
    ent = AttentionEntropyCollector(model, sampler=lg.sampler)
    assert {s.kind for s in lg.sampler.sites} == {kind}
    assert lg.n_layers == 2
    model(ids, attention_mask=mask)
    e, m = collect([ent, lg])
    lg.close()
    ent.close()
    ref = hf_reference(kind, hf_model(kind, "eager"), ids, mask)
    np.testing.assert_allclose(e, [r[0] for r in ref], rtol=1e-4)
    np.testing.assert_allclose(m, [r[1] for r in ref], rtol=1e-4)
    for _, _, probs, s, rows in ref:  # our written-out math is HF's own eager attention
        np.testing.assert_allclose(
            torch.softmax(s[:, rows], -1).numpy(), probs[:, rows].detach().numpy(), atol=1e-5
        )


def test_output_logits_of_a_language_model_head():
    model = hf_model("gpt2", "sdpa")
    out = OutputLogitCollector(model)
    assert out.head_name == "lm_head"
    ids = torch.randint(0, 50, (2, 8))
    logits = model(ids).logits.detach()
    values = out.compute()
    np.testing.assert_allclose(
        values, [float(logits[0].abs().max()), float(logits[0].mean())], rtol=1e-5
    )
    assert not out.missing_.any()
    assert out.compute().tolist() != out.compute().tolist()  # NaN: nothing since
    assert out.missing_.all()
    with pytest.raises(InputError, match="head 'nope'"):
        OutputLogitCollector(model, head="nope")
