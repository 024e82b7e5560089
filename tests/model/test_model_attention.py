"""Attention and its techniques checked against hand computations (spec §1.5, §2.4, §2.5, §2.8-2.10)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from golf.kernel.attention import CausalSelfAttention, exclusive_self_attention, rope_base, rotary
from golf.model.config import (
    AttentionConfig,
    AttnGateConfig,
    GateKind,
    RopeConfig,
    ValueEmbedConfig,
    ValueResidualConfig,
    ValueResidualInit,
    XSAConfig,
    XSAValue,
)
from tests.model.lib import blocks_recorder, build, randomize, tiny


def rope(dims: int, base: float = 10000.0, **kw):
    """The rotation of a model whose RoPE config has these settings."""
    cfg = tiny(attention=AttentionConfig(rope=RopeConfig(dims=dims, base=base, **kw)))
    return lambda x: rotary(x, cfg)

# ----------------------------------------------------------------------------- RoPE


def test_rope_half_split_by_hand():
    # head dim 4, base 10000: inv_freq = [1, 10000^(-1/2)] = [1, 0.01]; pairs (0, 2) and (1, 3)
    rot = rope(dims=4)
    x = torch.zeros(1, 3, 1, 4)
    x[0, :, 0] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    out = rot(x)[0, :, 0]
    assert torch.allclose(out[0], torch.tensor([1.0, 2.0, 3.0, 4.0]))  # position 0: no rotation
    c1, s1, c2, s2 = math.cos(1), math.sin(1), math.cos(0.01), math.sin(0.01)
    # position 1: x1' = x1 cos + x2 sin, x2' = -x1 sin + x2 cos
    expected = [1 * c1 + 3 * s1, 2 * c2 + 4 * s2, -1 * s1 + 3 * c1, -2 * s2 + 4 * c2]
    assert torch.allclose(out[1], torch.tensor(expected), atol=1e-6)
    c, s = math.cos(2), math.sin(2)
    assert torch.allclose(out[2, [0, 2]], torch.tensor([c + 3 * s, -s + 3 * c]), atol=1e-6)


def test_partial_rope_rotates_only_the_first_dims_with_frequencies_over_them():
    rot = rope(dims=4)
    x = torch.randn(2, 5, 3, 8)
    out = rot(x)
    assert torch.equal(out[..., 4:], x[..., 4:])
    assert torch.allclose(out[..., :4], rot(x[..., :4].contiguous()))


def test_ntk_scaled_base():
    # the #1573 lineage at T=2048 with a 1024-token reference: 10000 * 2^(16/14) ~ 22,081
    assert rope_base(10000.0, 16, 2048, 1024) == pytest.approx(10000.0 * 2 ** (8 / 7))
    assert abs(rope_base(10000.0, 16, 2048, 1024) - 22081) < 1
    assert abs(rope_base(10000.0, 64, 2048, 1024) - 20452) < 1  # full-dim variant of spec §2.5
    assert rope_base(10000.0, 16, 1024, 1024) == 10000.0
    x = torch.randn(1, 2048, 1, 16)
    scaled = rope(16, ntk_reference_len=1024)(x)
    assert torch.allclose(scaled, rope(16, rope_base(10000.0, 16, 2048, 1024))(x))
    assert torch.equal(rope(16, ntk_reference_len=2048)(x), rope(16)(x))  # not past the reference length


# ----------------------------------------------------------------------------- the baseline attention


def _reference_attention(attn: CausalSelfAttention, x: torch.Tensor, H: int, Hkv: int) -> torch.Tensor:
    """Explicit loops: per-head RMSNorm, half-split RoPE, q_gain, causal softmax(q k / sqrt(D)), GQA groups."""
    B, T, d = x.shape
    D = d // H
    q = (x @ attn.c_q.weight.T).view(B, T, H, D)
    k = (x @ attn.c_k.weight.T).view(B, T, Hkv, D)
    v = (x @ attn.c_v.weight.T).view(B, T, Hkv, D)
    norm = lambda t: t / torch.sqrt(t.pow(2).mean(-1, keepdim=True) + torch.finfo(t.dtype).eps)
    half = D // 2
    freqs = [10000.0 ** (-2 * i / D) for i in range(half)]

    def rope(t):
        out = t.clone()
        for pos in range(T):
            for i, f in enumerate(freqs):
                c, s = math.cos(pos * f), math.sin(pos * f)
                a, b = t[:, pos, :, i], t[:, pos, :, i + half]
                out[:, pos, :, i], out[:, pos, :, i + half] = a * c + b * s, -a * s + b * c
        return out

    q, k = rope(norm(q)) * attn.q_gain[:, None], rope(norm(k))
    y = torch.zeros(B, T, H, D)
    for h in range(H):
        g = h // (H // Hkv)
        for t in range(T):
            scores = torch.einsum("bd,bsd->bs", q[:, t, h], k[:, : t + 1, g]) / math.sqrt(D)
            y[:, t, h] = torch.einsum("bs,bsd->bd", scores.softmax(-1), v[:, : t + 1, g])
    return y.reshape(B, T, H * D) @ attn.proj.weight.T


def test_attention_matches_the_explicit_computation():
    cfg = tiny()
    attn = randomize(CausalSelfAttention(cfg, 0))
    with torch.no_grad():
        attn.q_gain.copy_(torch.tensor([1.5, 0.5, 2.0, 1.0]))
    x = torch.randn(2, 6, 16)
    assert torch.allclose(attn(x, {}), _reference_attention(attn, x, 4, 2), atol=1e-5)


# ----------------------------------------------------------------------------- XSA


def test_xsa_removes_exactly_the_self_value_component():
    # one KV head shared by two query heads: v = (2, 0) -> v_hat = (1, 0)
    y = torch.tensor([[1.0, 2.0], [3.0, -1.0]]).view(1, 1, 2, 2)
    v = torch.tensor([2.0, 0.0]).view(1, 1, 1, 2)
    assert torch.equal(exclusive_self_attention(y, v).view(2, 2), torch.tensor([[0.0, 2.0], [0.0, -1.0]]))


def test_xsa_uses_each_heads_kv_group():
    # 4 query heads, 2 KV heads: heads 0, 1 remove v_0 = (1, 0); heads 2, 3 remove v_1 = (0, 3) -> (0, 1)
    y = torch.ones(1, 1, 4, 2)
    v = torch.tensor([[1.0, 0.0], [0.0, 3.0]]).view(1, 1, 2, 2)
    out = exclusive_self_attention(y, v).view(4, 2)
    assert torch.equal(out, torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]))
    yr = torch.randn(3, 5, 4, 8)
    vr = torch.randn(3, 5, 2, 8)
    out = exclusive_self_attention(yr, vr)
    v_per_head = vr.repeat_interleave(2, dim=2)  # the slow form of #187
    assert torch.allclose((out * v_per_head).sum(-1), torch.zeros(3, 5, 4), atol=1e-5)


def _attn(cfg, layer=1):
    return CausalSelfAttention(cfg, layer)


@pytest.mark.parametrize("value", [XSAValue.raw, XSAValue.blended])
def test_xsa_value_source(value):
    """raw removes the layer's own value (#344), blended the value-residual mix it attends to (#507)."""
    att = AttentionConfig(xsa=XSAConfig(layers="all", value=value),
                          value_residual=ValueResidualConfig(init=ValueResidualInit.half, layers="all"))
    cfg = tiny(attention=att)
    attn = randomize(_attn(cfg))
    seen = {}
    attn.proj.register_forward_pre_hook(lambda m, args: seen.update(y=args[0]))
    x, v_first = torch.randn(1, 4, 16), torch.randn(1, 4, 2, 4)
    attn(x, {"v_first": v_first})
    v_raw = (x @ attn.c_v.weight.T).view(1, 4, 2, 4)
    lam = attn.vr_lambda
    removed = v_raw if value is XSAValue.raw else lam[0] * v_first + lam[1] * v_raw
    y = seen["y"].view(1, 4, 4, 4)
    dots = (y * removed.repeat_interleave(2, dim=2)).sum(-1)
    assert torch.allclose(dots, torch.zeros_like(dots), atol=1e-5)


