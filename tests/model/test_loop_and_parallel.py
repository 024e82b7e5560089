"""Depth loop switched on mid-run and parallel residuals (PR #1493), against the frontier spec's
hand-written orders and skip table (§3.7) and the parallel block formula (§3.3, §3.8)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from golf.config.errors import ConfigError
from golf.kernel.attention import rotary
from golf.kernel.depth import build_switch, depth_steps
from golf.model import build_model
from golf.model.config import (
    AttentionConfig,
    LoopConfig,
    MLPActivation,
    ParallelResidualConfig,
    RopeConfig,
    validate_arch,
)
from tests.model.lib import NARROW, Recorder, assert_causal, blocks_recorder, build, preset, randomize, tiny

PLAIN, LOOPED = 0, 1  # the model's topologies
ENCODER_LOOPED = [0, 1, 2, 3, 4, 5, 3, 4]
DECODER_LOOPED = [5, 3, 4, 5, 6, 7, 8, 9, 10]


@pytest.fixture(scope="module")
def narrow_cfg():
    return preset("pr1493", NARROW)


def test_topologies_match_the_spec(narrow_cfg):
    (plain, looped), num_skips = depth_steps(narrow_cfg)
    assert num_skips == 8  # min(|enc|, |dec|) of the looped lists
    assert [s[0] for s in looped] == ENCODER_LOOPED + DECODER_LOOPED and [s[0] for s in plain] == list(range(11))
    # decoder slot j merges skip row j (spec §3.7 table): rows 0..4 before the switch, 0..7 after
    assert [s[1] for s in plain[5:]] == [0, 1, 2, 3, 4, None]
    assert [s[1] for s in looped[8:]] == [0, 1, 2, 3, 4, 5, 6, 7, None]
    assert [s[2] for s in plain[:5]] == [True] * 5 and [s[2] for s in looped[:8]] == [True] * 8  # every encoder output


def test_block_order_before_and_after_the_switch(narrow_cfg):
    model = build(narrow_cfg)
    assert model.topology == LOOPED  # built as exported and evaluated
    ids = torch.randint(0, 64, (1, 6))
    for topology, order in ((PLAIN, list(range(11))), (LOOPED, ENCODER_LOOPED + DECODER_LOOPED)):
        model.set_topology(topology)
        rec = blocks_recorder(model)
        with torch.no_grad():
            model(ids)
        rec.close()
        assert [int(n) for n in rec.names()] == order
        assert list(model.layer_orders()[model.topology]) == order


@pytest.mark.parametrize("topology,pairs", [
    # (decoder slot j = skip row j, index of the encoder application whose output it receives)
    (PLAIN, [(0, 4), (1, 3), (2, 2), (3, 1), (4, 0)]),
    (LOOPED, [(0, 7), (1, 6), (2, 5), (3, 4), (4, 3), (5, 2), (6, 1), (7, 0)]),
])
def test_skip_rows_receive_the_spec_encoder_outputs(narrow_cfg, topology, pairs):
    """Spec §3.7: looped slot 1 (block 3, 3rd pass) gets block 3's 2nd pass, slot 4 (block 6) gets block
    3's 1st pass, ...; plain slot 1 (block 6) gets block 3. Checked on the tensors actually merged: with
    the gates shut (sigma = 0) decoder slot j's input is skip_weights[j] * its skip, row j = j + 2."""
    model = randomize(build(narrow_cfg), std=0.1)
    with torch.no_grad():
        model.skip_gates.fill_(-1e4)
        model.skip_weights.copy_(torch.arange(2.0, 10.0)[:, None].expand(8, 64))
    model.set_topology(topology)
    rec = blocks_recorder(model)
    with torch.no_grad():
        model(torch.randint(0, 64, (1, 6)))
    rec.close()
    order = model.layer_orders()[topology]
    half = len(order) // 2
    outputs = [out for _, _, out in rec.calls]
    for j, source in pairs:
        assert torch.equal(rec.calls[half + j][1][0], (j + 2.0) * outputs[source])
    assert len(pairs) == len(order) - half - 1  # the last decoder slot gets no skip
    assert torch.equal(rec.calls[-1][1][0], outputs[-2])
    # the rows mean different blocks after the switch: block 6's skip row moves from 1 to 4
    assert order[half:].index(6) == (1 if topology == PLAIN else 4)


