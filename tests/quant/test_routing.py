"""Routing by parameter role: order of resolution, the passthrough size, and errors for unrouted tensors."""

from __future__ import annotations

import pytest
import torch

from golf.config.errors import ConfigError
from golf.quant.config import PruneConfig, QuantConfig, RuleConfig, SchemeConfig, SchemeKind
from golf.quant.routing import prune_table, route_state_dict, schemes_table
from tests.helpers import roles_by_name


def _cfg(rules, **kw) -> QuantConfig:
    schemes = {"int8": SchemeConfig(), "int6": SchemeConfig(bits=6), "fp16": SchemeConfig(kind=SchemeKind.fp16),
               "fp32": SchemeConfig(kind=SchemeKind.fp32)}
    return QuantConfig(schemes=schemes, rules=[RuleConfig(p, s) for p, s in rules], **kw)


def test_resolution_order():
    sd = {"tok_emb.weight": torch.zeros(100, 10), "blocks.0.mlp.fc.weight": torch.zeros(100, 10),
          "blocks.0.attn.c_q.weight": torch.zeros(10, 100), "blocks.0.attn_scale": torch.zeros(10),
          "blocks.0.resid_mix": torch.zeros(2, 1000), "blocks.0.attn.c_k.weight": torch.zeros(5, 10),
          "step": torch.zeros(3000, dtype=torch.int64)}
    cfg = _cfg([("kind=embedding", "fp16"), ("part=mlp", "int6"), ("*", "int8")], passthrough_max_numel=100)
    routes = route_state_dict(sd, cfg, roles_by_name(sd))
    assert {k: r.scheme_name for k, r in routes.items()} == {
        "tok_emb.weight": "fp16", "blocks.0.mlp.fc.weight": "int6", "blocks.0.attn.c_q.weight": "int8",
        "blocks.0.attn_scale": "fp32",  # small control tensor (base_rules)
        "blocks.0.resid_mix": "fp32",   # large control tensor
        "blocks.0.attn.c_k.weight": "fp16",  # small: an int scheme becomes fp16
        "step": "raw"}                  # not floating point
    assert routes["blocks.0.mlp.fc.weight"].reason == "rules[1]"
    assert routes["blocks.0.attn_scale"].reason == "base_rules[0]"


def test_without_base_rules_small_control_tensors_are_fp16():
    sd = {"blocks.0.attn_scale": torch.zeros(10), "blocks.0.mlp.fc.weight": torch.zeros(300, 300)}
    routes = route_state_dict(sd, _cfg([("*", "int8")], base_rules=[]), roles_by_name(sd))
    assert routes["blocks.0.attn_scale"].scheme_name == "fp16"


def test_first_matching_rule_wins_and_a_rule_may_select_nothing():
    sd = {"blocks.0.mlp.fc.weight": torch.zeros(300, 300)}
    cfg = _cfg([("family=bigram", "int8"), ("part=mlp", "int6"), ("kind=matrix", "int8")])
    assert route_state_dict(sd, cfg, roles_by_name(sd))["blocks.0.mlp.fc.weight"].scheme_name == "int6"


def test_tensor_selected_by_no_rule_is_an_error_naming_it_and_its_roles():
    sd = {"blocks.0.mlp.fc.weight": torch.zeros(300, 300), "lm_head.weight": torch.zeros(300, 300)}
    with pytest.raises(ConfigError, match="kind=head place=exit") as err:
        route_state_dict(sd, _cfg([("part=mlp", "int6")]), roles_by_name(sd))
    assert err.value.key == "quant.rules" and err.value.value == "lm_head.weight"


def test_a_float_tensor_without_a_role_is_an_error():
    sd = {"w": torch.zeros(300, 300)}
    with pytest.raises(ConfigError, match="no parameter role"):
        route_state_dict(sd, _cfg([("*", "int8")]), {})


