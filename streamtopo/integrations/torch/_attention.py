"""Attention sites: where a model's attention logits can be recomputed on a sample.

Notation: B batch, H heads, Q sampled queries, S keys, d_h head dimension.

A *site* is one attention module whose pre-softmax logits streamtopo can rebuild from the
module's inputs and weights, without the module returning its probabilities (torch's fused
``scaled_dot_product_attention`` never materialises them). :func:`attention_sites` finds them:

``nn.MultiheadAttention`` (so ``nn.TransformerEncoderLayer`` / ``nn.TransformerDecoderLayer``,
whatever ``need_weights`` their callers pass)
    q = x_q W_q + b_q, k = x_k W_k + b_k from ``in_proj_weight`` (or ``q_proj_weight`` /
    ``k_proj_weight``); ``attn_mask`` (bool: True = masked, or additive float, 2-D or
    (B·H, L, S)), ``key_padding_mask`` and ``is_causal`` (without a mask) are applied.
Hugging Face GPT-2 attention (``c_attn``, a ``Conv1D``)
    q, k from ``c_attn`` (cross-attention: ``q_attn`` and the encoder states), the module's
    own ``scaling`` (which includes ``scale_attn_by_inverse_layer_idx``), causal when
    ``module.is_causal``, plus the ``attention_mask`` it is given.
Hugging Face BERT-style self/cross attention (``query`` / ``key`` linears, ``attention_head_size``)
    q, k from ``query`` / ``key`` (keys from ``encoder_hidden_states`` when given), the
    ``attention_mask`` (bool: True = attend, or additive float), causal when ``is_causal``.
Hugging Face Llama-style attention (``q_proj`` / ``k_proj``, ``head_dim``, called with
``position_embeddings``)
    q, k from ``q_proj`` / ``k_proj``, then ``q_norm`` / ``k_norm`` when the module has them
    (Qwen3, OLMo-2 style), then rotary embeddings with the model file's own
    ``apply_rotary_pos_emb`` (so the logits are the ones the softmax sees), grouped-query keys
    repeated to the query heads, the module's ``scaling``, causal plus the ``attention_mask``.
:class:`~streamtopo.integrations.torch.AttentionTap`
    a custom block passes its probabilities (and optionally its logits) through the tap.

Sampling (what bounds the cost): the **first batch element** only, **every head**, and at
most ``max_queries`` query positions evenly spaced over the sequence, always including the
last one (default 32); every key of those queries is used. Keys from a KV cache are not
included (training forwards have none).

Any other module whose class name ends in ``Attention`` / ``SelfAttention`` and that holds
parameters makes :func:`attention_sites` raise, naming it: statistics that silently skip a
model's attention layers would read as healthy.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import nn

from ..._validation import describe
from ...errors import InputError, InputTypeError

__all__ = [
    "AttentionSample",
    "AttentionSite",
    "AttentionTap",
    "Deferred",
    "attention_sites",
    "batched_logits",
    "deferrable",
]


class AttentionTap(nn.Module):
    """Identity module that marks attention probabilities (and optionally logits).

    In a custom attention block, pass the probabilities through it; it returns its input
    unchanged and costs nothing when no collector listens::

        self.tap = AttentionTap()                        # in __init__
        probs = self.tap(scores.softmax(-1), logits=scores)  # in forward, (..., queries, keys)

    The last dimension must be the probability distribution (rows summing to 1). ``logits``
    (the pre-softmax scores, masked entries ``-inf``) feed ``attn_logit``; without them a
    tapped layer reports ``attn_logit`` as missing, never as a value.
    """

    def forward(self, probs: torch.Tensor, logits: torch.Tensor | None = None) -> torch.Tensor:
        return probs


class AttentionSample(NamedTuple):
    """Sampled attention of one call: ``logits`` (H, Q, S) float32 pre-softmax scores with
    masked entries at ``-inf`` (or None when only probabilities are known) and ``probs``
    (H, Q, S) or None (then softmax(logits))."""

    logits: torch.Tensor | None
    probs: torch.Tensor | None
    #: True when no query row of ``logits`` is entirely masked (entropy can skip the check)
    full_rows: bool = False


class AttentionSite(NamedTuple):
    """One observable attention module: its qualified name, the module, and ``kind``
    ("mha", "gpt2", "bert", "llama" or "tap")."""

    name: str
    module: nn.Module
    kind: str


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, AttentionTap):
        return "tap"
    if isinstance(module, nn.MultiheadAttention):
        return "mha"
    if (
        type(getattr(module, "c_attn", None)).__name__ == "Conv1D"  # weight (in, 3E), not Linear
        and hasattr(module, "head_dim")
        and hasattr(module, "scaling")
    ):
        return "gpt2"
    if all(hasattr(module, a) for a in ("query", "key", "attention_head_size", "scaling")):
        return "bert"
    if all(hasattr(module, a) for a in ("q_proj", "k_proj", "head_dim", "scaling")):
        mod = sys.modules.get(type(module).__module__)
        if mod is not None and callable(getattr(mod, "apply_rotary_pos_emb", None)):
            return "llama"
    return None


def _looks_like_attention(module: nn.Module) -> bool:
    name = type(module).__name__
    own = next(module.parameters(recurse=False), None) is not None or any(
        isinstance(c, nn.Linear) for c in module.children()
    )
    return own and name.endswith("Attention")


def attention_sites(model: nn.Module) -> list[AttentionSite]:
    """Every observable attention module of ``model``, in module order.

    Raises :class:`~streamtopo.errors.InputError` when the model has no attention at all, or
    when it has an attention module streamtopo cannot rebuild logits for (the message names
    the module and the two ways out).

    Examples
    --------
    >>> import torch
    >>> enc = torch.nn.TransformerEncoder(
    ...     torch.nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), num_layers=2,
    ...     enable_nested_tensor=False)
    >>> [(s.name, s.kind) for s in attention_sites(enc)]
    [('layers.0.self_attn', 'mha'), ('layers.1.self_attn', 'mha')]
    """
    if not isinstance(model, nn.Module):
        raise InputTypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    sites: list[AttentionSite] = []
    unknown: list[str] = []
    for name, m in model.named_modules():
        if any(name.startswith(s.name + ".") for s in sites if s.name):
            continue  # inside a site (e.g. BERT's query Linear)
        kind = _kind(m)
        if kind is not None:
            sites.append(AttentionSite(name or "root", m, kind))
        elif _looks_like_attention(m) and not any(
            _kind(c) is not None for c in m.modules() if c is not m
        ):
            unknown.append(f"{name or 'root'} ({type(m).__name__})")
    if unknown:
        raise InputError(
            f"cannot observe the attention of {', '.join(unknown)}: streamtopo rebuilds "
            "attention logits for nn.MultiheadAttention and Hugging Face GPT-2, BERT-style and "
            "Llama-style attention only. Pass the probabilities (and logits) of these modules "
            "through streamtopo.integrations.torch.AttentionTap, or leave 'attn_entropy' and "
            "'attn_logit' out of signals"
        )
    if not sites:
        raise InputError(
            "the model has no attention module streamtopo can observe (nn.MultiheadAttention, "
            "Hugging Face GPT-2/BERT/Llama-style attention) and no AttentionTap: pass attention "
            "probabilities of custom blocks through streamtopo.integrations.torch.AttentionTap"
        )
    return sites


# --------------------------------------------------------------------------- sampling


def _arg(args: tuple, kwargs: dict, name: str, pos: int | None) -> Any:
    if name in kwargs:
        return kwargs[name]
    if pos is not None and len(args) > pos:
        return args[pos]
    return None


_QUERY_INDEX: dict[tuple[int, int, torch.device], torch.Tensor] = {}


def _query_index(T: int, max_queries: int, device: torch.device) -> torch.Tensor:
    """All T queries, or ``max_queries`` evenly spaced ones (first and last included)."""
    key = (T, max_queries, device)
    idx = _QUERY_INDEX.get(key)
    if idx is None:
        if T <= max_queries:
            idx = torch.arange(T, device=device)
        else:
            idx = torch.linspace(0, T - 1, max_queries, device=device).round().long().unique()
        if len(_QUERY_INDEX) < 256:  # sequence lengths of a run are few; stay bounded anyway
            _QUERY_INDEX[key] = idx
    return idx


def _heads(x: torch.Tensor, d_h: int) -> torch.Tensor:
    """(n, H·d_h) -> (H, n, d_h)."""
    return x.reshape(x.shape[0], -1, d_h).transpose(0, 1)


def _mask_scores(s: torch.Tensor, qi: torch.Tensor, causal: bool, offset: int = 0) -> torch.Tensor:
    if causal:
        keys = torch.arange(s.shape[-1], device=s.device)
        s = s.masked_fill(keys[None, None, :] > (qi[None, :, None] + offset), float("-inf"))
    return s


def _hf_mask(s: torch.Tensor, mask: Any, qi: torch.Tensor) -> torch.Tensor:
    """Apply a Hugging Face 4-D attention mask (bool True = attend, or additive float)."""
    if not isinstance(mask, torch.Tensor) or mask.dim() != 4:
        return s
    m = mask[0, :, qi, : s.shape[-1]]  # (1 or H, Q, S)
    if m.dtype == torch.bool:
        return s.masked_fill(~m, float("-inf"))
    return _add_float_mask(s, m)


def _add_float_mask(s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Additive mask; entries at or below half the dtype's minimum (Hugging Face's "masked"
    value) become -inf, so masked keys never count in |logit| statistics."""
    m = m.to(s.dtype)
    masked = m <= torch.finfo(m.dtype).min / 2
    return (s + m.masked_fill(masked, 0.0)).masked_fill(masked, float("-inf"))


