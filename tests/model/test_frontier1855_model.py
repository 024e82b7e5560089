"""PR #1855's model options against hand-computed cases (frontier-1855 spec §3.3, §3.5, §3.8): the
BOS-masked SmearGate, the sparse attention output gate and the two-lane parallel decoder."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from golf.config.errors import ConfigError
from golf.data.tokenizer import BOS_ID
from golf.kernel.inputs import BosMaskedSmear, input_stream
from golf.model.config import ArchConfig, InputConfig, SmearConfig, SmearVariant, validate_arch
from tests.model.lib import build, tiny

BOS = tiny(input=InputConfig(smear=SmearConfig(variant=SmearVariant.scalar_gate_bos, gate_dims=2)))

# ----------------------------------------------------------------------------- SmearGate with the BOS fix (§3.3)

# w = [1, -1] reads x_t[0] - x_t[1] = 0 at every position below: sigma(0) = 1/2, and lambda = 2 makes
# the gate exactly 1, so a smeared position is x_t + x_{t-1} (x_{t-1} un-smeared)
E = torch.tensor([[1.0, 1.0, 0.0], [2.0, 2.0, 1.0], [3.0, 3.0, -1.0], [0.0, 0.0, 5.0]]).view(1, 4, 3)


def _smear(w=(1.0, -1.0), lam=2.0) -> BosMaskedSmear:
    s = BosMaskedSmear(gate_dims=2)
    with torch.no_grad():
        s.gate.copy_(torch.tensor(w))
        s.scale.fill_(lam)
    return s


def test_bos_smear_by_hand():
    ids = torch.tensor([[BOS_ID, 7, BOS_ID, 9]])
    out = _smear()(E, ids != BOS_ID).view(4, 3)
    expected = torch.tensor([[1.0, 1.0, 0.0],    # position 0: untouched
                             [3.0, 3.0, 1.0],    # [2, 2, 1] + [1, 1, 0]
                             [3.0, 3.0, -1.0],   # a BOS: never receives the previous token (unmasked: [5, 5, 0])
                             [3.0, 3.0, 4.0]])   # [0, 0, 5] + the un-smeared [3, 3, -1]
    assert torch.equal(out, expected)
    # without any BOS it is variant C: position 2 then takes [3, 3, -1] + [2, 2, 1]
    plain = _smear()(E, torch.ones(1, 4, dtype=torch.bool)).view(4, 3)
    assert torch.equal(plain[2], torch.tensor([5.0, 5.0, 0.0]))
    # position 0 is untouched whatever its token is
    assert torch.equal(_smear()(E, torch.tensor([[True, True, False, True]])).view(4, 3), expected)


def test_bos_smear_gate_value_by_hand():
    # w = [ln 3, 0]: sigma(ln 3 * x_t[0]) at x_t[0] = 1 is 3/4; lambda = 0.5 -> g = 0.375
    e = torch.tensor([[0.0, 0.0, 4.0], [1.0, 0.0, 8.0]]).view(1, 2, 3)
    out = _smear(w=(math.log(3.0), 0.0), lam=0.5)(e, torch.tensor([[True, True]])).view(2, 3)
    torch.testing.assert_close(out[1], torch.tensor([1.0, 0.0, 8.0 + 0.375 * 4.0]))


def test_bos_smear_is_identity_at_init_and_labelled():
    s = BosMaskedSmear(gate_dims=12)
    assert not s.gate.any() and not s.scale.any() and s.gate.shape == (12,) and s.scale.shape == (1,)
    x = torch.randn(2, 5, 16)
    assert torch.equal(s(x, torch.ones(2, 5, dtype=torch.bool)), x)
    model = build(BOS)
    assert isinstance(model.smear, BosMaskedSmear)
    roles = {n: (r.kind, r.family) for n, r in model.param_roles.items() if n.startswith("smear")}
    assert roles == {"smear.gate": ("control", "smear"), "smear.scale": ("control", "smear")}


def test_model_reads_the_bos_id_from_config():
    """x0 at a BOS position does not depend on the token before it; with another bos_id it does."""
    model = build(BOS)
    with torch.no_grad():
        model.smear.gate.fill_(0.3)
        model.smear.scale.fill_(1.5)
    ids = torch.tensor([[5, 6, BOS_ID, 9, 10]])
    other = ids.clone()
    other[0, 1] = 11
    with torch.no_grad():
        a, b = input_stream(model, BOS, ids), input_stream(model, BOS, other)
    assert torch.equal(a[0, 2], b[0, 2]) and not torch.allclose(a[0, 1], b[0, 1])
    moved = tiny(bos_id=3, input=BOS.input)
    with torch.no_grad():
        a, b = input_stream(model, moved, ids), input_stream(model, moved, other)
    assert not torch.allclose(a[0, 2], b[0, 2])
    emb = model.tok_emb.weight[ids]  # by hand: x0 = RMSNorm(e_t + lambda sigma(w . e_t[:2]) e_{t-1} [t != BOS])
    g = 1.5 * torch.sigmoid(0.3 * emb[0, 1:, :2].sum(-1)) * (ids[0, 1:] != BOS_ID)
    e = torch.cat((emb[0, :1], emb[0, 1:] + g[:, None] * emb[0, :-1]))
    torch.testing.assert_close(input_stream(model, BOS, ids)[0], F.rms_norm(e, (16,)), atol=1e-6, rtol=0)


def test_bos_id_default_and_validation():
    assert ArchConfig().bos_id == BOS_ID
    with pytest.raises(ConfigError, match="arch.bos_id"):
        validate_arch(tiny(bos_id=32))
    with pytest.raises(ConfigError, match="arch.input.smear.gate_dims"):
        validate_arch(tiny(input=InputConfig(smear=SmearConfig(variant=SmearVariant.scalar_gate_bos, gate_dims=17))))


# ----------------------------------------------------------------------------- sparse attention output gate (§3.5)

def _gated(scale=0.5, window=3, **changes):
    from golf.model.config import AttentionConfig, AttnGateConfig, GateKind, XSAConfig

    gate = AttnGateConfig(kind=GateKind.sparse, window=window, scale=scale)
    return tiny(attention=AttentionConfig(xsa=XSAConfig(layers="all"), gate=gate), **changes)


def _proj_inputs(model, ids):
    """The input of every attention's output projection and of every attention, per block."""
    seen = {}
    hooks = [b.attn.proj.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(("proj", i), a[0]))
             for i, b in enumerate(model.blocks)]
    hooks += [b.attn.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(("attn", i), a[0]))
              for i, b in enumerate(model.blocks)]
    with torch.no_grad():
        model(ids)
    for h in hooks:
        h.remove()
    return seen