@pytest.mark.parametrize("topology", [PLAIN, LOOPED])
def test_causal_before_and_after_the_switch(narrow_cfg, topology):
    model = randomize(build(narrow_cfg), std=0.1)
    model.set_topology(topology)
    assert_causal(model)


def test_the_two_topologies_compute_different_functions_with_the_same_parameters(narrow_cfg):
    model = randomize(build(narrow_cfg), std=0.1)
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        model.set_topology(PLAIN)
        a = model(ids)
        model.set_topology(LOOPED)
        b = model(ids)
    assert not torch.allclose(a, b)


@pytest.mark.slow
def test_compiled_model_follows_the_switch(narrow_cfg):
    """torch.compile guards on the topology index: each topology is its own graph, none is stale."""
    model = randomize(build(narrow_cfg), std=0.1)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    ids = torch.randint(0, 64, (1, 8))
    with torch.no_grad():
        for topology in (PLAIN, LOOPED, PLAIN):
            model.set_topology(topology)
            assert torch.allclose(compiled(ids), model(ids), atol=1e-6)


# ----------------------------------------------------------------------------- the controller


def _loop_model(switch_at=0.35):
    cfg = preset("pr1493", NARROW + [f"arch.depth.loop.switch_at={switch_at}"])
    return build(cfg), cfg


def test_switch_happens_at_the_first_step_whose_clock_reaches_the_fraction():
    model, cfg = _loop_model(0.35)
    switch = build_switch(model, cfg)
    switch.begin()
    assert model.topology == PLAIN and switch.switch_step is None
    # the agreed clock before each step (seconds of a 100 s cap): 0.35 * 100 = 35 s is first reached at step 4
    clocks = [0.0, 10.0, 20.0, 34.999, 35.0, 36.0, 50.0]
    switched = [switch.update(step, c, 100.0, 10_000) for step, c in enumerate(clocks)]
    assert switched == [False, False, False, False, True, False, False]
    assert switch.switch_step == 4 and model.topology == LOOPED
    # spec §3.7: 0.35 of 588 s = 205.8 s
    model2, _ = _loop_model(0.35)
    s2 = build_switch(model2, cfg)
    s2.begin()
    assert not s2.update(2016, 205.79, 588.0, 20000) and s2.update(2017, 205.8, 588.0, 20000)


def test_switch_without_a_cap_counts_iterations_and_zero_means_looped_from_the_start():
    model, cfg = _loop_model(0.5)
    switch = build_switch(model, cfg)
    switch.begin()
    assert [switch.update(s, 0.0, None, 10) for s in range(7)] == [False] * 5 + [True, False]
    always, cfg0 = _loop_model(0.0)
    s0 = build_switch(always, cfg0)
    assert list(s0.warmup_phases()) == ["looped"]  # one graph to compile
    s0.begin()
    assert always.topology == LOOPED and s0.switch_step == 0 and not s0.update(0, 0.0, 100.0, 10)


def test_warmup_compiles_both_topologies_then_training_starts_plain_and_ends_looped():
    model, cfg = _loop_model()
    switch = build_switch(model, cfg)
    seen = []
    for phase in switch.warmup_phases():
        seen.append((phase, model.topology))
    assert seen == [("plain", PLAIN), ("looped", LOOPED)]
    switch.begin()
    assert model.topology == PLAIN
    switch.finish()  # a run stopped before the switch still exports and evaluates the looped model
    assert model.topology == LOOPED


def test_switch_state_resumes():
    model, cfg = _loop_model()
    switch = build_switch(model, cfg)
    switch.begin()
    switch.update(3, 99.0, 100.0, 10)
    state = switch.state_dict()
    other, _ = _loop_model()
    resumed = build_switch(other, cfg)
    resumed.begin()
    resumed.load_state_dict(state)
    assert resumed.switch_step == 3 and other.topology == LOOPED
    fresh, _ = _loop_model()
    before = build_switch(fresh, cfg)
    before.load_state_dict({"switch_step": None})
    assert fresh.topology == PLAIN


