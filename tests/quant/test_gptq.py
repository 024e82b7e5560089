"""Full-Hessian GPTQ (golf.kernel.gptq) and SDClip (golf.kernel.quantize) on hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch

from golf.kernel.gptq import gptq_quantize
from golf.kernel.quantize import dequantize, quantize
from golf.quant.config import (
    CalibrationConfig,
    ClipRule,
    GPTQConfig,
    QuantConfig,
    RoundingScale,
    ScaleFloor,
    SchemeConfig,
)
from golf.quant.export import GPTQError, export_state_dict
from tests.helpers import roles_by_name


def scheme(bits=6, clip=ClipRule.sdclip, k=12.85, gptq=True, **kw) -> SchemeConfig:
    return SchemeConfig(bits=bits, clip=clip, clip_sigmas=k, scale_floor=ScaleFloor.tiny,
                        rounding_scale=RoundingScale.fp16, gptq=GPTQConfig(**kw) if gptq else None)


def correlated(rows=32, cols=64, tokens=4096, seed=0):
    """W [rows, cols] and inputs X [tokens, cols] whose columns are strongly correlated."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(cols, cols, generator=g) * 0.3 + torch.eye(cols)
    x = torch.randn(tokens, 8, generator=g) @ torch.randn(8, cols, generator=g) + 0.2 * torch.randn(tokens, cols, generator=g) @ mix
    w = torch.randn(rows, cols, generator=g) * 0.05
    return w, x


def output_error(w, w_hat, x) -> float:
    return float(((w - w_hat) @ x.T).norm())


def test_hand_computed_three_columns():
    """W = [0.3, 0.45, 1.0], 2-bit codes (±1), row-max clip (s = 1), H = [[2,1,0],[1,2,0],[0,0,1]], no damping.
    U (UᵀU = H⁻¹) has U00 = √(2/3), U01 = −1/(3·U00); column 0 rounds to 0 with error e0 = 0.3/U00, which
    moves column 1 to 0.45 − e0·U01 = 0.45 + 0.15 = 0.6 → code 1, where round to nearest gives 0."""
    w = torch.tensor([[0.3, 0.45, 1.0]])
    h = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    for block in (1, 2, 128):  # error propagation inside a block and across blocks agree
        qt = gptq_quantize(w, h, scheme(bits=2, clip=ClipRule.rowmax, damp=0.0, act_order=False, block_size=block))
        assert qt.q.tolist() == [[0, 1, 1]] and float(qt.scale) == 1.0
    assert quantize(w, scheme(bits=2, clip=ClipRule.rowmax, gptq=False)).q.tolist() == [[0, 0, 1]]
    # the quantity GPTQ minimises, (W−Ŵ) H (W−Ŵ)ᵀ: 0.455 against round to nearest's 0.855
    for codes, expected in (([0.0, 1.0, 1.0], 0.455), ([0.0, 0.0, 1.0], 0.855)):
        d = w - torch.tensor([codes])
        assert float(d @ h @ d.T) == pytest.approx(expected)


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_gptq_output_error_below_round_to_nearest(bits):
    w, x = correlated()
    h = x.T @ x
    s = scheme(bits=bits, k=3.0 if bits < 6 else 12.85)
    g = gptq_quantize(w, h, s)
    r = quantize(w, scheme(bits=bits, k=3.0 if bits < 6 else 12.85, gptq=False))
    assert torch.equal(g.scale, r.scale)  # the same SDClip scales
    err_gptq, err_rtn = output_error(w, dequantize(g), x), output_error(w, dequantize(r), x)
    assert err_gptq < 0.8 * err_rtn, (err_gptq, err_rtn)


@pytest.mark.parametrize("clip", [ClipRule.sdclip, ClipRule.rowmax, ClipRule.percentile])
@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_identity_hessian_equals_round_to_nearest(bits, clip):
    w, _ = correlated(rows=16, cols=40)
    w[3] = 0.0  # an all-zero row
    for rounding in (RoundingScale.fp16, RoundingScale.fp32):
        s = scheme(bits=bits, clip=clip, k=4.0)
        s.rounding_scale = rounding
        rtn = SchemeConfig(**{**s.__dict__, "gptq": None})
        g = gptq_quantize(w, 3.0 * torch.eye(40), s)
        r = quantize(w, rtn)
        assert torch.equal(g.q, r.q) and torch.equal(g.scale, r.scale)
        assert (g.lo, g.hi, g.bits) == (r.lo, r.hi, r.bits)