def test_sparse_gate_halves_attention_at_init():
    """W = 0: sigma(0) = 1/2 on every head, after XSA and before W_o, so the projection reads exactly half."""
    from golf.model.config import AttentionConfig, XSAConfig

    gated, plain = build(_gated(), seed=3), build(tiny(attention=AttentionConfig(xsa=XSAConfig(layers="all"))), seed=3)
    for b in gated.blocks:
        assert b.attn.attn_gate.weight.shape == (4, 3) and not b.attn.attn_gate.weight.any()
    with torch.no_grad():  # non-zero output projections, so the halving reaches the stream of the next block
        for a, b in zip(gated.blocks, plain.blocks):
            a.attn.proj.weight.normal_()
            b.attn.proj.weight.copy_(a.attn.proj.weight)
    ids = torch.randint(0, 32, (2, 7))
    assert torch.equal(_proj_inputs(gated, ids)[("proj", 0)], 0.5 * _proj_inputs(plain, ids)[("proj", 0)])
    assert not torch.allclose(_proj_inputs(gated, ids)[("proj", 1)], 0.5 * _proj_inputs(plain, ids)[("proj", 1)])


def test_sparse_gate_formula():
    """g[t, h] = sigma(0.5 * sum_{j<3} W[h, j] z_t[j]) with z the attention input; per head of 4 dims."""
    from golf.model.config import AttentionConfig, XSAConfig

    cfg = _gated(num_layers=1)
    gated, plain = build(cfg, seed=1), build(tiny(num_layers=1, attention=AttentionConfig(xsa=XSAConfig(layers="all"))),
                                             seed=1)
    W = torch.tensor([[1.0, 0.0, 0.0], [0.0, -2.0, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 3.0]])
    with torch.no_grad():
        gated.blocks[0].attn.attn_gate.weight.copy_(W)
    ids = torch.randint(0, 32, (1, 5))
    a, b = _proj_inputs(gated, ids), _proj_inputs(plain, ids)
    z = a[("attn", 0)][0]  # [T, d]
    g = torch.sigmoid(0.5 * torch.stack([z[:, 0], -2 * z[:, 1], 0.5 * z[:, :3].sum(-1), 3 * z[:, 2]], -1))  # [T, H]
    expected = b[("proj", 0)][0].view(5, 4, 4) * g[:, :, None]
    torch.testing.assert_close(a[("proj", 0)][0].view(5, 4, 4), expected, atol=1e-6, rtol=0)


def test_sparse_gate_roles_count_and_validation():
    model = build(_gated(window=12, model_dim=32, num_heads=4))
    roles = {n: (r.kind, r.family, r.part) for n, r in model.param_roles.items() if "attn_gate" in n}
    assert roles == {f"blocks.{i}.attn.attn_gate.weight": ("control", "sparse_attn_gate", "attn") for i in range(4)}
    with pytest.raises(ConfigError, match="arch.attention.gate.window"):
        validate_arch(_gated(window=17))


# ----------------------------------------------------------------------------- two-lane parallel decoder (§3.8)

