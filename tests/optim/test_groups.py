"""The optimizer's rule table over parameter roles: every parameter exactly once, first match wins."""

from __future__ import annotations

import pytest
import torch

from golf.config.errors import ConfigError
from golf.optim.config import OptimizerConfig, ParamRule
from golf.optim.groups import assign_groups, group_table, groups_table
from tests.helpers import roles_by_name
from tests.optim.standin import StandIn, decoder_cfg

BASELINE_RULES = OptimizerConfig().rules


def _routes(model, rules):
    return assign_groups(dict(model.named_parameters()), model.param_roles, rules)


def test_baseline_rules_route_every_baseline_parameter():
    model = StandIn(layers=4)
    named = list(model.named_parameters())
    routes = _routes(model, BASELINE_RULES)
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
        ParamRule(select="kind=matrix & place=decoder", group="muon", lr_mul=2.0),
        ParamRule(select="kind=matrix", group="muon"),
        ParamRule(select="layer>=2", group="scalar", lr_mul=2.0, wd_mul=0.0),
        ParamRule(select="*", group="scalar"),
    ]
    routes = {r.name: r for r in _routes(StandIn(layers=4), rules)}
    assert routes["blocks.3.mlp.fc.weight"].lr_mul == 2.0 and routes["blocks.3.mlp.fc.weight"].rule == 0
    assert routes["blocks.1.mlp.fc.weight"].lr_mul == 1.0
    assert routes["blocks.2.attn.q_gain"].label == "scalar[lr*2,wd*0]"
    assert routes["blocks.2.attn.c_q.weight"].label == "muon[lr*2]"
    assert routes["tok_emb.weight"].label == "scalar"


def test_a_rule_selecting_nothing_is_allowed():
    """A preset covers techniques an architecture may not have (an untied head here)."""
    rules = [ParamRule(select="kind=head", group="head"), *BASELINE_RULES]
    assert len(_routes(StandIn(), rules)) == len(list(StandIn().parameters()))


def test_a_parameter_selected_by_no_rule_is_rejected_naming_it_and_its_roles():
    with pytest.raises(ConfigError) as err:
        _routes(StandIn(), [r for r in BASELINE_RULES if r.select != "kind=control"])
    assert err.value.key == "optimizer.rules"
    assert err.value.value == "skip_weights"  # the root's own parameters come first
    assert "kind=control place=middle part=none family=unet" in err.value.reason


def test_vectors_cannot_go_to_muon():
    params = {"blocks.0.attn.c_q.weight": torch.zeros(3, 3), "blocks.0.attn_scale": torch.zeros(3)}
    with pytest.raises(ConfigError) as err:
        assign_groups(params, roles_by_name(params), [ParamRule(select="*", group="muon")])
    assert err.value.key == "optimizer.rules[0].group"
    assert "attn_scale" in err.value.reason


def test_groups_table_is_the_plain_table_the_kernel_takes():
    """name -> [group, lr_mul, wd_mul] for every parameter, in the model's order (#507-style rules)."""
    model = StandIn(layers=4)
    table = groups_table(model, decoder_cfg())
    assert list(table) == [n for n, _ in model.named_parameters()]
    assert table["tok_emb.weight"] == ["tok", 1.0, 1.0]
    assert table["blocks.0.attn.c_q.weight"] == ["muon", 1.0, 1.0]
    assert table["blocks.3.mlp.fc.weight"] == ["muon", 2.0, 1.0]
    assert table["blocks.2.attn_scale"] == ["scalar", 2.0, 1.0]
    assert table["skip_weights"] == ["frozen", 1.0, 1.0]
