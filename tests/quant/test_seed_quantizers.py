"""Each seed's quantizer, as its preset configures it, against a hand computation of spec §2.21 and §6.

Every test quantizes a small hand-built matrix with the scheme of the seed's preset and compares codes
and stored scales with literal numbers worked out in the comments (fp16 values: the nearest fp16 of the
fp32 scale, e.g. 1/31 = 2^-5 · 1.032258 → mantissa round(1.032258 · 1024) = 1057 → 1057/2^15).

Rows of 1,001 entries (mostly zeros) make the quantile clips easy to follow: the q-quantile sits at
position q · 1000 of the sorted |w|, so 0.999 → the second largest |w| (v999), 0.9995 → halfway to the
largest (v1000), 0.9999 → 90 % of the way, 0.99999 → 99 %, 1.0 → the row max, and the baseline's
0.9999984 → 99.84 % of the way. "Floor" rows have c < 1, so s = max(c/qmax, 1/qmax) = 1/qmax.
"""

from __future__ import annotations

import torch

from golf.kernel.quantize import fake_quantize, quantize
from golf.quant.config import ClipOrder, ScalePrecision

from .conftest import load_preset

N = 1001


def _row(*values: float) -> torch.Tensor:
    """A row of N entries: ``values`` first, zeros after."""
    row = torch.zeros(N)
    row[:len(values)] = torch.tensor(values)
    return row


def _scheme(preset: str, name: str):
    return load_preset(preset, small=None).schemes[name]


def _check(qt, codes: list[list[int]], scales: list[float], width: int) -> None:
    assert qt.scale.dtype == torch.float16
    assert qt.scale.tolist() == scales
    assert qt.q[:, :width].tolist() == codes
    assert qt.q[:, width:].abs().sum() == 0


# Rows shared by the baseline, #507 and #187 (percentile 0.9999984 → c = v999 + 0.9984 · (v1000 − v999)):
#   floor row  [0.5, 0.1, 0…]:  c = 0.1 + 0.9984 · 0.4 = 0.49936 < 1 → floor; |w| = 0.5 exceeds c
#   above row  [2.54, −2.54, x, 0.76, 0…]: the two largest |w| are equal → c = 2.54 for every quantile
PCT_ROWS = torch.stack([_row(0.5, 0.1), _row(2.54, -2.54, 0.150006, 0.76)])


def test_baseline_int8():
    """int8, s = max(c/127, 1/127) in fp32, codes of clip(W, ±c)/s (spec §1.8)."""
    qt = quantize(PCT_ROWS, _scheme("int8", "int8"))
    # floor row: s = 1/127 → fp16 1032/2^17 = 0.00787353515625
    #   0.5 → clipped to 0.49936 → 63.42 → 63 (unclipped it would be 63.5 → 64);  0.1 → 12.7 → 13
    # above row: s = 2.54/127 = 0.02 → fp16 1311/2^16 = 0.0200042724609375
    #   x = 0.150006: x/0.02 = 7.5003 → 8 (with the fp16 scale: 7.4987 → 7);  0.76/0.02 = 38
    _check(qt, [[63, 13, 0, 0], [127, -127, 8, 38]], [0.00787353515625, 0.0200042724609375], 4)


def test_pr507_int8_grid_steps():
    """#507: the baseline's int8 codes rounded to multiples of 8 ("int5") or 4 ("int6"), clamp ±127."""
    int5 = quantize(PCT_ROWS, _scheme("int5mix", "int5_step"))
    int6 = quantize(PCT_ROWS, _scheme("int5mix", "int6_step"))
    # int8 codes (test_baseline_int8): [63, 13], [127, −127, 8, 38]
    # step 8: 63/8 = 7.875 → 64; 13/8 = 1.625 → 16; 127/8 = 15.875 → 128 → 127; 8 → 8; 38/8 = 4.75 → 40
    _check(int5, [[64, 16, 0, 0], [127, -127, 8, 40]], [0.00787353515625, 0.0200042724609375], 4)
    # step 4: 63/4 = 15.75 → 64; 13/4 = 3.25 → 12; 127/4 = 31.75 → 128 → 127; 8 → 8;
    #         38/4 = 9.5 → 10 (half to even) → 40
    _check(int6, [[64, 12, 0, 0], [127, -127, 8, 40]], [0.00787353515625, 0.0200042724609375], 4)


