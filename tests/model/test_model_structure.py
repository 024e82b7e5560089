"""Residual stream, skips and depth (spec §1.5, §2.6, §2.7, §2.11-2.15)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from golf.kernel.model import MLP, Block
from golf.model.config import (
    AttentionConfig,
    BackoutConfig,
    BackoutSource,
    CatalyticConfig,
    DepthConfig,
    EncoderRecurrenceConfig,
    MLPActivation,
    MLPConfig,
    RecycleConfig,
    ResidMixInit,
    ResidualConfig,
    SkipConfig,
    SkipKind,
    ValueEmbedConfig,
)
from tests.model.lib import blocks_recorder, build, randomize, tiny


def _run(model, T=6):
    ids = torch.randint(0, model.tok_emb.num_embeddings, (2, T))
    rec = blocks_recorder(model)
    logits = model(ids)
    rec.close()
    return ids, rec, logits


# ----------------------------------------------------------------------------- U-Net skips


def test_plain_skips_pair_decoder_i_with_encoder_e_minus_1_minus_i():
    model = randomize(build(tiny(num_layers=5)))  # E = 2: 2 skips, the last decoder block gets none
    assert tuple(model.skip_weights.shape) == (2, 16)
    _, rec, _ = _run(model)
    (_, _, out0), (_, _, out1), (_, in2, out2), (_, in3, out3), (_, in4, _) = rec.calls
    w = model.skip_weights
    assert torch.allclose(in2[0], out1 + w[0] * out1)  # first decoder: its own input is the skip
    assert torch.allclose(in3[0], out2 + w[1] * out0)
    assert torch.equal(in4[0], out3)


def test_gated_skips():
    model = randomize(build(tiny(skips=SkipConfig(kind=SkipKind.gated))))
    fresh = build(tiny(skips=SkipConfig(kind=SkipKind.gated)))
    assert not fresh.skip_gates.any() and torch.equal(fresh.skip_weights, torch.ones(2, 16))
    _, rec, _ = _run(model)
    (_, _, out0), (_, _, out1), (_, in2, out2), (_, in3, _) = rec.calls
    g = torch.sigmoid(model.skip_gates)
    w = model.skip_weights
    assert torch.allclose(in2[0], g[0] * out1 + (1 - g[0]) * (w[0] * out1), atol=1e-6)
    assert torch.allclose(in3[0], g[1] * out2 + (1 - g[1]) * (w[1] * out0), atol=1e-6)


def test_gated_skip_is_a_half_blend_at_init():
    model = build(tiny(skips=SkipConfig(kind=SkipKind.gated)))
    _, rec, _ = _run(model)
    x0 = rec.calls[0][1][0]
    assert torch.allclose(rec.calls[2][1][0], x0)  # 0.5 x + 0.5 * 1 * skip with x = skip = x0: no doubling


def test_no_skips_is_absent():
    model = build(tiny(skips=None))
    assert not any("skip" in n for n, _ in model.named_parameters())
    _, rec, _ = _run(model)
    assert all(torch.equal(rec.calls[i + 1][1][0], rec.calls[i][2]) for i in range(3))


# ----------------------------------------------------------------------------- block parts


def _block(cfg, layer=0, seed=0):
    torch.manual_seed(seed)
    return randomize(Block(cfg, layer), seed=seed)


def test_block_update_by_hand():
    cfg = tiny()
    block = _block(cfg)
    x, x0 = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    m = block.resid_mix
    h = m[0] * x + m[1] * x0
    h = h + block.attn_scale * block.attn(F.rms_norm(h, (16,)), {})
    h = h + block.mlp_scale * block.mlp(F.rms_norm(h, (16,)))
    assert torch.allclose(block(x, x0, {}), h, atol=1e-6)


def test_catalytic_is_a_second_per_dim_gain():
    cfg = tiny(residual=ResidualConfig(catalytic=CatalyticConfig()))
    block = _block(cfg)
    assert torch.equal(Block(cfg, 0).cat_attn, torch.ones(16))
    plain = _block(tiny())
    plain.load_state_dict({k: v for k, v in block.state_dict().items() if not k.startswith("cat_")})
    with torch.no_grad():
        plain.attn_scale.mul_(block.cat_attn)
        plain.mlp_scale.mul_(block.cat_mlp)
    x, x0 = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    assert torch.allclose(block(x, x0, {}), plain(x, x0, {}), atol=1e-6)


def test_ln_scale_damps_both_norm_outputs():
    cfg = tiny(residual=ResidualConfig(ln_scale=True))
    block = _block(cfg, layer=3)
    assert block.ln_scale == 0.5  # 1 / sqrt(3 + 1)
    seen = []
    block.attn.c_q.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    block.mlp.fc.register_forward_pre_hook(lambda m, a: seen.append(a[0]))
    block(torch.randn(2, 5, 16), torch.randn(2, 5, 16), {})
    for t in seen:
        assert torch.allclose(t.pow(2).mean(-1).sqrt(), torch.full((2, 5), 0.5), atol=1e-4)


def test_phase_transition_resid_mix():
    model = build(tiny(num_layers=10, residual=ResidualConfig(mix_init=ResidMixInit.phase)))
    for i, phi in ((0, 1 / (1 + math.exp(1.5))), (9, 1 / (1 + math.exp(-1.5))), (3, 1 / (1 + math.exp(-3 * (3 / 9 - 0.5))))):
        m = model.blocks[i].resid_mix
        assert torch.allclose(m[0], torch.full((16,), phi)) and torch.allclose(m[1], torch.full((16,), 1 - phi))
    assert model.blocks[0].resid_mix[0, 0].item() == pytest.approx(0.182426, abs=1e-6)


def test_backout_encoder_output():
    cfg = tiny(backout=BackoutConfig(source=BackoutSource.encoder_output, lambda_init=0.0))
    assert build(cfg).backout_lambda.item() == 0.0
    model = randomize(build(cfg))
    ids, rec, logits = _run(model)
    h = rec.calls[3][2] - model.backout_lambda * rec.calls[1][2]  # block 1 ends the 2-block encoder
    expected = 30 * torch.tanh(F.linear(F.rms_norm(h, (16,)), model.tok_emb.weight) / 30)
    assert torch.allclose(logits, expected, atol=1e-5)


def test_backout_first_decoder_output():
    cfg = tiny(backout=BackoutConfig(source=BackoutSource.first_decoder_output, lambda_init=0.2))
    model = build(cfg)
    assert model.backout_lambda.item() == pytest.approx(0.2)
    randomize(model)
    ids, rec, logits = _run(model)
    h = rec.calls[3][2] - model.backout_lambda * rec.calls[2][2]  # block L//2 = 2, after its skip merge
    expected = 30 * torch.tanh(F.linear(F.rms_norm(h, (16,)), model.tok_emb.weight) / 30)
    assert torch.allclose(logits, expected, atol=1e-5)


# ----------------------------------------------------------------------------- depth


def test_encoder_recurrence():
    cfg = tiny(depth=DepthConfig(encoder_recurrence=EncoderRecurrenceConfig(passes=2)))
    model = randomize(build(cfg))
    _, rec, _ = _run(model)
    assert rec.names() == ["0", "1", "0", "1", "2", "3"]
    calls = rec.calls
    x0 = calls[0][1][1]
    assert all(torch.equal(c[1][1], x0) for c in calls)  # the same x0 in every pass
    assert torch.allclose(calls[2][1][0], F.rms_norm(calls[1][2], (16,)))  # RMSNorm between passes
    w = model.skip_weights
    assert torch.allclose(calls[4][1][0], calls[3][2] + w[0] * calls[3][2])  # skips from the last pass
    assert torch.allclose(calls[5][1][0], calls[4][2] + w[1] * calls[2][2])


def test_recycled_core_order_modulation_and_skips():
    cfg = tiny(num_layers=6, depth=DepthConfig(recycle=RecycleConfig(layers="1,2", repeats=2)),
               attention=AttentionConfig(value_embed=ValueEmbedConfig(dim=8, layers="1")))
    model = build(cfg)
    assert len(model.recycle_mods) == 4
    assert torch.equal(model.recycle_mods[0].scale, torch.ones(16)) and not model.recycle_mods[0].bias.any()
    randomize(model)
    _, rec, _ = _run(model)
    assert rec.names() == ["0", "1", "2", "1", "2", "1", "2", "3", "4", "5"]
    calls = rec.calls
    for j in range(4):  # replay j is preceded by its own modulation x * scale + bias
        mod = model.recycle_mods[j]
        assert torch.allclose(calls[3 + j][1][0], calls[2 + j][2] * mod.scale + mod.bias, atol=1e-6)
    w = model.skip_weights  # the first decoder skip is the encoder output, no longer the decoder's input
    assert torch.allclose(calls[7][1][0], calls[6][2] + w[0] * calls[2][2])
    assert torch.allclose(calls[8][1][0], calls[7][2] + w[1] * calls[1][2])
    value_inputs = [c[1][3] is not None for c in calls]  # VE on layer 1, not in its replayed passes
    assert value_inputs == [False, True, False, False, False, False, False, False, False, False]


# ----------------------------------------------------------------------------- MLP


@pytest.mark.parametrize("activation,expected", [
    (MLPActivation.relu2, [0.0, 4.0, 0.25]),
    (MLPActivation.leaky_relu2, [0.25, 4.0, 0.25]),  # leaky_relu(-1, 0.5)^2 = 0.25
    (MLPActivation.gelu, [F.gelu(torch.tensor(-1.0)).item(), F.gelu(torch.tensor(2.0)).item(),
                          F.gelu(torch.tensor(0.5)).item()]),
])
def test_mlp_activations(activation, expected):
    mlp = MLP(tiny(model_dim=3, num_heads=1, num_kv_heads=1, mlp=MLPConfig(activation=activation, mult=1.0)))
    with torch.no_grad():
        mlp.fc.weight.copy_(torch.eye(3))
        mlp.proj.weight.copy_(torch.eye(3))
    assert torch.allclose(mlp(torch.tensor([[-1.0, 2.0, 0.5]])), torch.tensor([expected]))


def test_swiglu_and_hidden_sizes():
    full = dict(model_dim=512, num_heads=8, num_kv_heads=4)
    swiglu = MLP(tiny(**full, mlp=MLPConfig(activation=MLPActivation.swiglu, mult=3.0)))
    assert tuple(swiglu.gate.weight.shape) == (1024, 512) and tuple(swiglu.proj.weight.shape) == (512, 1024)
    assert sum(p.numel() for p in swiglu.parameters()) == 2 * 512 * 1536  # parameter-matched to a 3x MLP
    leaky = MLP(tiny(**full, mlp=MLPConfig(activation=MLPActivation.leaky_relu2, mult=3.5)))
    assert tuple(leaky.fc.weight.shape) == (1792, 512)
    explicit = MLP(tiny(**full, mlp=MLPConfig(activation=MLPActivation.swiglu, hidden=1000)))
    assert tuple(explicit.fc.weight.shape) == (1000, 512)
    mlp = MLP(tiny(model_dim=2, num_heads=1, num_kv_heads=1, mlp=MLPConfig(activation=MLPActivation.swiglu, mult=1.5)))
    with torch.no_grad():  # h = 2 * 1.5 * 2 / 3 = 2
        mlp.gate.weight.copy_(torch.eye(2))
        mlp.fc.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
        mlp.proj.weight.copy_(torch.eye(2))
    x = torch.tensor([[1.0, -1.0]])
    assert torch.allclose(mlp(x), torch.tensor([[F.silu(torch.tensor(1.0)) * 2, F.silu(torch.tensor(-1.0)) * -3]]))