def _lanes(**changes):
    from golf.model.config import ResidualConfig, TwoLaneConfig

    return tiny(residual=ResidualConfig(ln_scale=True, two_lane=TwoLaneConfig(**changes.pop("lanes", {}))), **changes)


def test_two_lane_update_on_a_two_block_toy():
    """Blocks 0 (encoder) and 1 (decoder, in lanes from block 1): by hand from the parts' outputs, with
    chosen lambdas P[1] = [[0.5, 2.0], [1.5, -1.0]] (branch, lane), Q[1] = [0.9, 1.2]."""
    from tests.model.lib import randomize

    cfg = _lanes(num_layers=2, lanes={"start_layer": 1})
    model = randomize(build(cfg, seed=4), seed=5)
    with torch.no_grad():
        model.parallel_post_lambdas[1].copy_(torch.tensor([[0.5, 2.0], [1.5, -1.0]]))
        model.parallel_resid_lambdas[1].copy_(torch.tensor([0.9, 1.2]))
        model.parallel_post_lambdas[0].fill_(7.0)  # rows of blocks before the start are never read
        model.parallel_resid_lambdas[0].fill_(7.0)
    seen = {}
    model.final_norm.register_forward_hook(lambda m, a, o: seen.__setitem__("exit", a[0]))
    model.blocks[0].register_forward_hook(lambda m, a, o: seen.__setitem__("h", o))
    ids = torch.randint(0, 32, (2, 6))
    with torch.no_grad():
        model(ids)
        b, h = model.blocks[1], seen["h"]
        x0 = input_stream(model, cfg, ids)
        c = 1 / math.sqrt(2)  # LN scale of block 1
        lane0 = h + model.skip_weights[0] * h  # the plain skip (the encoder's output) into lane0 only
        lane1 = h
        attn = b.attn_scale * b.attn(F.rms_norm(b.resid_mix[0] * lane0 + b.resid_mix[1] * x0, (16,)) * c, {})
        mlp = b.mlp_scale * b.mlp(F.rms_norm(lane1, (16,)) * c)  # lane1 directly: no resid_mix, no x0
        new0 = 0.9 * lane0 + 0.5 * attn + 1.5 * mlp
        new1 = 1.2 * lane1 + 2.0 * attn - 1.0 * mlp
    torch.testing.assert_close(seen["exit"], 0.5 * (new0 + new1), atol=1e-6, rtol=0)


def test_two_lane_parameters_and_init():
    model = build(_lanes(num_layers=4, lanes={"start_layer": 3}))
    assert model.parallel_post_lambdas.shape == (4, 2, 2) and torch.equal(model.parallel_post_lambdas, torch.ones(4, 2, 2))
    assert torch.equal(model.parallel_resid_lambdas, torch.full((4, 2), 1.1))
    roles = {n: (r.kind, r.family, r.place) for n, r in model.param_roles.items() if n.startswith("parallel")}
    assert roles == {n: ("control", "two_lane", "decoder") for n in ("parallel_post_lambdas", "parallel_resid_lambdas")}


def test_two_lane_validation():
    from golf.model.config import (
        DepthConfig,
        LoopConfig,
        ParallelResidualConfig,
        ResidualConfig,
        TwoLaneConfig,
    )

    with pytest.raises(ConfigError, match="arch.residual.two_lane.start_layer"):
        validate_arch(_lanes(lanes={"start_layer": 4}))
    with pytest.raises(ConfigError, match="arch.residual.parallel"):
        validate_arch(tiny(residual=ResidualConfig(parallel=ParallelResidualConfig(), two_lane=TwoLaneConfig(3))))
    # blocks 3,4,5 looped in 11: block 4 is followed by block 3 again, so the lanes cannot open at 4
    looped = dict(num_layers=11, depth=DepthConfig(loop=LoopConfig()))
    with pytest.raises(ConfigError, match="block 3 runs after the lanes open"):
        validate_arch(_lanes(lanes={"start_layer": 4}, **looped))
    validate_arch(_lanes(lanes={"start_layer": 8}, **looped))
    validate_arch(_lanes(lanes={"start_layer": 6}, **looped))


def test_two_lane_applications_in_both_topologies():
    """With #1493's loop in 11 blocks and the lanes from block 8, blocks 8, 9, 10 run in lanes in both
    topologies (their attention reads differ from the sequential block's), the other 14 / 8 sequentially."""
    from golf.model.config import DepthConfig, LoopConfig
    from tests.model.lib import blocks_recorder

    model = build(_lanes(num_layers=11, depth=DepthConfig(loop=LoopConfig())))
    ids = torch.randint(0, 32, (1, 5))
    for topology, sequential in ((0, list(range(8))), (1, [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7])):
        model.set_topology(topology)
        rec = blocks_recorder(model)
        with torch.no_grad():
            model(ids)
        rec.close()
        assert [int(n) for n in rec.names()] == sequential