def test_no_loop_means_a_no_op_switch():
    cfg = tiny()
    model = build(cfg)
    switch = build_switch(model, cfg)
    assert list(switch.warmup_phases()) == ["static"]
    switch.begin()
    assert not switch.update(0, 1e9, 1.0, 1) and switch.switch_step is None
    switch.finish()
    switch.load_state_dict(switch.state_dict())
    assert model.topology == 0 and model.layer_orders() == [(0, 1, 2, 3)]


@pytest.mark.parametrize("change,key", [
    (dict(layers="3,5"), "arch.depth.loop.layers"),
    (dict(layers="5,4"), "arch.depth.loop.layers"),
    (dict(layers="3,11"), "arch.depth.loop.layers"),
    (dict(extra_passes=0), "arch.depth.loop.extra_passes"),
    (dict(switch_at=1.0), "arch.depth.loop.switch_at"),
])
def test_bad_loop_settings_are_refused_by_key(change, key):
    cfg = tiny(num_layers=11)
    cfg = dataclasses.replace(cfg, depth=dataclasses.replace(cfg.depth, loop=LoopConfig(**change)))
    with pytest.raises(ConfigError) as err:
        validate_arch(cfg)
    assert err.value.key == key


def test_loop_refuses_a_fixed_encoder_split():
    cfg = tiny(num_layers=11)
    cfg = dataclasses.replace(cfg, depth=dataclasses.replace(cfg.depth, loop=LoopConfig(), encoder_layers=4))
    with pytest.raises(ConfigError, match="arch.depth.encoder_layers"):
        validate_arch(cfg)


# ----------------------------------------------------------------------------- parallel residuals


def test_parallel_block_output_by_hand():
    cfg = tiny(num_layers=2)
    cfg = dataclasses.replace(cfg, residual=dataclasses.replace(cfg.residual, ln_scale=True,
                                                                parallel=ParallelResidualConfig(layers="1")),
                              mlp=dataclasses.replace(cfg.mlp, activation=MLPActivation.leaky_relu2))
    model = randomize(build_model(cfg), std=0.3)
    block = model.blocks[1]
    assert block.parallel and not model.blocks[0].parallel
    torch.manual_seed(1)
    x, x0 = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    with torch.no_grad():
        m0, m1 = block.resid_mix
        x_in = m0 * x + m1 * x0
        c = 1 / 2 ** 0.5  # LN scale of physical layer 1
        z = F.rms_norm(x_in, (16,)) * c
        attn = block.attn(z, {})
        u = z @ block.mlp.fc.weight.T
        mlp = torch.where(u >= 0, u ** 2, 0.25 * u ** 2) @ block.mlp.proj.weight.T  # LeakyReLU(0.5)²
        expected = x_in + block.attn_scale * attn + block.mlp_scale * mlp
        out = block(x, x0, {})
        # the sequential form reads the stream after attention for its MLP: a different number
        h = x_in + block.attn_scale * attn
        sequential = h + block.mlp_scale * block.mlp(F.rms_norm(h, (16,)) * c)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, sequential, atol=1e-3)


def test_parallel_block_without_ln_scale():
    cfg = tiny(num_layers=1)
    cfg = dataclasses.replace(cfg, residual=dataclasses.replace(cfg.residual, parallel=ParallelResidualConfig(layers="all")))
    model = randomize(build_model(cfg), std=0.3)
    block = model.blocks[0]
    x, x0 = torch.randn(1, 4, 16), torch.randn(1, 4, 16)
    with torch.no_grad():
        x_in = block.resid_mix[0] * x + block.resid_mix[1] * x0
        z = F.rms_norm(x_in, (16,))
        expected = x_in + block.attn_scale * block.attn(z, {}) + block.mlp_scale * block.mlp(z)
        torch.testing.assert_close(block(x, x0, {}), expected)