# ----------------------------------------------------------------------------- gates


def _head_outputs(attn, x):
    """The per-head attention output [B, T, H, D] that reaches ``proj`` (after XSA and the gate)."""
    seen = {}
    handle = attn.proj.register_forward_pre_hook(lambda m, args: seen.update(y=args[0]))
    attn(x, {})
    handle.remove()
    return seen["y"].view(*x.shape[:2], 4, 4)


def test_input_gate_by_hand():
    """sigma(W x + b) per (position, head) times that head's output, x the attention input."""
    gated = randomize(_attn(tiny(attention=AttentionConfig(gate=AttnGateConfig(kind=GateKind.input)))))
    plain = _attn(tiny())
    plain.load_state_dict(gated.state_dict(), strict=False)
    x = torch.randn(2, 5, 16)
    logits = x @ gated.attn_gate.weight.T + gated.attn_gate.bias  # [B, T, H]
    expected = _head_outputs(plain, x) * torch.sigmoid(logits)[..., None]
    assert torch.allclose(_head_outputs(gated, x), expected, atol=1e-6)
    with torch.no_grad():
        gated.attn_gate.weight.zero_()
        gated.attn_gate.bias.copy_(torch.tensor([0.0, 4.0, -1.0, 2.0]))
    open_ = torch.tensor([0.5, 1 / (1 + math.exp(-4)), 1 / (1 + math.exp(1)), 1 / (1 + math.exp(-2))])
    assert torch.allclose(_head_outputs(gated, x), _head_outputs(plain, x) * open_[:, None], atol=1e-6)