def sample_logits(
    site: AttentionSite, args: tuple, kwargs: dict, output: Any, max_queries: int
) -> AttentionSample | None:
    """The sampled attention of one call of ``site.module`` (None: nothing to observe)."""
    kind, m = site.kind, site.module
    if kind == "tap":
        probs = args[0] if args else kwargs.get("probs")
        logits = kwargs.get("logits", args[1] if len(args) > 1 else None)
        if not isinstance(probs, torch.Tensor) or probs.dim() < 2:
            return None
        Q = probs.shape[-2]
        qi = _query_index(Q, max_queries, probs.device)
        p = probs.detach().reshape(-1, Q, probs.shape[-1])
        n_first = p.shape[0] // (probs.shape[0] if probs.dim() >= 4 else 1)
        p = p[:n_first, qi].float()
        lg = None
        if isinstance(logits, torch.Tensor) and logits.shape == probs.shape:
            lg = logits.detach().reshape(-1, Q, logits.shape[-1])[:n_first, qi].float()
        return AttentionSample(lg, p)
    with torch.no_grad():
        if kind == "mha":
            return _mha(m, args, kwargs, max_queries)
        if kind == "gpt2":
            return _gpt2(m, args, kwargs, max_queries)
        if kind == "bert":
            return _bert(m, args, kwargs, max_queries)
        return _llama(m, args, kwargs, max_queries)


