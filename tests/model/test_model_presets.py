"""The presets of conf/arch: exact logged sizes, each seed's plan, causality, bf16 and a full-graph trace."""

from __future__ import annotations

import pytest
import torch

from golf.kernel.arch import rope_dims
from golf.model import build_model, count_parameters
from tests.model.lib import NARROW, PRESETS, assert_causal, build, preset, randomize

# small tables for the narrow behavioural tests (the sizes of the real ones are checked above)
SMALL_TABLES = {
    "unet11": ["arch.input.bigram.buckets=64"],
    "pr344": ["arch.input.bigram.buckets=64", "arch.input.trigram.buckets=64"],
    "pr1573": ["arch.input.bigram.buckets=64"],
    "pr187": ["arch.input.bigram.buckets=64"],
    "pr295": ["arch.input.bigram.buckets=64"],
}


def _narrow(name):
    return preset(name, NARROW + SMALL_TABLES.get(name, []))


@pytest.mark.parametrize("name", PRESETS)
def test_full_size_parameter_count(name):
    cfg = preset(name)
    with torch.device("meta"):
        model = build_model(cfg)
    assert count_parameters(model)["total"] == PRESETS[name]
    assert cfg.name == name


def _meta(name):
    with torch.device("meta"):
        return build_model(preset(name))


def _head_ops(attn) -> tuple[str, ...]:
    """The head ops a layer's attention applies to its output, in order."""
    return tuple(n for n, on in (("xsa", getattr(attn, "xsa", False)), ("attn_gate", hasattr(attn, "attn_gate"))) if on)


def _layers(m) -> list[int]:
    return [s[0] for s in m.steps[m.topology]]


def test_unet11_plan():
    m = _meta("unet11")
    assert [_head_ops(b.attn) for b in m.blocks] == [("attn_gate",)] * 7 + [("xsa", "attn_gate")] * 4
    assert [hasattr(b.attn, "vr_lambda") for b in m.blocks] == [False] + [True] * 10
    assert tuple(m.skip_gates.shape) == (5, 512) and tuple(m.bigram.scale.shape) == (11,)
    assert rope_dims(preset("unet11")) == 16 and m.blocks[4].ln_scale == 1 / 5 ** 0.5
    assert _layers(m) == list(range(11))


def test_pr344_plan():
    m = _meta("pr344")
    assert all(_head_ops(b.attn) == ("xsa", "attn_gate") for b in m.blocks)
    assert preset("pr344").attention.rope.ntk_reference_len is None
    assert tuple(m.blocks[0].mlp.fc.weight.shape) == (1792, 512)


def test_pr1573_plan():
    m = _meta("pr1573")
    steps = m.steps[m.topology]
    assert _layers(m) == [0, 1, 2, 3, 4, 5, 3, 4, 6, 7, 8, 9, 10, 11]
    assert [s[5] for s in steps if s[5] is not None] == [0, 1] and len(m.recycle_mods) == 2  # their modulations
    assert m.ve_shared.layers == (10, 11)
    assert [_head_ops(b.attn) for b in m.blocks] == [("attn_gate",)] * 8 + [("xsa", "attn_gate")] * 4
    assert preset("pr1573").attention.rope.ntk_reference_len == 1024


def test_pr187_plan():
    m = _meta("pr187")
    steps = m.steps[m.topology]
    assert _layers(m) == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert [s[4] for s in steps].count(True) == 1 and steps[5][4]  # renorm before the second pass
    assert [s[2] for s in steps] == [False] * 5 + [True] * 5 + [False] * 5  # skips pushed by the last pass
    assert [_head_ops(b.attn) for b in m.blocks] == [()] * 6 + [("xsa",)] * 4


def test_pr295_init():
    m = build(_narrow("pr295"))
    assert m.backout_lambda.item() == pytest.approx(0.2)
    assert m.blocks[0].resid_mix[0, 0].item() == pytest.approx(1 / (1 + 2.718281828 ** 1.5), abs=1e-6)
    assert not m.bigram.proj.weight.any()
    S = torch.linalg.svdvals(m.tok_emb.weight.detach())
    assert torch.allclose(S / S[0], torch.arange(1, 65).float() ** -0.5, rtol=1e-3)


@pytest.mark.parametrize("name", PRESETS)
def test_causal_at_reduced_width(name):
    assert_causal(randomize(build(_narrow(name)), std=0.1))


@pytest.mark.parametrize("name", PRESETS)
def test_bf16_autocast_and_gradients(name):
    model = randomize(build(_narrow(name)), std=0.1)
    ids = torch.randint(0, 64, (2, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(ids)
    assert logits.dtype == torch.float32 and logits.shape == (2, 8, 64)
    logits.logsumexp(-1).mean().backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None}
    # #1573's layer-0 vr_lambda only acts when layer 0 is replayed; its replayed layers are 3 and 4
    assert missing == ({"blocks.0.attn.vr_lambda"} if name == "pr1573" else set())


@pytest.mark.slow
@pytest.mark.parametrize("name", PRESETS)
def test_fullgraph_trace(name):
    # every preset shares GPT.forward's code object: without a reset the ninth preset in one process
    # would meet dynamo's per-code recompile limit, which fullgraph=True turns into a failure
    torch._dynamo.reset()
    model = randomize(build(_narrow(name)), std=0.1)
    ids = torch.randint(0, 64, (2, 8))
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert torch.allclose(compiled(ids), model(ids), atol=1e-6)