def test_static_gate_by_hand():
    gated = randomize(_attn(tiny(attention=AttentionConfig(gate=AttnGateConfig(kind=GateKind.static)))))
    assert not hasattr(gated.attn_gate, "weight")
    plain = _attn(tiny())
    plain.load_state_dict(gated.state_dict(), strict=False)
    with torch.no_grad():
        gated.attn_gate.bias.copy_(torch.tensor([0.0, 4.0, 0.0, 4.0]))
    x = torch.randn(2, 3, 16)
    out, ref = _head_outputs(gated, x), _head_outputs(plain, x)
    assert torch.allclose(out[:, :, 0], ref[:, :, 0] / 2)
    assert torch.allclose(out[:, :, 1], ref[:, :, 1] * (1 / (1 + math.exp(-4))))


@pytest.mark.parametrize("kind", [GateKind.input, GateKind.static])
def test_gate_is_a_near_open_multiplier_at_init(kind):
    cfg = tiny(attention=AttentionConfig(gate=AttnGateConfig(kind=kind)))
    plain = randomize(_attn(tiny()))
    gated = _attn(cfg)
    gated.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 5, 16)
    assert torch.allclose(gated(x, {}), plain(x, {}) * torch.sigmoid(torch.tensor(4.0)), atol=1e-6)
    names = {n for n, _ in gated.named_parameters()} - {n for n, _ in plain.named_parameters()}
    assert names == ({"attn_gate.weight", "attn_gate.bias"} if kind is GateKind.input else {"attn_gate.bias"})


# ----------------------------------------------------------------------------- value residual


def _sdpa_inputs(attn, x, ctx, monkeypatch):
    """The (q, k, v) the attention hands to SDPA, each back in [B, T, heads, D]."""
    seen = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention", lambda q, k, v, **kw: seen.append((q, k, v)) or sdpa(q, k, v, **kw))
    attn(x, ctx)
    monkeypatch.undo()
    return [t.transpose(1, 2) for t in seen[0]]


