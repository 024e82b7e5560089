"""Which tensors each seed experiment stores fp32, fp16 and quantized (with bits), at full size.

The expectation is written independently of golf's roles, from each seed's export as spec §3 and §6
describe it (its name patterns, size threshold and fp32 list, in golf's parameter names); golf's
routing (roles, rule tables, presets) must give exactly that for every tensor of the full-size model,
built on the meta device.
"""

from __future__ import annotations

import re
from collections import Counter
from functools import cache

import pytest
import torch

from golf.config.validate import load_config
from golf.model import build_model
from golf.quant.config import ClipOrder, Packing, PassthroughOrder, ScalePrecision, SchemeKind
from golf.quant.routing import route_state_dict
from tests.helpers import compose_config

SMALL = 65_536


def _ends(name: str, *suffixes: str) -> bool:
    return any(name == s or name.endswith("." + s) for s in suffixes)


BASE_FP32 = ("attn_scale", "mlp_scale", "resid_mix", "q_gain", "skip_weights")  # the baseline's fp32 list


def baseline(name: str, numel: int) -> str:
    """Spec §1.8: ≤ 65,536 → fp32 for the control names, else fp16; everything else int8."""
    if numel <= SMALL:
        return "fp32" if _ends(name, *BASE_FP32) else "fp16"
    return "int8"


def pr507(name: str, numel: int) -> str:
    """§3.1 + §6: int5 (int8 grid step 8) for `.mlp.` and the bigram table, int6 (step 4) for the rest;
    fp16 tok_emb; small: fp32 for its control list, which has no value-residual or backout scalar."""
    if name == "tok_emb.weight":
        return "fp16"
    if numel <= SMALL:
        fp32 = (*BASE_FP32, "skip_gates", "bigram.scale", "smear.gate", "smear.scale", "cat_attn", "cat_mlp",
                "attn_gate.bias")
        return "fp32" if _ends(name, *fp32) else "fp16"
    return "int8/step8" if ".mlp." in name or name == "bigram.embed.weight" else "int8/step4"


def pr187(name: str, numel: int) -> str:
    """§3.4 + §6: int6 for every tensor > 65,536 but tok_emb (fp16); its fp32 list has no SmearGate."""
    if name == "tok_emb.weight":
        return "fp16"
    if numel <= SMALL:
        return "fp32" if _ends(name, *BASE_FP32) else "fp16"
    return "int6"


def pr344(name: str, numel: int) -> str:
    """§3.2 + §6: int6 GPTQ-lite for every tensor > 65,536 (hash tables too) but tok_emb (fp16); its fp32
    list has no SmearGate; value-residual lambdas, gates and hash scales stay fp32."""
    if name == "tok_emb.weight":
        return "fp16"
    if numel <= SMALL:
        fp32 = (*BASE_FP32, "bigram.scale", "trigram.scale", "attn_gate.weight", "attn_gate.bias", "vr_lambda")
        return "fp32" if _ends(name, *fp32) else "fp16"
    return "int6"


def pr1573(name: str, numel: int) -> str:
    """§3.3 + §6: every tensor ≤ 65,536 fp16 (no fp32 at all); int5 for attention and MLP matrices; int8
    for the other large tensors (tok_emb, bigram table, VE table)."""
    if numel <= SMALL:
        return "fp16"
    return "int5" if re.search(r"\.(attn|mlp)\.", name) else "int8"


def pr295(name: str, numel: int) -> str:
    """§3.5: fp16 tok_emb and c_k of the last two of 10 layers; every other tensor ≤ 65,536 fp16; int5 MLP,
    int6 attention and bigram table."""
    if name in ("tok_emb.weight", "blocks.8.attn.c_k.weight", "blocks.9.attn.c_k.weight") or numel <= SMALL:
        return "fp16"
    if ".mlp." in name:
        return "int5"
    return "int6" if ".attn." in name or name.startswith("bigram.") else "int8"


EXPECTED = {"baseline": baseline, "pr507": pr507, "pr187": pr187, "pr344": pr344, "pr1573": pr1573, "pr295": pr295}


def _label(route) -> str:
    scheme = route.scheme
    if scheme.kind is not SchemeKind.int:
        return scheme.kind.value
    return f"int{scheme.bits}" + (f"/step{scheme.grid_step}" if scheme.grid_step > 1 else "")


@cache
def _routes(experiment: str):
    cfg = load_config(compose_config([f"experiment={experiment}"]))
    with torch.device("meta"):
        model = build_model(cfg.arch)
    sd = model.state_dict()
    return cfg, sd, route_state_dict(sd, cfg.quant, model.param_roles)


@pytest.mark.parametrize("experiment", list(EXPECTED))
def test_every_tensor_is_stored_as_the_seed_stored_it(experiment):
    cfg, sd, routes = _routes(experiment)
    got = {name: _label(r) for name, r in routes.items()}
    want = {name: EXPECTED[experiment](name, t.numel()) for name, t in sd.items()}
    assert {n: (got[n], want[n]) for n in sd if got[n] != want[n]} == {}
    counts = Counter(got.values())
    if experiment == "pr507":  # §3.1: 34 int5 + 44 int6 tensors
        assert counts["int8/step8"] == 34 and counts["int8/step4"] == 44
    if experiment in ("pr1573", "pr295"):
        assert counts["fp32"] == 0
    if experiment == "pr1573":
        assert cfg.quant.passthrough_order is PassthroughOrder.size_first and cfg.quant.packing is Packing.bits
        assert {routes[n].scheme.clip_order for n in got if got[n] == "int5"} == {ClipOrder.round_then_clamp}
    if experiment == "pr344":
        assert {routes[n].scheme.rounding_scale for n in got if got[n] == "int6"} == {ScalePrecision.fp32}


def test_seed_fp16_lists_name_the_tensors_spec_6_names():
    """The tensors §6 moves from fp32 to fp16, by name: #507's vr/backout, #187's and #344's SmearGate."""
    changed = {}
    for experiment in ("pr507", "pr187", "pr344"):
        _, sd, routes = _routes(experiment)
        changed[experiment] = sorted(re.sub(r"blocks\.\d+\.", "blocks.N.", n) for n, r in routes.items()
                                     if r.reason == "base_rules[0]" and r.scheme_name == "fp16")
    assert sorted(set(changed["pr507"])) == ["backout_lambda", "blocks.N.attn.vr_lambda"]
    assert changed["pr507"].count("blocks.N.attn.vr_lambda") == 10  # layers 1..10 (layer 0 has none)
    assert changed["pr187"] == changed["pr344"] == ["smear.gate"]