def test_parallel_residuals_change_no_parameter_count(narrow_cfg):
    off = dataclasses.replace(narrow_cfg, residual=dataclasses.replace(narrow_cfg.residual, parallel=None))
    assert sum(p.numel() for p in build(off).parameters()) == sum(p.numel() for p in build(narrow_cfg).parameters())
    assert [b.parallel for b in build(narrow_cfg).blocks] == [False] * 7 + [True] * 4


def test_pr1493_plan_attention_and_mlp(narrow_cfg):
    model = build(narrow_cfg)
    assert all(b.attn.xsa for b in model.blocks) and narrow_cfg.attention.xsa.value == "raw"  # XSA on all 11, raw
    assert all(torch.all(b.attn.q_gain == 5.25) for b in model.blocks)
    assert narrow_cfg.mlp.activation.value == "leaky_relu2" and narrow_cfg.mlp.negative_slope == 0.5
    full = preset("pr1493")
    assert full.mlp.mult * full.model_dim == 2048 and full.attention.rope.dims == 16
    assert [round(b.ln_scale or 1.0, 4) for b in model.blocks][:4] == [1.0, 0.7071, 0.5774, 0.5]
    assert model.skip_weights.shape[0] == 8 and model.skip_gates.shape[0] == 8


def test_recorder_sees_repeated_blocks_share_weights(narrow_cfg):
    model = randomize(build(narrow_cfg), std=0.1)
    ids = torch.randint(0, 64, (1, 6))
    model(ids).logsumexp(-1).mean().backward()
    # gradients of all three passes accumulate into the shared blocks 3..5: every parameter is trained
    assert all(p.grad is not None for p in model.parameters())
    rec = Recorder({"3": model.blocks[3]})
    with torch.no_grad():
        model(ids)
    rec.close()
    assert rec.names() == ["3", "3", "3"]


# ----------------------------------------------------------------------------- the record's dtypes


def test_bf16_embedding_parameter_and_stream(narrow_cfg):
    assert narrow_cfg.embedding_dtype == "bfloat16"
    model = randomize(build(narrow_cfg), std=0.1)
    assert model.tok_emb.weight.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if n != "tok_emb.weight")
    seen = []
    hook = model.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].dtype))
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        plain = model(ids)  # without autocast: the stream is upcast, the head is fp32
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(ids)      # under autocast the stream the bf16 embedding starts is bf16, as the record
    hook.remove()
    assert plain.dtype == torch.float32 and seen == [torch.float32, torch.bfloat16]
    # the fp32 run sees the bf16-rounded embedding, exactly
    emb = model.tok_emb.weight[ids].float()
    torch.testing.assert_close(F.rms_norm(emb, (emb.size(-1),)), F.rms_norm(model.tok_emb(ids).float(), (64,)))


def test_bf16_rope_frequencies_by_hand():
    def rope(**kw):
        cfg = tiny(attention=AttentionConfig(rope=RopeConfig(dims=16, **kw)))
        return lambda x: rotary(x, cfg)

    x = torch.zeros(1, 2049, 1, 16)
    x[..., 0] = 1.0  # the first pair (dims 0, 8) rotates with the fastest frequency 10000^0 = 1 (exact)
    x[..., 7] = 1.0  # the eighth pair (7, 15) with 10000^(-14/16), which bf16 rounds
    out = rope(freq_dtype="bfloat16")(x)
    out32 = rope()(x)
    w = torch.tensor(10000.0 ** (-14 / 16)).bfloat16().float().item()
    p = 2048
    assert out[0, p, 0, 7].item() == pytest.approx(torch.cos(torch.tensor(p * w)).item(), abs=1e-5)
    assert out[0, p, 0, 15].item() == pytest.approx(-torch.sin(torch.tensor(p * w)).item(), abs=1e-5)
    assert abs(out[0, p, 0, 7] - out32[0, p, 0, 7]) > 1e-4  # the rounding moves the angle at p = 2048
    torch.testing.assert_close(out[..., 0], out32[..., 0])


def test_bad_dtype_is_refused_by_key():
    with pytest.raises(ConfigError, match="arch.embedding_dtype"):
        validate_arch(tiny(embedding_dtype="float16"))