@pytest.mark.parametrize("init,lam", [(ValueResidualInit.half, (0.5, 0.5)), (ValueResidualInit.identity, (0.0, 1.0))])
def test_value_residual_blend(init, lam, monkeypatch):
    """The first attention of a pass publishes its value; a layer owning vr_lambda attends with
    l0 * v_first + l1 * v (half: [0.5, 0.5]; identity: [0, 1], the own value unchanged)."""
    cfg = tiny(attention=AttentionConfig(value_residual=ValueResidualConfig(init=init, layers="all")))
    attn = randomize(_attn(cfg, layer=0))
    assert torch.equal(_attn(cfg, layer=0).vr_lambda, torch.tensor(lam))
    with torch.no_grad():
        attn.vr_lambda.copy_(torch.tensor(lam))
    x, v0 = torch.randn(1, 3, 16), torch.randn(1, 3, 2, 4)
    ctx = {}
    own = _sdpa_inputs(attn, x, ctx, monkeypatch)[2]
    assert torch.allclose(own, (x @ attn.c_v.weight.T).view(1, 3, 2, 4), atol=1e-6)
    assert torch.equal(ctx["v_first"], own)  # the source layer publishes its value
    blended = _sdpa_inputs(attn, x, {"v_first": v0}, monkeypatch)[2]
    assert torch.allclose(blended, lam[0] * v0 + lam[1] * own, atol=1e-6)
    if init is ValueResidualInit.identity:
        assert torch.equal(blended, own)  # alpha = 1, beta = 0
    no_lambda = randomize(_attn(tiny(attention=AttentionConfig(value_residual=ValueResidualConfig(layers="from:1"))), 0))
    assert not hasattr(no_lambda, "vr_lambda")
    assert torch.equal(_sdpa_inputs(no_lambda, x, {"v_first": v0}, monkeypatch)[2],
                       _sdpa_inputs(no_lambda, x, {}, monkeypatch)[2])  # without a lambda: its own value


def test_value_residual_in_the_model_uses_layer_zero_value():
    att = AttentionConfig(value_residual=ValueResidualConfig(init=ValueResidualInit.half, layers="from:1"))
    model = randomize(build(tiny(attention=att)))
    assert [hasattr(b.attn, "vr_lambda") for b in model.blocks] == [False, True, True, True]
    seen = []
    for b in model.blocks:
        b.attn.c_v.register_forward_hook(lambda m, a, out: seen.append(out))
    blended = []
    model.blocks[2].attn.register_forward_hook(lambda m, a, out: blended.append(a[1]["v_first"]))
    model(torch.randint(0, 32, (1, 6)))
    assert torch.equal(blended[0], seen[0].view(1, 6, 2, 4))


# ----------------------------------------------------------------------------- value embeddings


def test_value_embedding_is_added_to_the_values_of_target_layers_only():
    att = AttentionConfig(value_embed=ValueEmbedConfig(dim=8, layers="1,3"))
    model = randomize(build(tiny(attention=att)))
    assert {n for n, _ in model.named_parameters() if n.startswith("ve_")} == {
        "ve_shared.embed.weight", "ve_shared.proj.weight", "ve_shared.scale", "ve_shared.layer_scales"}
    ids = torch.randint(0, 32, (2, 5))
    rec = blocks_recorder(model)
    model(ids)
    ve = model.ve_shared
    base = (ve.embed.weight[ids] @ ve.proj.weight.T) * ve.scale
    value_inputs = [args[3] for _, args, _ in rec.calls]
    assert value_inputs[0] is None and value_inputs[2] is None
    assert torch.allclose(value_inputs[1], base * ve.layer_scales[0])
    assert torch.allclose(value_inputs[3], base * ve.layer_scales[1])


def test_value_embedding_init():
    cfg = tiny(vocab_size=512, attention=AttentionConfig(value_embed=ValueEmbedConfig(dim=16, layers="last:2")))
    ve = build(cfg).ve_shared
    assert abs(ve.embed.weight.std().item() - 0.01) < 0.001
    assert not ve.proj.weight.any() and ve.scale.item() == pytest.approx(0.1)
    assert torch.equal(ve.layer_scales, torch.ones(2)) and ve.layers == (2, 3)


def test_rope_dims_come_from_config(monkeypatch):
    """Partial NTK RoPE of dims 4 in heads of 8: keys rotate with the scaled base, dims 4..7 pass through."""
    cfg = tiny(model_dim=32, attention=AttentionConfig(rope=RopeConfig(dims=4, ntk_reference_len=8)))
    attn = randomize(_attn(cfg))
    x = torch.randn(1, 16, 32)
    keys = []
    attn.c_k.register_forward_hook(lambda m, a, out: keys.append(out))
    k = _sdpa_inputs(attn, x, {}, monkeypatch)[1]
    raw = F.rms_norm(keys[0].view(1, 16, 2, 8), (8,))
    expected = rope(4, rope_base(10000.0, 4, 16, 8))(raw)
    assert torch.allclose(k, expected, atol=1e-5)
    assert torch.equal(k[..., 4:], raw[..., 4:]) and not torch.allclose(k, rope(4)(raw), atol=1e-3)