def test_pr187_int6_percentile_and_qat():
    """#187: int6, s = max(c/31, 1/31) in fp32, codes of clip(W, ±c)/s; QAT: rowmax/31, × the fp32 scale."""
    w = torch.stack([_row(0.5, 0.1), _row(2.54, -2.54, 0.45058)])
    qt = quantize(w, _scheme("pr187", "int6"))
    # floor row: s = 1/31 → fp16 1057/2^15 = 0.032257080078125
    #   0.5 → clipped to 0.49936 → 15.48 → 15 (unclipped: 15.5 → 16);  0.1 → 3.1 → 3
    # above row: s = 2.54/31 = 0.0819355 → fp16 1342/2^14 = 0.0819091796875
    #   0.45058/0.0819355 = 5.4992 → 5 (with the fp16 scale: 5.5010 → 6);  2.54 → 31
    _check(qt, [[15, 3, 0], [31, -31, 5]], [0.032257080078125, 0.0819091796875], 3)

    qat = load_preset("pr187", small=None).qat
    assert qat.fake_quant_scale is ScalePrecision.fp32
    v = torch.tensor([[0.5, 0.1, -0.2, 0.0]])
    # rowmax 0.5, s = 0.5/31 (fp32, no floor): 0.1/s = 6.2 → 6, −0.2/s = −12.4 → −12; w_q = codes · s
    want = torch.tensor([[31.0, 6.0, -12.0, 0.0]]) * (torch.tensor(0.5) / 31)
    assert torch.equal(fake_quantize(v, qat.schemes["int6"], qat.fake_quant_scale), want)
    fp16 = torch.tensor([[31.0, 6.0, -12.0, 0.0]]) * 0.0161285400390625  # the stored scale, 1057/2^16
    assert torch.equal(fake_quantize(v, qat.schemes["int6"], ScalePrecision.fp16), fp16)
    assert not torch.equal(want, fp16)


def test_pr295_amax_and_qat():
    """#295: rowmax clip, s = max(c/qmax, 1e−12) rounded to fp16 BEFORE dividing; int5 [−16, 15], int6 [−32, 31].

    The row max never clips, and the tiny floor acts only on an all-zero row (its fp16 scale is 0)."""
    w = torch.tensor([[0.5, 0.24995, -0.1, 0.0], [-0.5, 0.4839, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0]])
    int5 = quantize(w, _scheme("pr295", "int5_amax"))
    # row 0: s = 0.5/15 = 0.0333333 → fp16 1092/2^15 = 0.0333251953125
    #   0.5/s16 = 15.0037 → 15;  0.24995/s16 = 7.5003 → 8 (with the fp32 scale: 7.4985 → 7);  −0.1 → −3.0008 → −3
    # row 1: the same scale; −0.5 → −15.0037 → −15;  0.4839/s16 = 14.5204 → 15;  0.2/s16 = 6.0015 → 6
    # row 2: all zero: s = 1e−12 → fp16 0 → codes 0
    assert int5.scale.tolist() == [0.0333251953125, 0.0333251953125, 0.0]
    assert int5.q.tolist() == [[15, 8, -3, 0], [-15, 15, 6, 0], [0, 0, 0, 0]]
    int6 = quantize(w, _scheme("pr295", "int6_amax"))
    # s = 0.5/31 → fp16 1057/2^16 = 0.0161285400390625
    # row 0: 0.5/s16 = 31.0013 → 31;  0.24995/s16 = 15.4973 → 15;  −0.1/s16 = −6.2002 → −6
    # row 1: −0.5 → −31;  0.4839/s16 = 30.0027 → 30;  0.2/s16 = 12.4004 → 12
    assert int6.scale.tolist() == [0.0161285400390625, 0.0161285400390625, 0.0]
    assert int6.q.tolist() == [[31, 15, -6, 0], [-31, 30, 12, 0], [0, 0, 0, 0]]

    qat = load_preset("pr295", small=None).qat
    assert qat.fake_quant_scale is ScalePrecision.fp32
    v = w[:1]
    # QAT int5 (±15): s = 0.5/15 in fp32, codes of W/s: 0.24995/s = 7.4985 → 7, −0.1/s = −3.0 → −3
    want = torch.tensor([[15.0, 7.0, -3.0, 0.0]]) * (torch.tensor(0.5) / 15)
    assert torch.equal(fake_quantize(v, qat.schemes["int5"], qat.fake_quant_scale), want)


