"""The int-k quantizer family against hand computations (spec §1.8, §2.21)."""

from __future__ import annotations

import pytest
import torch

from golf.kernel.quantize import code_range, dequantize, fake_quantize, quantile, quantize
from golf.quant.config import (
    ClipRule,
    RangeConvention,
    RoundingScale,
    ScaleFloor,
    SchemeConfig,
    SearchGranularity,
)

Q = 0.9999984  # the baseline's 99.99984th percentile


def test_baseline_int8_matches_hand_computation():
    w = torch.tensor([[4.0, -2.1, 1.0, 3.0],    # clip 3 + (4 − 3)·frac, scale above the floor
                      [1.0, 0.3, -0.55, 0.0]])  # clip < 1 → scale floored at 1/127
    frac = Q * 3 - 2  # linear interpolation between the 3rd and 4th smallest |w|
    c0, c1 = 3.0 + 1.0 * frac, 0.55 + 0.45 * frac
    s0 = c0 / 127
    expected_q = torch.tensor([[127, round(-2.1 / s0), round(1.0 / s0), round(3.0 / s0)],
                               [127, round(0.3 * 127), round(-0.55 * 127), 0]], dtype=torch.int8)
    assert expected_q.tolist() == [[127, -67, 32, 95], [127, 38, -70, 0]]
    qt = quantize(w, SchemeConfig())
    assert torch.equal(qt.q, expected_q)
    assert qt.scale.dtype == torch.float16
    assert torch.equal(qt.scale, torch.tensor([s0, 1 / 127]).half())
    assert c1 < 1.0
    assert torch.equal(dequantize(qt), expected_q.float() * qt.scale.float()[:, None])


def test_per_tensor_rule_for_vectors():
    w = torch.tensor([0.5, -1.0, 0.25, 2.0, 0.0])
    c = 1.0 + 1.0 * (Q * 4 - 3)  # the quantile over the flattened tensor; fp32 scale, no floor
    qt = quantize(w, SchemeConfig())
    assert qt.scale.dtype == torch.float32 and qt.scale.ndim == 0
    assert float(qt.scale) == pytest.approx(c / 127, rel=1e-6)
    assert qt.q.tolist() == [round(0.5 / (c / 127)), round(-1.0 / (c / 127)), round(0.25 / (c / 127)), 127, 0]
    zero = quantize(torch.zeros(3), SchemeConfig())
    assert float(zero.scale) == 1.0 and zero.q.tolist() == [0, 0, 0]


@pytest.mark.parametrize("bits", [8, 6, 5, 4])
@pytest.mark.parametrize("clip", [ClipRule.rowmax, ClipRule.percentile])
def test_error_within_half_a_step(bits, clip):
    g = torch.Generator().manual_seed(bits)
    w = torch.randn(16, 64, generator=g) * 3.0  # large enough that no scale floor applies
    scheme = SchemeConfig(bits=bits, clip=clip, clip_quantile=0.99, rounding_scale=RoundingScale.fp16)
    qt = quantize(w, scheme)
    step = qt.scale.float()[:, None]
    clip_abs = (qt.scale.float() * ((1 << (bits - 1)) - 1))[:, None]
    inside = w.abs() <= clip_abs * (1 - 1e-3)  # clipped entries are excluded by definition
    err = (dequantize(qt) - w).abs()
    assert (err[inside] <= step.expand_as(w)[inside] / 2 + 1e-6).all()
    lo, hi = code_range(scheme)
    assert qt.q.min() >= lo and qt.q.max() <= hi


def test_fp32_rounding_scale_error_bound():
    """Baseline rounding divides by the fp32 scale; the fp16 scale's rounding adds at most |q|·|s32 − s16|."""
    w = torch.randn(8, 100, generator=torch.Generator().manual_seed(1)) * 4
    qt = quantize(w, SchemeConfig(clip=ClipRule.rowmax))
    s32 = w.abs().amax(dim=1) / 127
    bound = s32 / 2 + qt.q.abs().amax(dim=1).float() * (s32 - qt.scale.float()).abs()
    assert ((dequantize(qt) - w).abs().amax(dim=1) <= bound + 1e-6).all()


def test_scale_floor_options():
    w = torch.tensor([[0.5, -0.25, 0.1]])  # row max 0.5 < 1
    floored = quantize(w, SchemeConfig(bits=6, clip=ClipRule.rowmax, scale_floor=ScaleFloor.qmax))
    tiny = quantize(w, SchemeConfig(bits=6, clip=ClipRule.rowmax, scale_floor=ScaleFloor.tiny))
    assert torch.equal(floored.scale, torch.tensor([1 / 31]).half())  # max(0.5/31, 1/31)
    assert floored.q.tolist() == [[16, -8, 3]]  # round(0.5·31)=16 (15.5 → even), −7.75 → −8, 3.1 → 3
    assert torch.equal(tiny.scale, torch.tensor([0.5 / 31]).half())
    assert tiny.q.tolist() == [[31, -16, 6]]  # −15.5 → −16 (half to even), 6.2 → 6
    zero_row = quantize(torch.zeros(2, 3), SchemeConfig(bits=6, clip=ClipRule.rowmax, scale_floor=ScaleFloor.tiny,
                                                        rounding_scale=RoundingScale.fp16))
    assert zero_row.q.abs().sum() == 0 and torch.equal(dequantize(zero_row), torch.zeros(2, 3))


