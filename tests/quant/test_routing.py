"""Routing by parameter name: order of resolution, and errors for unrouted tensors and dead rules."""

from __future__ import annotations

import pytest
import torch

from golf.config.errors import ConfigError
from golf.quant.config import QuantConfig, RuleConfig, SchemeConfig, SchemeKind
from golf.quant.routing import route_state_dict


def _cfg(rules, **kw) -> QuantConfig:
    schemes = {"int8": SchemeConfig(), "int6": SchemeConfig(bits=6), "fp16": SchemeConfig(kind=SchemeKind.fp16)}
    return QuantConfig(schemes=schemes, rules=[RuleConfig(p, s) for p, s in rules], **kw)


def test_resolution_order():
    sd = {"tok_emb.weight": torch.zeros(100, 10), "blocks.0.mlp.fc.weight": torch.zeros(100, 10),
          "blocks.0.attn.c_q.weight": torch.zeros(10, 100), "blocks.0.attn_scale": torch.zeros(10),
          "big_resid_mix": torch.zeros(2000), "tiny": torch.zeros(5), "step": torch.zeros(3000, dtype=torch.int64)}
    cfg = _cfg([("^tok_emb", "fp16"), (r"\.mlp\.", "int6"), (".*", "int8")], passthrough_max_numel=100)
    routes = route_state_dict(sd, cfg)
    assert {k: r.scheme_name for k, r in routes.items()} == {
        "tok_emb.weight": "fp16", "blocks.0.mlp.fc.weight": "int6", "blocks.0.attn.c_q.weight": "int8",
        "blocks.0.attn_scale": "fp32",  # small control tensor
        "big_resid_mix": "fp32",        # large control tensor
        "tiny": "fp16",                 # small, not control
        "step": "raw"}                  # not floating point
    assert routes["blocks.0.mlp.fc.weight"].reason == "rules[1]"


def test_first_matching_rule_wins():
    sd = {"blocks.0.mlp.fc.weight": torch.zeros(300, 300)}
    routes = route_state_dict(sd, _cfg([("fc", "int6"), ("mlp", "int8")]))
    assert routes["blocks.0.mlp.fc.weight"].scheme_name == "int6"
    # the second rule is shadowed but its pattern does match a name, so it is not an error


def test_tensor_matching_no_rule_is_an_error():
    sd = {"blocks.0.mlp.fc.weight": torch.zeros(300, 300), "lm_head.weight": torch.zeros(300, 300)}
    with pytest.raises(ConfigError, match="'lm_head.weight'.*matches no rule") as err:
        route_state_dict(sd, _cfg([(r"\.mlp\.", "int6")]))
    assert err.value.key == "quant.rules"


def test_rule_matching_no_tensor_is_an_error():
    sd = {"blocks.0.mlp.fc.weight": torch.zeros(300, 300)}
    with pytest.raises(ConfigError, match="matches no tensor") as err:
        route_state_dict(sd, _cfg([("bigram", "int6"), (".*", "int8")]))
    assert err.value.key == "quant.rules[0].pattern"


def test_routing_works_on_meta_tensors():
    sd = {"w": torch.empty(1000, 1000, device="meta")}
    assert route_state_dict(sd, _cfg([(".*", "int8")]))["w"].scheme_name == "int8"
