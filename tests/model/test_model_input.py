"""The input stage: hash buckets, SmearGate variants, pre-enrichment, placements (spec §2.1-2.3, §2.16)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from golf.kernel.inputs import (
    HalfBlendSmear,
    PassThroughSmear,
    ScalarGateSmear,
    bigram_mult_buckets,
    bigram_xor_buckets,
    trigram_xor_buckets,
)
from golf.model.config import (
    BigramConfig,
    BigramForm,
    InputConfig,
    PreEnrichConfig,
    ProjInit,
    SmearConfig,
    SmearVariant,
    TrigramConfig,
)
from tests.model.lib import blocks_recorder, build, randomize, tiny

IDS = torch.tensor([[5, 7, 3]])

# ----------------------------------------------------------------------------- hashes


def test_bigram_hash_a_multiplicative():
    # (prev * 92821 + cur) mod 4096 with prev_0 = token 0:
    #   t0: 5;  t1: 5*92821 + 7 = 464112 = 113*4096 + 1264;  t2: 7*92821 + 3 = 649750 = 158*4096 + 2582
    assert bigram_mult_buckets(IDS, 4096).tolist() == [[5, 1264, 2582]]


def test_bigram_hash_b_xor_with_reserved_bucket():
    # t1: 36313*7 = 254191 = 0x3E0EF, 27191*5 = 135955 = 0x21313, XOR = 0x1F3FC = 127996 = 31*4095 + 1051
    # t2: (36313*3) XOR (27191*7) mod 4095 = 3646;  t0 -> reserved bucket B-1 = 4095
    assert bigram_xor_buckets(IDS, 4096, first_bucket=4095).tolist() == [[4095, 1051, 3646]]
    # per-layer form (#507): same hash, position 0 -> bucket 0
    assert bigram_xor_buckets(IDS, 4096, first_bucket=0).tolist() == [[0, 1051, 3646]]
    # B=2048 (#1573): mod 2047
    assert bigram_xor_buckets(IDS, 2048, first_bucket=2047).tolist() == [[2047, 1082, 1651]]


def test_trigram_hash():
    # t2: 36313*3 = 108939, 27191*7 = 190337, 51497*5 = 257485; XOR of the three = 41927 = 10*4095 + 977
    assert trigram_xor_buckets(IDS, 4096).tolist() == [[4095, 4095, 977]]


def test_hash_is_per_row_and_batched():
    # every row starts afresh: row 2's first position is reserved again, its t1 is row 1's t2 pair (3 after 7),
    # its t2: (36313*5) XOR (27191*3) = 181565 XOR 81573 = 261016 = 63*4095 + 3031
    ids = torch.tensor([[5, 7, 3], [7, 3, 5]])
    assert bigram_xor_buckets(ids, 4096, 4095).tolist() == [[4095, 1051, 3646], [4095, 3646, 3031]]


def test_bigram_module_forms_and_params():
    def params(form, scale):
        model = build(tiny(input=InputConfig(bigram=BigramConfig(form=form, buckets=64, dim=8, scale_init=scale))))
        return {n: tuple(p.shape) for n, p in model.named_parameters() if n.startswith("bigram")}

    base = {"bigram.embed.weight": (64, 8), "bigram.proj.weight": (16, 8)}
    assert params(BigramForm.xor_input, 0.05) == {**base, "bigram.scale": (1,)}
    assert params(BigramForm.mult_input, None) == base
    assert params(BigramForm.xor_per_layer, 0.05) == {**base, "bigram.scale": (4,)}


def test_bigram_input_term_is_added_before_the_norm():
    bc = BigramConfig(form=BigramForm.xor_input, buckets=64, dim=8, scale_init=0.05)
    model = randomize(build(tiny(input=InputConfig(bigram=bc))))
    ids = torch.randint(0, 32, (2, 6))
    rec = blocks_recorder(model)
    model(ids)
    bg = model.bigram
    e = model.tok_emb.weight[ids] + bg.scale * (bg.embed.weight[bigram_xor_buckets(ids, 64, 63)] @ bg.proj.weight.T)
    assert torch.allclose(rec.calls[0][1][1], F.rms_norm(e, (16,)), atol=1e-6)  # x0


def test_per_layer_bigram_is_injected_before_every_block():
    """#507: x <- x + lambda_i * bigram before block i; in the decoder after the skip merge."""
    bc = BigramConfig(form=BigramForm.xor_per_layer, buckets=64, dim=8, scale_init=0.05)
    model = randomize(build(tiny(num_layers=2, input=InputConfig(bigram=bc))))
    ids = torch.randint(0, 32, (2, 6))
    rec = blocks_recorder(model)
    model(ids)
    bg = model.bigram
    emb = bg.embed.weight[bigram_xor_buckets(ids, 64, 0)] @ bg.proj.weight.T
    x0 = F.rms_norm(model.tok_emb.weight[ids], (16,))
    (_, in0, out0), (_, in1, _) = rec.calls
    assert torch.allclose(in0[0], x0 + bg.scale[0] * emb, atol=1e-6)
    merged = out0 + model.skip_weights[0] * out0
    assert torch.allclose(in1[0], merged + bg.scale[1] * emb, atol=1e-6)