def _mha(m: nn.MultiheadAttention, args, kwargs, max_queries) -> AttentionSample | None:
    query = _arg(args, kwargs, "query", 0)
    key = _arg(args, kwargs, "key", 1)
    if not isinstance(query, torch.Tensor) or not isinstance(key, torch.Tensor):
        return None
    batched = query.dim() == 3
    self_attn = query is key  # before slicing: the batch-0 views are new objects
    if batched:
        xq = query[0] if m.batch_first else query[:, 0]
        xk = xq if self_attn else (key[0] if m.batch_first else key[:, 0])
    else:
        xq, xk = query, key
    E, H = m.embed_dim, m.num_heads
    d_h = E // H
    qi = _query_index(xq.shape[0], max_queries, xq.device)
    # q for the sampled queries only, k for every key (fewer FLOPs than one packed projection)
    if m._qkv_same_embed_dim:
        wq, wk = m.in_proj_weight[:E], m.in_proj_weight[E : 2 * E]
    else:
        wq, wk = m.q_proj_weight, m.k_proj_weight
    bq = bk = None
    if m.in_proj_bias is not None:
        bq, bk = m.in_proj_bias[:E], m.in_proj_bias[E : 2 * E]
    q = nn.functional.linear(xq[qi].float(), wq.float(), _f(bq))
    k = nn.functional.linear(xk.float(), wk.float(), _f(bk))
    if m.bias_k is not None:
        k = torch.cat([k, m.bias_k.reshape(1, E).float()])
    q = q.reshape(len(qi), H, d_h).transpose(0, 1)  # (H, Q, d_h)
    kt = k.reshape(k.shape[0], H, d_h).permute(1, 2, 0)  # (H, d_h, S)
    scale = 1.0 / math.sqrt(d_h)
    attn_mask = _arg(args, kwargs, "attn_mask", 5)
    kpm = _arg(args, kwargs, "key_padding_mask", 3)
    S0 = xk.shape[0]
    full = True
    if isinstance(attn_mask, torch.Tensor) and attn_mask.dim() == 2 and kt.shape[-1] == S0:
        bias, full = _static_bias(attn_mask, qi, S0)  # the same mask every step: cached
        s = torch.baddbmm(bias, q, kt, alpha=scale)  # bias + scale * q k^T in one op
    else:
        s = torch.baddbmm(_zero(q.device), q, kt, beta=0.0, alpha=scale)
        if isinstance(attn_mask, torch.Tensor):
            am = attn_mask if attn_mask.dim() == 2 else attn_mask[:H]  # (B*H, L, S): batch 0
            am = am[..., qi, :S0] if am.dim() == 3 else am[qi, :S0]
            s = _apply_torch_mask(s, am)
            full = False
        elif bool(_arg(args, kwargs, "is_causal", 7)):
            s = _mask_scores(s, qi, True)
    if isinstance(kpm, torch.Tensor):
        kp = (kpm[0] if batched else kpm)[:S0]
        s = _apply_torch_mask(s, kp[None, None, :])
        full = False
    return AttentionSample(s, None, full)


