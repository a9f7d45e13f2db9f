"""Attention statistics batched over layers equal the per-layer computation.

Self-attention calls of ``nn.MultiheadAttention`` are queued during the forward pass and their
sampled logits computed in one batch by a forward hook on the model (see
``AttentionSampler.defer``); the naive-recomputation tests in ``test_torch_attention.py`` run
through that path. Here: the batch against the per-layer path, and the weights it uses.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(1)
from torch import nn  # noqa: E402

from streamtopo.integrations import torch as st_torch  # noqa: E402


class Causal(nn.Module):
    def __init__(self, n_layers: int = 3, d: int = 16, ctx: int = 12) -> None:
        super().__init__()
        self.emb = nn.Embedding(13, d)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(d, 4, 2 * d, dropout=0.0, batch_first=True)
            for _ in range(n_layers)
        )
        self.head = nn.Linear(d, 13)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx))

    def forward(self, idx, causal: bool = True):
        h = self.emb(idx)
        for block in self.blocks:
            h = block(h, src_mask=self.mask if causal else None, is_causal=causal)
        return self.head(h)


def statistics(model, idx, batched: bool, causal: bool = True, max_queries: int = 5):
    sampler = st_torch.AttentionSampler(model, max_queries=max_queries)
    if not batched:
        sampler.defer = lambda *args, **kwargs: False  # every call sampled in its own hook
    ent = st_torch.AttentionEntropyCollector(model, sampler=sampler)
    logit = st_torch.AttentionLogitCollector(model, sampler=sampler)
    model(idx, causal=causal)
    values = st_torch.collect([ent, logit])
    ent.close()
    logit.close()
    return values


@pytest.mark.parametrize("causal", [True, False])
def test_batched_equals_per_layer(causal):
    torch.manual_seed(0)
    model = Causal()
    idx = torch.randint(0, 13, (3, 12))
    got = statistics(model, idx, batched=True, causal=causal)
    ref = statistics(model, idx, batched=False, causal=causal)
    for a, b in zip(got, ref, strict=True):
        assert np.isfinite(a).all() and a.shape == (3,)
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_batched_logits_use_the_weights_of_the_forward_pass():
    # the batch is computed by a forward hook on the model, before any optimizer step: an
    # update between forward and collection must not change the values
    torch.manual_seed(1)
    model = Causal()
    idx = torch.randint(0, 13, (3, 12))
    ref = statistics(model, idx, batched=False)
    sampler = st_torch.AttentionSampler(model, max_queries=5)
    logit = st_torch.AttentionLogitCollector(model, sampler=sampler)
    model(idx)
    with torch.no_grad():
        model.blocks[0].self_attn.in_proj_weight.mul_(10.0)
    np.testing.assert_allclose(logit.compute(), ref[1], rtol=1e-5)
    logit.close()


def test_a_submodule_called_alone_is_flushed_at_collection():
    # no forward hook of the model fires when the caller runs blocks directly: the queued
    # calls are computed when the values are collected
    torch.manual_seed(2)
    model = Causal()
    x = torch.randn(2, 12, 16)
    sampler = st_torch.AttentionSampler(model, max_queries=5)
    ent = st_torch.AttentionEntropyCollector(model, sampler=sampler)
    model.blocks[1](x, src_mask=model.mask, is_causal=True)
    values = ent.compute()
    assert ent.missing_.tolist() == [True, False, True]
    assert np.isfinite(values[1]) and 0.0 < values[1] < np.log(12)
    ent.close()
