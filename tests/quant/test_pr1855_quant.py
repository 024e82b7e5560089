"""quant=pr1855 (spec frontier-1855 §5.3/§5.4): bit widths and clips by role, int8 per-row gates stored
whatever their size, and the preset on the real model's parameters."""

from __future__ import annotations

import pytest
import torch

from golf.kernel.artifact import quantize_state_dict
from golf.kernel.quantize import dequantize
from golf.model import build_model
from golf.quant.config import PassthroughOrder, QuantConfig, RuleConfig, SchemeConfig, SchemeKind
from golf.quant.routing import route_state_dict
from tests.helpers import compose_config, roles_by_name

from .conftest import load_preset

GATE = "blocks.0.attn.attn_gate.weight"


def test_int8_row_gate_by_hand():
    """s = fp16(max|w_row|/127), q = round half to even of w/s, clamped to ±127 (§5.4)."""
    cfg = load_preset("pr1855", small=None)
    cfg.lqer = None  # (the gate would be the only int matrix here, so LQER would correct it)
    w = torch.tensor([[0.9921875, -0.5, 0.30078125, -0.30078125, 0.1],  # max 127/128: s = 2^-7 exactly
                      [0.0, 0.0, 0.0, 0.0, 0.0],                        # all zero: codes 0
                      [-2.0, 1.0, 0.0078125, -0.5, 0.25]]).repeat(3, 1)  # 9 x 5 = 45 elements (>= 32)
    sd = {GATE: w, "blocks.0.attn.c_q.weight": torch.randn(64, 64)}
    routes = route_state_dict(sd, cfg, roles_by_name(sd))
    assert routes[GATE].scheme_name == "int8_row"  # 45 elements: kept out of the fp16 passthrough
    st = quantize_state_dict(sd, cfg, {n: r.scheme_name for n, r in routes.items()})
    qt = st[GATE][2]
    assert qt.scale.dtype == torch.float16 and qt.scale[:3].tolist() == [2**-7, 0.0, float(torch.tensor(2 / 127).half())]
    # row 0: w·128 = 127, −64, 38.5 → 38 (even), −38.5 → −38, 12.8 → 13
    assert qt.q[0].tolist() == [127, -64, 38, -38, 13]
    assert qt.q[1].tolist() == [0] * 5
    s2 = float(torch.tensor(2 / 127).half())  # 0.015747...: −2/s2 = −127.0, 1/s2 = 63.5 → 64 (even)
    assert qt.q[2].tolist() == [round(-2 / s2), 64, round(0.0078125 / s2), round(-0.5 / s2), round(0.25 / s2)]
    assert qt.q[2, 0] == -127
    assert torch.equal(dequantize(qt), qt.q.float() * qt.scale.float()[:, None])


@pytest.mark.parametrize("order", list(PassthroughOrder))
def test_quantize_small_holds_under_both_passthrough_orders(order):
    schemes = {"row": SchemeConfig(bits=8, clip="rowmax", quantize_small=True), "int6": SchemeConfig(bits=6),
               "fp16": SchemeConfig(kind=SchemeKind.fp16), "fp32": SchemeConfig(kind=SchemeKind.fp32)}
    cfg = QuantConfig(schemes=schemes, passthrough_order=order, base_rules=[],
                      rules=[RuleConfig("name~'attn_gate'", "row"), RuleConfig("*", "int6")])
    sd = {GATE: torch.zeros(8, 12), "blocks.0.attn.q_gain": torch.zeros(8), "blocks.0.mlp.fc.weight": torch.zeros(300, 300),
          "blocks.0.attn.c_k.weight": torch.zeros(8, 8)}
    routes = {n: r.scheme_name for n, r in route_state_dict(sd, cfg, roles_by_name(sd)).items()}
    assert routes == {GATE: "row", "blocks.0.attn.q_gain": "fp16", "blocks.0.mlp.fc.weight": "int6",
                      "blocks.0.attn.c_k.weight": "fp16"}


def _model(overrides):
    from golf.config.validate import load_config

    cfg = load_config(compose_config(["quant=pr1855", *overrides]))
    with torch.device("meta"):
        return cfg, build_model(cfg.arch)


def test_preset_routes_the_pr1493_model_by_role():
    cfg, model = _model(["experiment=pr1493", "quant=pr1855"])
    routes = {n: r.scheme_name for n, r in route_state_dict(model.state_dict(), cfg.quant, model.param_roles).items()}
    assert routes["tok_emb.weight"] == "int7_emb_gptq"
    for i in (0, 10):
        b = f"blocks.{i}."
        assert {routes[b + k] for k in ("attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight")} \
            == {"int6_attn_gptq"}
        assert {routes[b + k] for k in ("mlp.fc.weight", "mlp.proj.weight")} == {"int6_mlp_gptq"}
        assert routes[b + "attn.q_gain"] == routes[b + "resid_mix"] == "fp16"
    assert "int8_row" not in routes.values()  # this architecture has no gate: the rule selects nothing
    s = cfg.quant.schemes
    assert (s["int7_emb_gptq"].bits, s["int7_emb_gptq"].clip_sigmas) == (7, 14.0)
    assert (s["int6_mlp_gptq"].bits, s["int6_mlp_gptq"].clip_sigmas) == (6, 11.5)
    assert (s["int6_attn_gptq"].bits, s["int6_attn_gptq"].clip_sigmas) == (6, 13.0)
    assert cfg.quant.calibration.batches == 16 and cfg.quant.lqer.top_n == 3


def test_preset_stores_an_input_gate_int8_per_row():
    cfg, model = _model(["experiment=pr1493", "quant=pr1855", "++arch.attention.gate={kind:input}"])
    routes = {n: r.scheme_name for n, r in route_state_dict(model.state_dict(), cfg.quant, model.param_roles).items()}
    gates = {n: s for n, s in routes.items() if "attn_gate" in n}
    assert gates and {s for n, s in gates.items() if n.endswith(".weight")} == {"int8_row"}
    assert {s for n, s in gates.items() if n.endswith(".bias")} == {"fp16"}