def test_bigram_inits():
    mult = build(tiny(input=InputConfig(bigram=BigramConfig(
        form=BigramForm.mult_input, buckets=4096, dim=8, scale_init=None, table_std=0.01, proj_init=ProjInit.default))))
    assert abs(mult.bigram.embed.weight.std().item() - 0.01) < 0.001 and mult.bigram.proj.weight.any()
    xor = build(tiny(input=InputConfig(bigram=BigramConfig(), trigram=TrigramConfig())))
    for m, scale in ((xor.bigram, 0.05), (xor.trigram, 0.03)):
        assert not m.embed.weight.any() and not m.proj.weight.any()
        assert m.scale.item() == torch.tensor(scale).item()


# ----------------------------------------------------------------------------- SmearGate

X = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1)


def test_smear_a_pass_through():
    smear = PassThroughSmear(1)
    assert torch.allclose(torch.sigmoid(smear.gate), torch.tensor(1 / (1 + math.exp(-3.0))))
    with torch.no_grad():
        smear.gate.fill_(math.log(3.0))  # g = 0.75: 0.75 x_t + 0.25 x_{t-1}, x_{-1} = 0
    assert torch.allclose(smear(X).view(3), torch.tensor([0.75, 1.75, 2.75]))


def test_smear_b_half_blend():
    smear = HalfBlendSmear(1)  # g = 0.5 at init: every position an equal mix with its predecessor
    assert torch.allclose(smear(X).view(3), torch.tensor([0.5, 1.5, 2.5]))
    with torch.no_grad():
        smear.gate.fill_(math.log(3.0))  # g = 0.75: 0.25 x_t + 0.75 x_{t-1}
    assert torch.allclose(smear(X).view(3), torch.tensor([0.25, 1.25, 2.25]))


def test_smear_c_scalar_gate():
    smear = ScalarGateSmear(gate_dims=2)
    x = torch.tensor([[0.0, 1.0, 9.0], [1.0, 1.0, 9.0], [2.0, 0.0, 9.0]]).view(1, 3, 3)
    assert torch.equal(smear(x), x)  # w = 0, lambda = 0: identity at init
    with torch.no_grad():
        smear.gate.copy_(torch.tensor([1.0, 0.0]))
        smear.scale.fill_(2.0)
    out = smear(x).view(3, 3)
    g1, g2 = 2 / (1 + math.exp(-1.0)), 2 / (1 + math.exp(-2.0))  # lambda * sigma(w . x_t[:2])
    assert torch.equal(out[0], x[0, 0])
    assert torch.allclose(out[1], torch.tensor([1.0, 1.0, 9.0]) + g1 * torch.tensor([0.0, 1.0, 9.0]))
    assert torch.allclose(out[2], torch.tensor([2.0, 0.0, 9.0]) + g2 * torch.tensor([1.0, 1.0, 9.0]))


def _x0(model, ids):
    rec = blocks_recorder(model)
    model(ids)
    rec.close()
    return rec.calls[0][1][1]


def test_smear_placements():
    ids = torch.randint(0, 32, (2, 6))
    for variant, after_norm in ((SmearVariant.pass_through, False), (SmearVariant.half_blend, True),
                                (SmearVariant.scalar_gate, False)):
        model = randomize(build(tiny(input=InputConfig(smear=SmearConfig(variant=variant, gate_dims=4)))))
        e = model.tok_emb.weight[ids]
        expected = model.smear(F.rms_norm(e, (16,))) if after_norm else F.rms_norm(model.smear(e), (16,))
        assert torch.allclose(_x0(model, ids), expected, atol=1e-6), variant


def test_pre_enrichment_follows_the_smear_gate_without_residual():
    """#187: x0 = RMSNorm(down(GELU(up(smearA(tok_emb + bigram)))))."""
    ic = InputConfig(bigram=BigramConfig(form=BigramForm.mult_input, buckets=64, dim=8, scale_init=None),
                     smear=SmearConfig(variant=SmearVariant.pass_through), pre_enrich=PreEnrichConfig(hidden=24))
    model = randomize(build(tiny(input=ic)))
    assert tuple(model.pre_enrich.up.weight.shape) == (24, 16) and tuple(model.pre_enrich.down.weight.shape) == (16, 24)
    ids = torch.randint(0, 32, (2, 6))
    bg, pe = model.bigram, model.pre_enrich
    e = model.tok_emb.weight[ids] + bg.embed.weight[bigram_mult_buckets(ids, 64)] @ bg.proj.weight.T
    e = model.smear(e)
    enriched = F.gelu(e @ pe.up.weight.T) @ pe.down.weight.T
    assert torch.allclose(_x0(model, ids), F.rms_norm(enriched, (16,)), atol=1e-5)
