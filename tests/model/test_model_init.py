"""Initialisation schemes (spec §2.11): each seed's orthogonal selection rule, Overtone, muP, zero outputs."""

from __future__ import annotations

import math

import pytest
import torch

from golf.kernel.model import orthogonal_targets, overtone_
from golf.model import build_model
from golf.model.config import (
    AttentionConfig,
    AttnGateConfig,
    BigramConfig,
    EmbedInit,
    InitConfig,
    InputConfig,
    OrthoRule,
    ValueEmbedConfig,
)
from tests.model.lib import build, preset, tiny


def _targets(name: str) -> set[str]:
    cfg = preset(name)
    with torch.device("meta"):
        model = build_model(cfg)
    return {n for n, _ in orthogonal_targets(model, cfg)}


def _strip(names: set[str]) -> set[str]:
    return {n.split(".", 2)[2] if n.startswith("blocks.") else n for n in names}


def test_rule_of_295_selects_every_matrix_above_65536_elements():
    names = _targets("pr295")
    # bigram.proj has exactly 65,536 elements and stays zero; the table (10240 x 128) is orthogonal
    assert _strip(names) == {"tok_emb.weight", "bigram.embed.weight", "attn.c_q.weight", "attn.c_k.weight",
                             "attn.c_v.weight", "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"}


def test_rule_of_344_selects_every_linear_but_the_output_projections():
    assert _strip(_targets("pr344")) == {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                                         "attn.attn_gate.weight", "mlp.fc.weight",
                                         "bigram.proj.weight", "trigram.proj.weight"}


def test_rule_of_1573_skips_the_8_row_gate():
    assert _strip(_targets("pr1573")) == {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                                          "mlp.fc.weight", "bigram.proj.weight", "ve_shared.proj.weight"}


def test_rule_of_507_selects_linears_with_min_dim_above_1():
    assert _strip(_targets("unet11")) == {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                                          "mlp.gate.weight", "mlp.fc.weight", "bigram.proj.weight"}


def _orthogonal(w: torch.Tensor) -> bool:
    small = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
    return torch.allclose(small, torch.eye(small.shape[0]), atol=1e-5)


@pytest.mark.parametrize("rule", list(OrthoRule))
def test_init_applies_the_rule_and_keeps_outputs_zero(rule):
    cfg = tiny(model_dim=64, num_heads=4, num_kv_heads=2,
               attention=AttentionConfig(gate=AttnGateConfig()),
               input=InputConfig(bigram=BigramConfig(buckets=1024, dim=96)),
               init=InitConfig(orthogonal=rule))
    model = build(cfg)
    selected = {n for n, _ in orthogonal_targets(model, cfg)}
    assert selected
    for name, p in model.named_parameters():
        if name.endswith("proj.weight") and not name.startswith("bigram"):
            assert not p.any(), name
        elif name in selected and name != "tok_emb.weight":
            assert _orthogonal(p.detach()), name


def test_gate_weight_is_orthogonal_only_under_the_all_linears_rule():
    att = AttentionConfig(gate=AttnGateConfig())
    zero = build(tiny(attention=att, init=InitConfig(orthogonal=OrthoRule.linears_dims_ge_64)))
    ortho = build(tiny(attention=att, init=InitConfig(orthogonal=OrthoRule.all_linears)))
    assert not zero.blocks[0].attn.attn_gate.weight.any()
    assert _orthogonal(ortho.blocks[0].attn.attn_gate.weight.detach())
    assert torch.equal(ortho.blocks[0].attn.attn_gate.bias, torch.full((4,), 4.0))


def test_overtone_spectrum():
    w = torch.randn(32, 8) * 0.005
    U0, S0, _ = torch.linalg.svd(w, full_matrices=False)
    overtone_(w)
    U, S, _ = torch.linalg.svd(w, full_matrices=False)
    assert torch.allclose(S, S0[0] * torch.arange(1, 9).float() ** -0.5, rtol=1e-4)
    assert torch.allclose((U[:, 0] @ U0[:, 0]).abs(), torch.tensor(1.0), atol=1e-4)  # top direction kept
    model = build(tiny(vocab_size=64, init=InitConfig(embed=EmbedInit.overtone)))
    S = torch.linalg.svdvals(model.tok_emb.weight.detach())
    assert torch.allclose(S / S[0], torch.arange(1, 17).float() ** -0.5, rtol=1e-4)


def test_mup_scales_only_non_zero_projections():
    ic = InputConfig(bigram=BigramConfig(buckets=64, dim=8))
    att = AttentionConfig(value_embed=ValueEmbedConfig(dim=8, layers="last:1"))
    rule = OrthoRule.all_linears
    plain = build(tiny(input=ic, attention=att, init=InitConfig(orthogonal=rule)), seed=3)
    scaled = build(tiny(input=ic, attention=att, init=InitConfig(orthogonal=rule, mup_proj_scale=True)), seed=3)
    factor = 1 / math.sqrt(2 * 4)
    for name in ("bigram.proj.weight", "ve_shared.proj.weight"):
        a, b = plain.get_parameter(name), scaled.get_parameter(name)
        assert a.any() and torch.allclose(b, a * factor)
    assert torch.equal(plain.blocks[0].attn.c_q.weight, scaled.blocks[0].attn.c_q.weight)
    assert not scaled.blocks[0].attn.proj.weight.any()


def test_default_linear_init_is_kaiming_uniform():
    w = build(tiny(model_dim=64, num_heads=4, num_kv_heads=2)).blocks[0].attn.c_q.weight
    assert w.abs().max() <= 1 / math.sqrt(64) and w.abs().max() > 0.9 / math.sqrt(64)
