"""LQER (spec frontier-1855 §5.5): the factor packing by hand, a known rank-1 error recovered, the top-N
selection by error norm, and the round trip through the container."""

from __future__ import annotations

import pytest
import torch

from golf.kernel.artifact import decode_body, frame_body, quantize_state_dict, serialize
from golf.kernel.lqer import Corrected, add_lqer, lqer_codes, lqer_delta, lqer_factors, lqer_scale
from golf.kernel.quantize import QuantizedTensor, dequantize
from golf.quant import load_artifact
from golf.quant.config import ConfigError, LQERConfig, QuantConfig, SchemeConfig, validate_quant

M = 1.5 * (1 + 2**-12)  # max|A|: fp16(M / 1.5) rounds down to exactly 1.0, so M / sA = 1.500366 (no tie)
A_COL = [M, 0.9, 0.4, 0.1, -0.3, -0.7, -1.2, -1.45]
V_INT = [4.0, 2.0, -2.0, 1.0, 0.0, -1.0]  # B = V_INT / sqrt(26)


def test_int2_codes_and_the_half_to_even_clamp_asymmetry():
    x = torch.tensor([1.5, -1.5, 0.5, -0.5, 0.75, -0.75, 0.25, 1.0])
    s = lqer_scale(x, 2)
    assert s.dtype == torch.float16 and float(s) == 1.0  # max 1.5 / (2 − 0.5)
    # +1.5 rounds (half to even) to 2 and is clamped to 1; −1.5 rounds to −2, a level int2 has
    assert lqer_codes(x, s, 2).tolist() == [1, -2, 0, 0, 1, -1, 0, 1]


def test_int4_group_codes_and_their_dequantization():
    b = torch.tensor([[7.5, -7.5, 2.5, 3.5, -15.0], [5.0, 1.0, -3.0, 0.75, -0.375]])  # 10 values, groups of 4
    q = LQERConfig(rank=2, b_bits=4, group=4)
    g = torch.nn.functional.pad(b.reshape(-1), (0, 2)).view(3, 4)
    s = lqer_scale(g, q.b_bits)
    # group maxima 7.5, 15, 0.75 over 7.5: 1, 2, fp16(0.1) = 0.0999755859375
    assert s.tolist() == [1.0, 2.0, 0.0999755859375]
    c = lqer_codes(g, s[:, None], 4).view(-1)[:10].view(2, 5)
    # group 1: 7.5 → 8 clamped to 7, −7.5 → −8, 2.5 → 2 (even), 3.5 → 4 (even); group 2: −15/2 = −7.5 → −8,
    # 5/2 = 2.5 → 2, 1/2 = 0.5 → 0, −3/2 = −1.5 → −2; group 3: 0.75/0.09998 = 7.502 → 7, −3.751 → −4
    assert c.tolist() == [[7, -8, 2, 4, -8], [2, 0, -2, 7, -4]]
    a = torch.tensor([[1, 0], [0, -2]], dtype=torch.int8)
    d = lqer_delta(a, torch.tensor(0.5, dtype=torch.float16), c, s, 4)
    b_hat = torch.tensor([[7.0, -8, 2, 4, -16], [4, 0, -4, 7 * 0.0999755859375, -4 * 0.0999755859375]])
    assert torch.equal(d, torch.tensor([[0.5], [-1.0]]) * b_hat)  # (qA·sA)(qB·sB): row r of A picks row r of B


def _rank1_case():
    """An 8×6 int6 matrix whose weights differ from its codes by the rank-1 error outer(A_COL, B_ROW)."""
    g = torch.Generator().manual_seed(0)
    q = torch.randint(-31, 32, (8, 6), generator=g, dtype=torch.int8)
    scale = torch.full((8,), 2**-7, dtype=torch.float16)
    b_row = torch.tensor(V_INT) / 26**0.5
    w = dequantize(QuantizedTensor(q, scale, 6, -31, 31)) + torch.outer(torch.tensor(A_COL), b_row)
    return w, QuantizedTensor(q, scale, 6, -31, 31)


