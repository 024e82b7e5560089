"""The routing table: every parameter exactly once, and every rule must claim something."""

from __future__ import annotations

import pytest
import torch

from golf.config.errors import ConfigError
from golf.optim.config import OptimizerConfig, ParamRule
from golf.optim.groups import assign_groups, group_table
from tests.optim.standin import StandIn

BASELINE_RULES = OptimizerConfig().rules


def test_baseline_rules_route_every_baseline_parameter():
    model = StandIn(layers=4)
    named = list(model.named_parameters())
    routes = assign_groups(named, BASELINE_RULES)
    assert [r.name for r in routes] == [n for n, _ in named]
    by_group: dict[str, set[str]] = {}
    for r in routes:
        by_group.setdefault(r.group, set()).add(r.name)
    assert by_group["tok"] == {"tok_emb.weight"}
    matrices = {f"blocks.{i}.attn.{m}.weight" for i in range(4) for m in ("c_q", "c_k", "c_v", "proj")}
    matrices |= {f"blocks.{i}.mlp.{m}.weight" for i in range(4) for m in ("fc", "proj")}
    assert by_group["muon"] == matrices
    scalars = {f"blocks.{i}.{s}" for i in range(4) for s in ("attn_scale", "mlp_scale", "resid_mix", "attn.q_gain")}
    assert by_group["scalar"] == scalars | {"skip_weights"}
    table = group_table(routes, {n: p.numel() for n, p in named})
    numels = {label: numel for label, _, numel in table}
    assert numels == {"tok": 32 * 16, "muon": 4 * (16 * 16 * 2 + 8 * 16 * 2 + 32 * 16 * 2),
                      "scalar": 4 * (16 + 16 + 32 + 2) + 2 * 16}
    assert sum(numels.values()) == sum(p.numel() for p in model.parameters())


def test_first_match_wins_and_multipliers_label_the_group():
    rules = [
        ParamRule(pattern=r"^blocks\.[23]\.(attn|mlp)\.\w+\.weight$", group="muon", lr_mul=2.0),
        ParamRule(pattern=r"^blocks\.\d+\.(attn|mlp)\.\w+\.weight$", group="muon"),
        ParamRule(pattern=r"^blocks\.[23]\.", group="scalar", lr_mul=2.0, wd_mul=0.0),
        ParamRule(pattern=r".", group="scalar"),
    ]
    model = StandIn(layers=4)
    routes = {r.name: r for r in assign_groups(model.named_parameters(), rules)}
    assert routes["blocks.3.mlp.fc.weight"].lr_mul == 2.0 and routes["blocks.3.mlp.fc.weight"].rule == 0
    assert routes["blocks.1.mlp.fc.weight"].lr_mul == 1.0
    assert routes["blocks.2.attn.q_gain"].label == "scalar[lr*2,wd*0]"
    assert routes["blocks.2.attn.c_q.weight"].label == "muon[lr*2]"
    assert routes["tok_emb.weight"].label == "scalar"


def test_a_pattern_matching_nothing_is_rejected_naming_the_rule():
    rules = [*BASELINE_RULES, ParamRule(pattern=r"^lm_head\.weight$", group="head")]
    with pytest.raises(ConfigError) as err:
        assign_groups(StandIn().named_parameters(), rules)
    assert err.value.key == "optimizer.rules[4].pattern"
    assert err.value.value == r"^lm_head\.weight$"
    assert "matches no parameter" in err.value.reason


def test_a_rule_shadowed_by_earlier_rules_is_rejected():
    rules = [*BASELINE_RULES, ParamRule(pattern=r"^skip_weights$", group="tok")]
    with pytest.raises(ConfigError) as err:
        assign_groups(StandIn().named_parameters(), rules)
    assert err.value.key == "optimizer.rules[4].pattern"
    assert "earlier rules" in err.value.reason


def test_a_parameter_matched_by_no_rule_is_rejected_naming_it():
    with pytest.raises(ConfigError) as err:
        assign_groups(StandIn().named_parameters(), BASELINE_RULES[:-1])
    assert err.value.value == "skip_weights"


def test_vectors_cannot_go_to_muon():
    rules = [ParamRule(pattern=r".", group="muon")]
    with pytest.raises(ConfigError) as err:
        assign_groups([("w", torch.zeros(3, 3)), ("gain", torch.zeros(3))], rules)
    assert err.value.key == "optimizer.rules[0].group"
    assert "gain" in err.value.reason