def test_routing_works_on_meta_tensors():
    sd = {"blocks.0.mlp.fc.weight": torch.empty(1000, 1000, device="meta")}
    assert route_state_dict(sd, _cfg([("*", "int8")]), roles_by_name(sd))["blocks.0.mlp.fc.weight"].scheme_name == "int8"


def test_size_first_makes_every_small_tensor_fp16_before_the_rules():
    """#1573's order: the size check comes before the control tensors' fp32 rule (spec §6)."""
    from golf.quant.config import PassthroughOrder

    sd = {"blocks.0.attn_scale": torch.zeros(10), "blocks.0.resid_mix": torch.zeros(2, 1000),
          "blocks.0.mlp.fc.weight": torch.zeros(300, 300), "blocks.0.attn.c_k.weight": torch.zeros(5, 10)}
    rules_first = route_state_dict(sd, _cfg([("*", "int8")], passthrough_max_numel=2000), roles_by_name(sd))
    size_first = route_state_dict(sd, _cfg([("*", "int8")], passthrough_max_numel=2000,
                                           passthrough_order=PassthroughOrder.size_first), roles_by_name(sd))
    assert {k: r.scheme_name for k, r in rules_first.items()} == {
        "blocks.0.attn_scale": "fp32", "blocks.0.resid_mix": "fp32", "blocks.0.mlp.fc.weight": "int8",
        "blocks.0.attn.c_k.weight": "fp16"}
    assert {k: (r.scheme_name, r.reason) for k, r in size_first.items()} == {
        "blocks.0.attn_scale": ("fp16", "numel <= 2000"), "blocks.0.resid_mix": ("fp16", "numel <= 2000"),
        "blocks.0.mlp.fc.weight": ("int8", "rules[0]"), "blocks.0.attn.c_k.weight": ("fp16", "numel <= 2000")}
    # a large control tensor still meets the fp32 rule
    big = {"blocks.0.resid_mix": torch.zeros(2, 1000)}
    routes = route_state_dict(big, _cfg([("*", "int8")], passthrough_max_numel=100,
                                        passthrough_order=PassthroughOrder.size_first), roles_by_name(big))
    assert routes["blocks.0.resid_mix"].scheme_name == "fp32"


def test_the_kernel_tables_and_their_reserved_scheme_names():
    """The kernel's scheme table names ``raw`` and ``fp16`` itself: ``raw`` is no scheme name, ``fp16`` stores fp16."""
    sd = {"blocks.0.attn_scale": torch.zeros(10), "blocks.0.mlp.fc.weight": torch.zeros(300, 300),
          "step": torch.zeros(3, dtype=torch.int64)}
    roles = roles_by_name(sd)
    cfg = _cfg([("*", "int8")], base_rules=[], prune=PruneConfig(select="part=mlp"))
    assert schemes_table(sd, cfg, roles) == {"blocks.0.attn_scale": "fp16", "blocks.0.mlp.fc.weight": "int8",
                                             "step": "raw"}
    assert prune_table(sd, cfg, roles) == ["blocks.0.mlp.fc.weight"]
    cfg.schemes["raw"] = SchemeConfig()
    with pytest.raises(ConfigError, match=r"^quant\.schemes\.raw='raw': is reserved"):
        route_state_dict(sd, cfg, roles)
    del cfg.schemes["raw"]
    cfg.schemes["fp16"] = SchemeConfig(bits=6)
    with pytest.raises(ConfigError, match=r"^quant\.schemes\.fp16\.kind='int': the fp16 scheme is where small"):
        route_state_dict(sd, cfg, roles)
    del cfg.schemes["fp16"]
    with pytest.raises(ConfigError, match=r"^quant\.schemes\.fp16=None: small tensors pass through the fp16 scheme"):
        route_state_dict(sd, cfg, roles)
    cfg.passthrough_max_numel = 0  # nothing passes through: no fp16 scheme needed
    assert route_state_dict(sd, cfg, roles)["blocks.0.attn_scale"].scheme_name == "int8"