# #344: per-row GPTQ-lite over {0.999, 0.9995, 0.9999, 0.99999, 1.0}, s = max(c/31, 1/31) in fp32 for the
# rounding and for each candidate's MSE; first candidate kept on ties.
PR344_ROWS = torch.stack([
    _row(0.46, 0.45),                  # floor row, |w| above the chosen clip
    _row(2.0, -2.0, 0.48386),          # near a rounding half
    torch.cat([torch.tensor([3.7687, -3.0839, 1.5537, 1.5537, 1.5537, 1.5537, -0.0616]), torch.zeros(N - 7)]),
])


def test_pr344_gptq_lite_fp32_scale():
    """#344 (spec §6): rounding and the candidate MSE with the fp32 scale, the fp16 scale only stored."""
    qt = quantize(PR344_ROWS, _scheme("pr344", "int6_gptq"))
    # row 0: clips 0.45, 0.455, 0.459, 0.4599, 0.46 (all < 1 → s = 1/31): 0.46 clipped or not → 14.0 … 14.26
    #   → 14, 0.45 → 13.95 → 14: every candidate has the same codes → tie → 0.999, whose clip 0.45 < |w| = 0.46
    # row 1: the two largest |w| are equal → c = 2 for every candidate, s = 2/31 = 0.0645161 (fp16
    #   1057/2^14 = 0.06451416015625): 0.48386/0.0645161 = 7.4998 → 7 (/fp16 scale: 7.5001 → 8)
    # row 2: the sorted top is 3.7687 and 3.0839 (gap 0.6848); per candidate (clip c, s = c/31, codes of
    #   3.7687, −3.0839, 1.5537 (4×), −0.0616; squared errors summed over the row, /1001):
    #     0.999   c 3.0839  s 0.0994806  31 −31 16 −1   MSE 4.7568e-4
    #     0.9995  c 3.4263  s 0.1105258  31 −28 14 −1   MSE 1.1979e-4
    #     0.9999  c 3.7002  s 0.1193611  31 −26 13 −1   MSE 8.4168e-6
    #     0.99999 c 3.7618  s 0.1213498  31 −25 13 −1   MSE 8.3989e-6   ← lowest with q·s in fp32
    #     1.0     c 3.7687  s 0.1215710  31 −25 13 −1   MSE 8.4359e-6
    #   (with q·s16 the MSEs of 0.9999 / 0.99999 are 8.3395e-6 / 8.4033e-6: the fp16 scale would pick 0.9999)
    #   stored: fp16(0.1213498) = 994/2^13 = 0.121337890625
    _check(qt, [[14, 14, 0, 0, 0, 0, 0], [31, -31, 7, 0, 0, 0, 0], [31, -25, 13, 13, 13, 13, -1]],
           [0.032257080078125, 0.06451416015625, 0.121337890625], 7)