def test_act_order_permutes_and_unpermutes():
    w, x = correlated(rows=8, cols=48)
    h = x.T @ x
    # a diagonal Hessian propagates nothing: act-order must give the same codes in the original order
    diag = torch.diag(torch.linspace(0.5, 3.0, 48).flip(0)[torch.randperm(48, generator=torch.Generator().manual_seed(1))])
    assert torch.equal(gptq_quantize(w, diag, scheme(act_order=True)).q, gptq_quantize(w, diag, scheme(act_order=False)).q)
    # permuting the inputs permutes the codes the same way (act-order sees the same column order)
    perm = torch.randperm(48, generator=torch.Generator().manual_seed(2))
    a = gptq_quantize(w, h, scheme(act_order=True, block_size=16))
    b = gptq_quantize(w[:, perm], h[perm][:, perm], scheme(act_order=True, block_size=16))
    assert torch.equal(a.q[:, perm], b.q)
    # and act-order is a different (here better) order than the natural one
    plain = gptq_quantize(w, h, scheme(act_order=False, block_size=16))
    assert not torch.equal(a.q, plain.q)


def test_dead_inputs_give_zero_codes():
    w, x = correlated(rows=8, cols=16)
    x[:, 5] = 0.0
    qt = gptq_quantize(w, x.T @ x, scheme(bits=4, k=3.0))
    assert torch.all(qt.q[:, 5] == 0)


def test_gptq_refuses_bad_shapes_and_singular_hessians():
    """The kernel raises torch's LinAlgError; the export names the tensor (and checks shapes first)."""
    w = torch.randn(4, 8)
    singular = torch.ones(8, 8)  # rank one; no damping
    with pytest.raises(torch.linalg.LinAlgError):
        gptq_quantize(w, singular, scheme(damp=0.0))

    def export(h, **kw):
        cfg = QuantConfig(schemes={"g": scheme(**kw)}, base_rules=[], passthrough_max_numel=0,
                          calibration=CalibrationConfig())
        cfg.rules[0].scheme = "g"
        return export_state_dict({"blocks.0.mlp.fc.weight": w}, cfg, roles_by_name({"blocks.0.mlp.fc.weight": w}),
                                 {"blocks.0.mlp.fc.weight": h})

    with pytest.raises(GPTQError, match="do not fit"):
        export(torch.eye(6))
    with pytest.raises(GPTQError, match=r"blocks\.0\.mlp\.fc\.weight: the damped Hessian is not positive definite"):
        export(-torch.eye(8))  # damping (0.01 of a negative mean diagonal) cannot save it
    assert len(export(singular + torch.eye(8))[0]) > 0


def test_sdclip_scale_is_k_std_over_qmax():
    # hand case: row [1, −1, 1, −1] has unbiased std √(4/3); k = 2, int4 (qmax 7) → s = 2·√(4/3)/7
    w = torch.tensor([[1.0, -1.0, 1.0, -1.0], [0.5, 0.5, -0.5, -0.5]])
    qt = quantize(w, scheme(bits=4, k=2.0, gptq=False))
    expected = torch.tensor([2 * math.sqrt(4 / 3) / 7, 2 * math.sqrt(1 / 3) / 7]).half()
    assert torch.equal(qt.scale, expected)
    # larger matrices: s_r = fp16(k·std(W_r)/qmax), and no code exceeds ±qmax
    w = torch.randn(64, 512) * torch.rand(64, 1)
    for bits, k in ((6, 12.85), (8, 20.0)):
        qt = quantize(w, scheme(bits=bits, k=k, gptq=False))
        qmax = (1 << (bits - 1)) - 1
        assert torch.equal(qt.scale, (k * w.std(dim=1) / qmax).half())
        assert int(qt.q.abs().max()) <= qmax
    # per-tensor (1-D) tensors: one scale k·std/qmax
    v = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert float(quantize(v, scheme(bits=4, k=2.0, gptq=False)).scale) == pytest.approx(2 * math.sqrt(4 / 3) / 7)


def test_gptq_runs_on_every_bit_width():
    w, x = correlated(rows=8, cols=32)
    for bits in range(2, 9):
        qt = gptq_quantize(w, x.T @ x, scheme(bits=bits, k=3.0))
        qmax = (1 << (bits - 1)) - 1
        assert qt.q.dtype == torch.int8 and int(qt.q.abs().max()) <= qmax and (qt.lo, qt.hi) == (-qmax, qmax)


def test_damping_uses_the_mean_of_the_diagonals_copy(monkeypatch):
    """H + damp·mean(diag H)·I with the mean of ``h.diag()`` (a contiguous copy), as the record computes
    it: the mean over the strided diagonal view sums in another order and is one float step off for
    many Hessians (24 of #1493's 67), which moves GPTQ codes."""
    w, x = correlated(rows=8, cols=256, seed=7)
    x = x * torch.linspace(0.1, 7.0, 256)  # inputs of unequal scale: the two sums round apart
    h = x.T @ x
    assert torch.diagonal(h).mean().item() != h.diag().mean().item()  # the case this test is about
    seen = []
    real = torch.linalg.cholesky
    monkeypatch.setattr(torch.linalg, "cholesky", lambda a, **kw: seen.append(a.clone()) or real(a, **kw))
    gptq_quantize(w, h, scheme(act_order=False, damp=0.01))
    want = h.clone()
    want.diagonal().add_(0.01 * h.diag().mean())
    assert torch.equal(seen[0], want)