_ZERO: dict[torch.device, torch.Tensor] = {}


def _zero(device: torch.device) -> torch.Tensor:
    """A 0-d zero on ``device`` (made once): the ignored ``input`` of ``baddbmm(..., beta=0)``."""
    z = _ZERO.get(device)
    if z is None:
        z = _ZERO[device] = torch.zeros((), device=device)
    return z


class Deferred(NamedTuple):
    """A self-attention call of an ``nn.MultiheadAttention`` whose sampled logits are computed
    later, with the other layers' of the same forward pass, in one batch: the input's batch
    element 0 ``x`` (T, E), the query index, the static additive mask (Q, T) or None, and
    whether every query row keeps a key."""

    x: torch.Tensor
    qi: torch.Tensor
    bias: torch.Tensor | None
    full: bool


def deferrable(site: AttentionSite, args: tuple, kwargs: dict, max_queries: int) -> Deferred | None:
    """The call's inputs when its logits can be batched with other layers' (an
    ``nn.MultiheadAttention`` in self-attention on a batched input, packed q/k/v projection,
    no ``bias_k``, no key padding mask, a 2-D or no ``attn_mask``); else None."""
    m = site.module
    if site.kind != "mha" or not m._qkv_same_embed_dim or m.bias_k is not None:
        return None
    query, key = _arg(args, kwargs, "query", 0), _arg(args, kwargs, "key", 1)
    if not isinstance(query, torch.Tensor) or query is not key or query.dim() != 3:
        return None
    if _arg(args, kwargs, "key_padding_mask", 3) is not None:
        return None
    # not detached: the batch is computed under no_grad, before backward frees anything
    x = query[0] if m.batch_first else query[:, 0]
    qi = _query_index(x.shape[0], max_queries, x.device)
    attn_mask = _arg(args, kwargs, "attn_mask", 5)
    if isinstance(attn_mask, torch.Tensor) and attn_mask.dim() == 2:
        bias, full = _static_bias(attn_mask, qi, x.shape[0])
        return Deferred(x, qi, bias, full)
    if attn_mask is None and not bool(_arg(args, kwargs, "is_causal", 7)):
        return Deferred(x, qi, None, True)
    return None