def test_known_rank1_error_is_recovered_within_the_int2_int4_grid():
    w, qt = _rank1_case()
    st = {"w": ("int6", torch.float32, qt)}
    add_lqer({"w": w}, st, LQERConfig(top_n=1, rank=4, a_bits=2, b_bits=4, group=6))
    d = st["w"][2]
    assert isinstance(d, Corrected) and d.base is qt
    assert d.a.shape == (8, 4) and d.b.shape == (4, 6) and d.sb.shape == (4,)
    # the SVD's sign is free: E = (σA)(σB) for σ = ±1; read it from B's largest entry (+4/√26 before σ)
    sign = 1 if int(d.b[0, 0]) > 0 else -1
    assert float(d.sa) == 1.0  # fp16(M / 1.5)
    # A/sA = σ·A_COL: +M → 2 → clamped to 1, while −M → −2 keeps its level (the asymmetry)
    expected_a = [1, 1, 0, 0, 0, -1, -1, -1] if sign == 1 else [-2, -1, 0, 0, 0, 1, 1, 1]
    assert d.a[:, 0].tolist() == expected_a
    assert d.a[:, 1:].abs().sum() == 0  # the other singular values are fp32 noise: their columns code to 0
    # B row 0 = σ·V_INT/√26, one group of 6: scale fp16(0.7845/7.5) = 1714·2^-14, codes round(B/s)
    assert float(d.sb[0]) == 1714 * 2**-14
    assert d.b[0].tolist() == [sign * c for c in (7, 4, -4, 2, 0, -2)]
    delta = lqer_delta(d.a, d.sa, d.b, d.sb, 6)
    hand = torch.outer(torch.tensor(expected_a, dtype=torch.float32),
                       sign * torch.tensor([7.0, 4, -4, 2, 0, -2]) * 1714 * 2**-14)
    assert torch.allclose(delta, hand, atol=1e-7)
    e = w - dequantize(qt)
    # the correction removes most of the error; int2's four levels leave about a third of it (A's rounding:
    # at most sA/2 per entry, the clamped +M included)
    assert float((e - delta).norm()) < 0.35 * float(e.norm())
    b_hat = hand[0] / expected_a[0]
    a_err = (torch.tensor(A_COL) * sign - torch.tensor(expected_a, dtype=torch.float32)).abs()
    assert float(a_err.max()) <= 0.5 + 2**-11
    assert float((torch.tensor(V_INT) / 26**0.5 * sign - b_hat).abs().max()) <= 1714 * 2**-15  # half a B step


def test_top_n_by_error_norm_across_kinds():
    g = torch.Generator().manual_seed(1)
    sd, st = {}, {}
    for name, err in [("small", 0.01), ("big", 0.5), ("middle", 0.2), ("emb", 0.3)]:
        q = torch.randint(-7, 8, (16, 8), generator=g, dtype=torch.int8)
        qt = QuantizedTensor(q, torch.full((16,), 0.01, dtype=torch.float16), 4, -7, 7)
        sd[name] = dequantize(qt) + err * torch.randn(16, 8, generator=g) / 11.3  # ‖E‖_F ≈ err
        st[name] = ("int4", torch.float32, qt)
    sd["vec"] = torch.randn(64, generator=g)  # a 1-D int tensor (one scale) is not a candidate
    st["vec"] = ("int8", torch.float32, QuantizedTensor(torch.zeros(64, dtype=torch.int8), torch.tensor(1e-3), 8, -127, 127))
    sd["kept"] = torch.randn(16, 8, generator=g)  # a float tensor is not a candidate either
    st["kept"] = ("fp16", torch.float32, sd["kept"].half())
    add_lqer(sd, st, LQERConfig(top_n=2))
    assert sorted(n for n, v in st.items() if isinstance(v[2], Corrected)) == ["big", "emb"]