def test_pr344_fp16_scale_is_a_named_option():
    """``rounding_scale: fp16`` rounds and compares candidates with the stored scale (not #344's default)."""
    scheme = _scheme("pr344", "int6_gptq")
    scheme.rounding_scale = ScalePrecision.fp16
    qt = quantize(PR344_ROWS, scheme)
    # row 1: 0.48386/0.06451416 = 7.5001 → 8; row 2: candidate 0.9999 (c 3.7002, s16 978/2^13 = 0.119384765625):
    # codes 3.7687/s16 = 31.57 → 31, −3.0839/s16 = −25.83 → −26, 1.5537/s16 = 13.01 → 13, −0.0616 → −1
    _check(qt, [[14, 14, 0, 0, 0, 0, 0], [31, -31, 8, 0, 0, 0, 0], [31, -26, 13, 13, 13, 13, -1]],
           [0.032257080078125, 0.06451416015625, 0.119384765625], 7)


def _pr1573_matrix() -> torch.Tensor:
    """A floor row [0.5, 0.2, 0…] and a row [4.0, 1.5, 899 × 0.1, 0…] that makes the matrix take 0.999."""
    above = torch.zeros(N)
    above[0], above[1], above[2:901] = 4.0, 1.5, 0.1
    return torch.stack([_row(0.5, 0.2), above])


def test_pr1573_int5_rounds_the_unclipped_weight():
    """#1573 (spec §6): per-matrix GPTQ-lite over {0.999, 0.9995, 0.9999, 1.0}, s = max(c/15, 1/15) fp16,
    q = clamp(round(W/s), ±15) on the UNCLIPPED W."""
    qt = quantize(_pr1573_matrix(), _scheme("pr1573", "int5_gptq"))
    # row 0 (floor): every clip (0.2 … 0.5) < 1 → s = 1/15 → fp16 1092/2^14 = 0.066650390625; unclipped
    #   0.5/s = 7.5018 → 8 (clip-then-round at c = 0.2 would give 3.0007 → 3), 0.2/s = 3.0007 → 3; the
    #   row's error is the same for every candidate.
    # row 1: clips 1.5, 2.75, 3.75, 4.0 → fp16 scales 0.0999756, 0.1833496, 0.25, 0.2666016; summed
    #   squared errors: 0.999: 4.0 → 40.01 → 15 → 1.4996: (2.5004)² = 6.2518, the rest ≈ 0 → 6.25;
    #   0.9995: 4.0 → 15 → 2.7502: 1.561, 1.5 → 8 → 1.4668: 0.0011, 0.1 → 1 → 0.1833: 899 · 0.00695 = 6.25 → 7.81;
    #   0.9999: 4.0 → 15 → 3.75: 0.0625, 1.5 → 6 exact, 0.1 → 0: 899 · 0.01 → 9.05;
    #   1.0: 4.0 → 15 → 3.9990, 1.5 → 5.63 → 6 → 1.5996: 0.0099, 0.1 → 0.375 → 0: 8.99 → 9.00
    #   → the matrix takes 0.999: 4.0 → 15 (clamped), 1.5/0.0999756 = 15.0037 → 15, 0.1 → 1.0002 → 1
    assert qt.scale.tolist() == [0.066650390625, 0.0999755859375]
    assert qt.q[0, :2].tolist() == [8, 3] and qt.q[0, 2:].abs().sum() == 0
    assert qt.q[1, :2].tolist() == [15, 15] and (qt.q[1, 2:901] == 1).all() and qt.q[1, 901:].abs().sum() == 0


def test_pr1573_clip_then_round_stays_an_option():
    scheme = _scheme("pr1573", "int5_gptq")
    scheme.clip_order = ClipOrder.clip_then_round
    qt = quantize(_pr1573_matrix(), scheme)
    # the same candidate (0.999: row 1 decides); row 0's 0.5 is clipped to 0.2 first → 3
    assert qt.q[0, :2].tolist() == [3, 3] and qt.scale.tolist() == [0.066650390625, 0.0999755859375]