def batched_logits(modules: list[nn.Module], calls: list[Deferred]) -> torch.Tensor:
    """Sampled logits (N, H, Q, S) of N deferred calls of equal shapes, mask and query index:
    the same arithmetic as the per-call path (q, k from the packed projection, scaled q·kᵀ
    plus the mask) in a handful of batched ops instead of a dozen per layer."""
    m0 = modules[0]
    E, H = m0.embed_dim, m0.num_heads
    d_h = E // H
    x = torch.stack([c.x for c in calls]).float()  # (N, T, E)
    w = torch.stack([m.in_proj_weight[: 2 * E] for m in modules]).float()  # (N, 2E, E)
    qi = calls[0].qi
    xq = x[:, qi]  # q for the sampled queries only, k for every key
    wq, wk = w[:, :E].transpose(1, 2), w[:, E:].transpose(1, 2)
    if m0.in_proj_bias is not None:
        b = torch.stack([m.in_proj_bias[: 2 * E] for m in modules]).float()[:, None, :]
        q, k = torch.baddbmm(b[..., :E], xq, wq), torch.baddbmm(b[..., E:], x, wk)
    else:
        q, k = torch.bmm(xq, wq), torch.bmm(x, wk)
    N, T = x.shape[0], x.shape[1]
    Q = len(qi)
    q = q.reshape(N, Q, H, d_h).transpose(1, 2).reshape(N * H, Q, d_h)
    kt = k.reshape(N, T, H, d_h).permute(0, 2, 3, 1).reshape(N * H, d_h, T)
    bias = calls[0].bias
    zero = _zero(q.device)
    s = torch.baddbmm(zero if bias is None else bias, q, kt, beta=0.0 if bias is None else 1.0,
                      alpha=1.0 / math.sqrt(d_h))  # fmt: skip
    return s.reshape(N, H, Q, T)


_BIAS: dict[tuple, tuple[torch.Tensor, bool, torch.Tensor]] = {}


def _static_bias(mask: torch.Tensor, qi: torch.Tensor, S: int) -> tuple[torch.Tensor, bool]:
    """A 2-D ``attn_mask`` as an additive (Q, S) bias of 0 / -inf / finite values, and whether
    every row keeps a key; cached per mask tensor (and its in-place version) and query set.
    The entry holds the mask itself, so its ``id`` cannot be reused while cached."""
    key = (id(mask), mask._version, id(qi), S)
    hit = _BIAS.get(key)
    if hit is None:
        zero = torch.zeros(1, len(qi), S, dtype=torch.float32, device=mask.device)
        bias = _apply_torch_mask(zero, mask[qi, :S])[0]
        hit = (bias, not bool(torch.isneginf(bias).all(-1).any()), mask)
        if len(_BIAS) >= 64:
            _BIAS.clear()
        _BIAS[key] = hit
    return hit[0], hit[1]