def test_lqer_round_trip_through_the_container():
    w, _ = _rank1_case()
    sd = {"w": w.bfloat16(), "v": torch.randn(8, 6)}
    q = QuantConfig(schemes={"int6": SchemeConfig(bits=6, clip="rowmax")}, rules=[], passthrough_max_numel=0,
                    lqer=LQERConfig(top_n=1, group=8))
    st = quantize_state_dict(sd, q, {"w": "int6", "v": "int6"})
    corrected = [n for n, v in st.items() if isinstance(v[2], Corrected)]
    assert len(corrected) == 1
    n = corrected[0]
    d = st[n][2]
    expected = (dequantize(d.base) + lqer_delta(d.a, d.sa, d.b, d.sb, 8)).to(sd[n].dtype)  # fp32, then the cast
    out = decode_body(serialize(st, q), q)
    assert torch.equal(out[n], expected)
    strict = load_artifact(frame_body(serialize(st, q), q))  # the lab's strict reader
    assert torch.equal(strict[n], expected)
    other = "v" if n == "w" else "w"
    assert torch.equal(out[other], dequantize(st[other][2], sd[other].dtype))
    assert lqer_factors(torch.zeros(3, 5), LQERConfig())[0].abs().sum() == 0  # no error: zero codes, no NaN


@pytest.mark.parametrize("key,value", [("top_n", 0), ("rank", 0), ("a_bits", 1), ("b_bits", 9), ("group", 0)])
def test_lqer_config_errors_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"quant.lqer.{key}"):
        validate_quant(QuantConfig(lqer=LQERConfig(**{key: value})))


def _body_with(st, q, change):
    """The body of ``st`` with its header's first LQER field object changed by ``change(f)``."""
    import json
    import struct

    b = serialize(st, q)
    (k,) = struct.unpack_from("<I", b)
    head = json.loads(b[4:4 + k])
    change(next(e["lqer"] for e in head["tensors"] if "lqer" in e))
    h = json.dumps(head).encode()
    return struct.pack("<I", len(h)) + h + b[4 + k:]


@pytest.mark.parametrize("change,message", [
    (lambda f: f.update(rank=7), "do not fit"),
    (lambda f: f.update(a_bits=1), "do not fit"),
    (lambda f: f.update(group=0), "do not fit"),
    (lambda f: f.update(sb=[f["sb"][0], f["sb"][1] + 2]), "sb holds"),
    (lambda f: f.update(b_bits=2), "codes outside"),  # B's int4 codes do not fit int2
    (lambda f: f.pop("sa"), "'sa' missing"),
])
def test_strict_reader_refuses_damaged_lqer_fields(change, message):
    from golf.quant.validate_artifact import ArtifactError, check_body

    w, _ = _rank1_case()
    q = QuantConfig(schemes={"int6": SchemeConfig(bits=6, clip="rowmax")}, rules=[], passthrough_max_numel=0,
                    lqer=LQERConfig(top_n=1, group=8))
    st = quantize_state_dict({"w": w}, q, {"w": "int6"})
    check_body(serialize(st, q))
    with pytest.raises(ArtifactError, match=message):
        check_body(_body_with(st, q, change))


def test_report_counts_the_factors():
    from golf.quant.config import Packing
    from golf.quant.report import tensor_report

    w, _ = _rank1_case()
    q = QuantConfig(schemes={"int6": SchemeConfig(bits=6, clip="rowmax")}, rules=[], passthrough_max_numel=0,
                    lqer=LQERConfig(top_n=1, rank=4, group=8))
    st = quantize_state_dict({"w": w}, q, {"w": "int6"})
    row = tensor_report("w", w, st["w"], "rules[0]", Packing.int8)
    # codes 48 + A 8×4 + B 4×6; scales 8 fp16 rows + sA + 3 groups of B
    assert (row.code_bytes, row.bytes_after) == (48 + 32 + 24, 48 + 32 + 24 + 2 * (8 + 1 + 3))
