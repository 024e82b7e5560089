"""The official baseline (spec §1.5): exact size, names, output contract, identity at init, gradients."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from golf.model import ArchConfig, build_model, count_parameters
from tests.model.lib import blocks_recorder, build, randomize, tiny

OFFICIAL_BLOCK_NAMES = {
    "attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight", "attn.q_gain",
    "mlp.fc.weight", "mlp.proj.weight", "attn_scale", "mlp_scale", "resid_mix",
}


def test_full_size_has_exactly_the_official_parameter_count():
    with torch.device("meta"):
        model = build_model(ArchConfig())
    counts = count_parameters(model)
    assert counts["total"] == 17_059_912
    # 1024 x 512 embedding; 9 blocks of 786,432 + 8 + 1,048,576 + 2,048; 4 skip weights of 512
    assert counts == {"total": 17_059_912, "tok_emb": 524_288, "blocks": 9 * 1_837_064, "skip_weights": 2_048}


def test_parameter_names_and_shapes_are_the_official_ones():
    with torch.device("meta"):
        model = build_model(ArchConfig())
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}
    expected = {"tok_emb.weight": (1024, 512), "skip_weights": (4, 512)}
    for i in range(9):
        expected.update({
            f"blocks.{i}.attn.c_q.weight": (512, 512), f"blocks.{i}.attn.c_k.weight": (256, 512),
            f"blocks.{i}.attn.c_v.weight": (256, 512), f"blocks.{i}.attn.proj.weight": (512, 512),
            f"blocks.{i}.attn.q_gain": (8,), f"blocks.{i}.mlp.fc.weight": (1024, 512),
            f"blocks.{i}.mlp.proj.weight": (512, 1024), f"blocks.{i}.attn_scale": (512,),
            f"blocks.{i}.mlp_scale": (512,), f"blocks.{i}.resid_mix": (2, 512),
        })
    assert shapes == expected
    assert {n.split(".", 2)[2] for n in shapes if n.startswith("blocks.")} == OFFICIAL_BLOCK_NAMES


def test_init_values():
    model = build(tiny(num_layers=3))
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Linear))
    for b in model.blocks:
        assert torch.equal(b.attn.q_gain, torch.full((4,), 1.5))
        assert torch.equal(b.resid_mix, torch.stack([torch.ones(16), torch.zeros(16)]))
        assert torch.equal(b.attn_scale, torch.ones(16)) and torch.equal(b.mlp_scale, torch.ones(16))
        assert not b.attn.proj.weight.any() and not b.mlp.proj.weight.any()
        assert b.attn.c_q.weight.abs().sum() > 0
    assert torch.equal(model.skip_weights, torch.ones(1, 16))
    # N(0, 0.005^2) tied embedding (4096 draws: the sample std is within a few percent)
    big = build(tiny(vocab_size=256))
    assert abs(big.tok_emb.weight.std().item() - 0.005) < 0.0003


def test_output_shape_dtype_and_softcap():
    model = randomize(build(tiny()))
    with torch.no_grad():
        model.tok_emb.weight.mul_(1000.0)  # huge logits before the cap
    logits = model(torch.randint(0, 32, (2, 12)))
    assert logits.shape == (2, 12, 32) and logits.dtype == torch.float32
    assert logits.abs().max() <= 30.0
    assert logits.abs().max() > 29.0


def test_bf16_autocast_still_returns_float32_logits():
    model = randomize(build(tiny()))
    ids = torch.randint(0, 32, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(ids)
    assert low.dtype == torch.float32
    assert torch.allclose(low, model(ids), atol=0.1)


def test_blocks_are_identity_at_init_and_skips_double_the_stream():
    """Zero output projections and resid_mix [1; 0]: every block returns its input. The U-Net then adds
    each encoder output (all equal to x0) once per skip: L=4 (E=2) ends at x0 + x0 + x0 = 3 x0, and the
    final RMSNorm maps it back to x0, so logits = cap * tanh(x0 E^T / cap) with x0 = RMSNorm(E[ids])."""
    model = build(tiny())
    ids = torch.randint(0, 32, (2, 10))
    rec = blocks_recorder(model)
    logits = model(ids)
    x0 = F.rms_norm(model.tok_emb.weight[ids], (16,))
    for _, args, out in rec.calls:
        assert torch.equal(out, args[0])
    inputs = [args[0] for _, args, _ in rec.calls]
    assert torch.allclose(inputs[0], x0) and torch.allclose(inputs[1], x0)
    assert torch.allclose(inputs[2], 2 * x0)  # the first decoder block's skip is its own input
    assert torch.allclose(inputs[3], 3 * x0)
    expected = 30.0 * torch.tanh(F.linear(F.rms_norm(3 * x0, (16,)), model.tok_emb.weight) / 30.0)
    assert torch.allclose(logits, expected, atol=1e-6)


def test_gradient_reaches_every_parameter():
    model = build(tiny(num_layers=5))
    with torch.no_grad():  # non-zero output projections, so every upstream weight is on a live path
        for b in model.blocks:
            b.attn.proj.weight.normal_(std=0.1)
            b.mlp.proj.weight.normal_(std=0.1)
    ids = torch.randint(0, 32, (2, 10))
    F.cross_entropy(model(ids).flatten(0, 1), torch.randint(0, 32, (20,))).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_causal():
    model = randomize(build(tiny()))
    ids = torch.randint(0, 32, (2, 16))
    changed = ids.clone()
    changed[:, 9] = (ids[:, 9] + 1) % 32
    a, b = model(ids), model(changed)
    assert torch.equal(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9], b[:, 9])


def test_untied_head_is_zero_init_lm_head():
    model = build(tiny(tie_embeddings=False))
    assert tuple(model.lm_head.weight.shape) == (32, 16) and not model.lm_head.weight.any()
    assert torch.equal(model(torch.randint(0, 32, (1, 5))), torch.zeros(1, 5, 32))


def test_fullgraph_trace():
    model = randomize(build(tiny()))
    ids = torch.randint(0, 32, (2, 8))
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(ids), model(ids))


# a name each technique's code cannot do without (parameters, helpers, per-layer flags)
TECHNIQUE_NAMES = r"xsa|exclusive_self|smear|bigram|trigram|pre_enrich|ve_shared|vr_lambda|v_first|attn_gate|" \
                  r"skip_gates|cat_attn|parallel|recycle|backout|set_topology|orthogonal|overtone|rope_base|bfloat16"


@pytest.mark.parametrize("experiment,present", [
    ("baseline", set()),
    ("pr1493", {"xsa", "exclusive_self", "parallel", "skip_gates", "set_topology", "orthogonal", "bfloat16"}),
])
def test_the_specialised_model_names_only_the_recipes_techniques(experiment, present):
    """The kernel folded against a recipe (golf.specialise) keeps the code of its techniques and no other."""
    from golf.config.validate import load_config
    from golf.specialise import specialise
    from tests.helpers import compose_config

    source = specialise(load_config(compose_config([f"experiment={experiment}"])), {"build_gpt", "build_switch"})
    assert {m.lower() for m in re.findall(TECHNIQUE_NAMES, source, re.IGNORECASE)} == present