def _f(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def _apply_torch_mask(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """torch's convention: bool True = masked out, float = additive."""
    S = mask.shape[-1]
    head, tail = s[..., :S], s[..., S:]
    if mask.dtype == torch.bool:
        head = head.masked_fill(mask, float("-inf"))
    else:
        head = _add_float_mask(head, mask)
    return torch.cat([head, tail], dim=-1) if tail.shape[-1] else head


def _gpt2(m: nn.Module, args, kwargs, max_queries) -> AttentionSample | None:
    x = _arg(args, kwargs, "hidden_states", 0)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        return None
    x0 = x[0]
    qi = _query_index(x0.shape[0], max_queries, x.device)
    enc = kwargs.get("encoder_hidden_states")
    E, d_h = m.embed_dim, m.head_dim
    if isinstance(enc, torch.Tensor) and hasattr(m, "q_attn"):
        q = m.q_attn(x0[qi])
        k = m.c_attn(enc[0])[:, :E]
        causal = False
    else:
        w, b = m.c_attn.weight, m.c_attn.bias  # Conv1D: y = x @ w + b, w is (in, 3E)
        q = torch.addmm(b[:E], x0[qi], w[:, :E])
        k = torch.addmm(b[E : 2 * E], x0, w[:, E : 2 * E])
        causal = bool(getattr(m, "is_causal", True))
    q, k = _heads(q.float(), d_h), _heads(k.float(), d_h)
    s = (q @ k.transpose(-1, -2)) * float(m.scaling)
    s = _mask_scores(s, qi, causal)
    return AttentionSample(_hf_mask(s, kwargs.get("attention_mask"), qi), None)


def _bert(m: nn.Module, args, kwargs, max_queries) -> AttentionSample | None:
    x = _arg(args, kwargs, "hidden_states", 0)
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        return None
    enc = kwargs.get("encoder_hidden_states")
    xk = enc[0] if isinstance(enc, torch.Tensor) else x[0]
    qi = _query_index(x.shape[1], max_queries, x.device)
    d_h = m.attention_head_size
    q, k = _heads(m.query(x[0][qi]).float(), d_h), _heads(m.key(xk).float(), d_h)
    s = (q @ k.transpose(-1, -2)) * float(m.scaling)
    s = _mask_scores(s, qi, bool(getattr(m, "is_causal", False)) and enc is None)
    mask = _arg(args, kwargs, "attention_mask", 1)
    if isinstance(enc, torch.Tensor):
        mask = kwargs.get("encoder_attention_mask", mask)
    return AttentionSample(_hf_mask(s, mask, qi), None)


def _llama(m: nn.Module, args, kwargs, max_queries) -> AttentionSample | None:
    x = _arg(args, kwargs, "hidden_states", 0)
    pe = _arg(args, kwargs, "position_embeddings", 1)
    if not isinstance(x, torch.Tensor) or x.dim() != 3 or not isinstance(pe, (tuple, list)):
        return None
    rope: Callable = sys.modules[type(m).__module__].apply_rotary_pos_emb
    x0 = x[0]
    T, d_h = x0.shape[0], m.head_dim
    qi = _query_index(T, max_queries, x.device)
    q = m.q_proj(x0[qi]).reshape(1, len(qi), -1, d_h)
    k = m.k_proj(x0).reshape(1, T, -1, d_h)
    if getattr(m, "q_norm", None) is not None:
        q = m.q_norm(q)
    if getattr(m, "k_norm", None) is not None:
        k = m.k_norm(k)
    q, k = q.transpose(1, 2), k.transpose(1, 2)  # (1, H, n, d_h)
    cos, sin = pe
    c0, s0 = cos[:1], sin[:1]
    q = rope(q, q, c0[:, qi], s0[:, qi])[0]
    k = rope(k, k, c0[:, :T], s0[:, :T])[0]
    q, k = q[0].float(), k[0].float()
    groups = q.shape[0] // k.shape[0]
    if groups > 1:
        k = k.repeat_interleave(groups, dim=0)
    s = (q @ k.transpose(-1, -2)) * float(m.scaling)
    s = _mask_scores(s, qi, bool(getattr(m, "is_causal", True)))
    return AttentionSample(_hf_mask(s, _arg(args, kwargs, "attention_mask", 2), qi), None)