def test_range_conventions():
    assert code_range(SchemeConfig(bits=6)) == (-31, 31)
    assert code_range(SchemeConfig(bits=6, range=RangeConvention.full)) == (-32, 31)
    assert code_range(SchemeConfig(bits=5, range=RangeConvention.full)) == (-16, 15)
    assert code_range(SchemeConfig(bits=8)) == (-127, 127)
    # A grid step of 2 pushes ±31 to ±32: the full range keeps −32, the symmetric one clamps to −31.
    w = torch.tensor([[-1.0, 1.0, 0.0]])
    full = quantize(w, SchemeConfig(bits=6, clip=ClipRule.rowmax, grid_step=2, range=RangeConvention.full))
    sym = quantize(w, SchemeConfig(bits=6, clip=ClipRule.rowmax, grid_step=2))
    assert full.q.tolist() == [[-32, 31, 0]] and sym.q.tolist() == [[-31, 31, 0]]


def test_int8_grid_step_scheme():
    """#507: baseline int8 codes rounded to multiples of the step, then clamped to ±127."""
    w = torch.tensor([[1.27, 0.2, -0.35, 0.05, 0.62, -1.0]])
    base = quantize(w, SchemeConfig()).q.float()
    stepped = quantize(w, SchemeConfig(grid_step=8)).q.float()
    assert torch.equal(stepped, (torch.round(base / 8) * 8).clamp(-127, 127))
    assert stepped.tolist() == [[127, 16, -32, 8, 64, -96]]  # 127 → 128 → clamp 127; 2.5 → 2 (half to even)


def _mse(w, scheme):
    return float((dequantize(quantize(w, scheme)) - w).square().mean())


def test_gptq_lite_per_matrix_picks_lowest_error_candidate():
    g = torch.Generator().manual_seed(0)
    # heavy-tailed rows (a Gaussian over a uniform): clipping the few largest entries pays off
    w = torch.randn(32, 256, generator=g) / (torch.rand(32, 256, generator=g) * 2 + 0.5) * 0.1
    cands = [0.9, 0.99, 0.999, 1.0]
    kw = dict(bits=5, scale_floor=ScaleFloor.tiny, rounding_scale=RoundingScale.fp16)
    errors = [_mse(w, SchemeConfig(clip=ClipRule.percentile, clip_quantile=c, **kw)) for c in cands]
    best = min(range(len(cands)), key=errors.__getitem__)
    assert cands[best] == 0.999  # neither the row max nor the lowest candidate
    search = SchemeConfig(clip=ClipRule.search, candidates=cands, **kw)
    assert _mse(w, search) == errors[best]


def test_gptq_lite_per_row_picks_per_row():
    g = torch.Generator().manual_seed(1)
    w = torch.rand(2, 512, generator=g) * 2 - 1  # row 0 uniform: a clip just below the max is best
    w[1] = torch.randn(512, generator=g) * 0.1
    w[1, 0] = 8.0  # row 1 with one far outlier: clipping it costs more than the coarser step
    cands = [0.99, 1.0]
    kw = dict(bits=4, scale_floor=ScaleFloor.tiny, rounding_scale=RoundingScale.fp16)
    per_cand = [quantize(w, SchemeConfig(clip=ClipRule.percentile, clip_quantile=c, **kw)) for c in cands]
    row_err = torch.stack([(dequantize(qt) - w).square().mean(dim=1) for qt in per_cand])  # [cands, rows]
    choice = row_err.argmin(dim=0)
    assert choice.tolist() == [0, 1]  # the rows disagree, so a per-matrix choice would lose
    got = quantize(w, SchemeConfig(clip=ClipRule.search, candidates=cands,
                                   search_granularity=SearchGranularity.row, **kw))
    for r in range(2):
        assert torch.equal(got.q[r], per_cand[int(choice[r])].q[r])
        assert torch.equal(got.scale[r], per_cand[int(choice[r])].scale[r])


def test_quantile_beyond_torch_limit_matches_linear_interpolation():
    x = torch.arange(1 << 24 + 1, dtype=torch.float32).flip(0)  # larger than torch.quantile accepts
    assert float(quantile(x, 0.25)) == pytest.approx(0.25 * (x.numel() - 1), rel=1e-6)


def test_fake_quantize_multiplies_the_codes_by_the_fp32_scale_or_the_stored_one():
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(3)) * 0.3
    scheme = SchemeConfig(bits=6, clip=ClipRule.rowmax, scale_floor=ScaleFloor.tiny, range=RangeConvention.full)
    qt = quantize(w, scheme)
    s32 = w.abs().amax(dim=1) / 31  # the unrounded scale (rowmax, no floor active)
    assert torch.equal(fake_quantize(w, scheme), qt.q.float() * s32[:, None])
    assert not torch.equal(fake_quantize(w, scheme), dequantize(qt))  # fp16 rounding of s shows
    assert torch.equal(fake_quantize(w, scheme, RoundingScale.fp16), dequantize(qt))
