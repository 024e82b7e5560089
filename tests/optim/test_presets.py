"""Every optimizer preset: a valid config, and a routing table that fits its architecture exactly."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from golf.config.errors import ConfigError
from golf.model import as_arch_config, build_model
from golf.optim import assign_groups, build_optimizer
from golf.optim.config import OptimizerConfig, validate_optimizer
from tests.helpers import CONF_DIR, compose_config, group_options

# optimizer preset -> the architecture preset it was written for
ARCH_OF = {"baseline": "baseline", "pr507": "unet11", "pr344": "pr344", "pr1573": "pr1573", "pr187": "pr187",
           "pr295": "pr295", "pr1493": "pr1493", "pr1855": "pr1855"}


def load_preset(name: str) -> OptimizerConfig:
    merged = OmegaConf.merge(OmegaConf.structured(OptimizerConfig), OmegaConf.load(CONF_DIR / "optimizer" / f"{name}.yaml"))
    return OmegaConf.to_object(merged)


def meta_model(arch: str):
    """The architecture preset's parameters (names and shapes only, no memory, no init)."""
    with torch.device("meta"):
        return build_model(as_arch_config(compose_config(["data=demo", f"arch={arch}"]).arch))


@pytest.mark.parametrize("name", group_options("optimizer"))
def test_preset_merges_into_the_schema_and_validates(name):
    cfg = load_preset(name)
    validate_optimizer(cfg)
    assert cfg.name == name


def test_every_preset_names_its_architecture():
    assert set(group_options("optimizer")) == set(ARCH_OF)


def test_defaults_are_the_baseline_preset():
    assert load_preset("baseline") == OptimizerConfig()


def test_seed_recipes():
    got = {n: load_preset(n) for n in ARCH_OF}
    assert {n: c.muon.lr for n, c in got.items()} == {
        "baseline": 0.04, "pr507": 0.025, "pr344": 0.03, "pr1573": 0.025, "pr187": 0.028, "pr295": 0.02,
        "pr1493": 0.022, "pr1855": 0.026}
    assert {n: c.muon.weight_decay_timing for n, c in got.items() if c.muon.weight_decay} == {
        "pr507": "after", "pr344": "before", "pr1573": "before", "pr187": "after", "pr295": "before",
        "pr1493": "before", "pr1855": "before"}
    assert {n: c.schedule.warmdown_iters for n, c in got.items()} == {
        "baseline": 1200, "pr507": 3000, "pr344": 3500, "pr1573": 3500, "pr187": 3300, "pr295": 3000,
        "pr1493": 0, "pr1855": 0}
    assert {n: c.grad_clip_norm for n, c in got.items()} == {
        "baseline": 0.0, "pr507": 0.3, "pr344": 0.3, "pr1573": 0.3, "pr187": 0.0, "pr295": 0.3, "pr1493": 0.3,
        "pr1855": 0.3}
    assert {n: c.adam_groups["tok"].weight_decay for n, c in got.items()} == {
        "baseline": 0.0, "pr507": 0.0, "pr344": 0.0, "pr1573": 0.04, "pr187": 0.04, "pr295": 0.01,
        "pr1493": 0.085, "pr1855": 0.085}



def test_pr1493_recipe():
    c = load_preset("pr1493")
    assert c.muon.row_normalize and c.muon.weight_decay == 0.095 and c.muon.momentum == 0.99
    assert (c.muon.momentum_warmup.start, c.muon.momentum_warmup.steps) == (0.92, 1500)
    assert (c.adam_groups["tok"].lr, c.adam_groups["scalar"].lr, c.adam_groups["scalar"].weight_decay) == (0.03, 0.02, 0.02)
    assert (c.schedule.kind, c.schedule.warmdown_frac, c.schedule.min_lr_mul) == ("wallclock_fraction", 0.72, 0.0)
    assert not any(load_preset(n).muon.row_normalize for n in ARCH_OF if n not in ("pr1493", "pr1855"))


def test_pr1855_recipe():
    """frontier-1855 spec §1.2 and §4: the log's values where they differ from the code defaults."""
    c = load_preset("pr1855")
    m = c.muon
    assert (m.lr, m.momentum, m.momentum_warmup.start, m.momentum_warmup.steps) == (0.026, 0.97, 0.92, 1500)
    assert m.row_normalize and m.weight_decay == 0.095 and m.ns_steps == 5 and len(m.ns_coefficients_per_step) == 5
    assert m.momentum_dtype == "bfloat16"
    assert m.ns_coefficients_per_step[0] == [8.156554524902461, -22.48329292557795, 15.878769915207462]
    assert m.ns_coefficients_per_step[4] == [2.3465413258596377, -1.7097828382687081, 0.42323551169305323]
    assert {k: (g.lr, tuple(g.betas), g.weight_decay) for k, g in c.adam_groups.items() if k != "head"} == {
        "tok": (0.03, (0.9, 0.99), 0.085), "scalar": (0.02, (0.9, 0.99), 0.02)}
    assert (c.grad_clip_norm, c.grad_clip_scope) == (0.3, "local")
    assert (c.schedule.kind, c.schedule.warmdown_frac, c.schedule.min_lr_mul) == ("wallclock_fraction", 0.85, 0.1)


@pytest.mark.parametrize("name", sorted(ARCH_OF))
def test_rules_route_every_parameter_of_the_architecture_exactly_once(name):
    model = meta_model(ARCH_OF[name])
    named = list(model.named_parameters())
    routes = assign_groups(dict(named), model.param_roles, load_preset(name).rules)
    assert [r.name for r in routes] == [n for n, _ in named]
    opt = build_optimizer(model, load_preset(name))
    table = opt.group_table()
    assert sum(len(names) for _, names, _ in table) == len(named)
    assert sum(n for _, _, n in table) == sum(p.numel() for _, p in named)


def test_pr507_doubles_the_decoder_lr_and_freezes_backout():
    table = {label: names for label, names, _ in build_optimizer(meta_model("unet11"), load_preset("pr507")).group_table()}
    assert len(table["muon[lr*2]"]) == 6 * 7  # decoder blocks 5-10: q, k, v, out, gate, fc, proj
    assert len(table["muon"]) == 5 * 7 + 1  # encoder blocks and the bigram projection
    assert all(n.startswith(tuple(f"blocks.{i}." for i in range(5, 11))) for n in table["scalar[lr*2]"])
    assert table["frozen"] == ["backout_lambda"]


def test_bigram_projection_routing_differs_by_seed():
    groups = {}
    for name in ("pr295", "pr344", "pr1573", "pr187"):
        model = meta_model(ARCH_OF[name])
        routes = assign_groups(dict(model.named_parameters()), model.param_roles, load_preset(name).rules)
        groups[name] = {r.name: r.group for r in routes}["bigram.proj.weight"]
    assert groups == {"pr295": "muon", "pr344": "muon", "pr1573": "scalar", "pr187": "muon"}


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_routes_its_model(experiment):
    composed = compose_config([f"experiment={experiment}", "data=demo"])
    with torch.device("meta"):
        model = build_model(as_arch_config(composed.arch))
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(OptimizerConfig), composed.optimizer))
    assign_groups(dict(model.named_parameters()), model.param_roles, cfg.rules)


@pytest.mark.parametrize("layers", [9, 11, 13])
def test_pr507_doubles_the_lr_of_exactly_the_decoder_at_any_depth(layers):
    """#462/#507's 2x lr follows the decoder (blocks L//2 .. L-1), whatever the number of layers."""
    composed = compose_config(["experiment=pr507", "data=demo", f"arch.num_layers={layers}"])
    with torch.device("meta"):
        model = build_model(as_arch_config(composed.arch))
    opt = build_optimizer(model, load_preset("pr507"))
    decoder = {n for n, _ in model.named_parameters()
               if n.startswith("blocks.") and int(n.split(".")[1]) >= layers // 2}
    assert {r.name for r in opt.routes if r.lr_mul == 2.0} == decoder
    doubled_matrices = [r for r in opt.routes if r.lr_mul == 2.0 and r.group == "muon"]
    assert len(doubled_matrices) == (layers - layers // 2) * 7  # q, k, v, out, gate, fc, proj per block
    assert all(r.lr_mul == 1.0 for r in opt.routes if r.name not in decoder)


@pytest.mark.parametrize(
    "key,value",
    [
        ("muon.lr", 0.0),
        ("muon.momentum", 1.0),
        ("muon.momentum_warmup.steps", 0),
        ("muon.ns_steps", 0),
        ("muon.ns_coefficients", [1.0, 2.0]),
        ("muon.weight_decay", -0.1),
        ("muon.weight_decay_timing", "during"),
        ("adam_groups.tok.lr", -1.0),
        ("adam_groups.tok.betas", [0.9]),
        ("adam_groups.scalar.eps", 0.0),
        ("grad_clip_norm", -1.0),
        ("schedule.kind", "cosine"),
        ("schedule.warmdown_iters", -5),
    ],
)
def test_bad_values_name_the_key(key, value):
    cfg = OmegaConf.structured(OptimizerConfig)
    OmegaConf.update(cfg, key, value, merge=False)
    with pytest.raises(ConfigError) as err:
        validate_optimizer(OmegaConf.to_object(cfg))
    assert err.value.key == f"optimizer.{key}"


def test_bad_rules_name_the_rule():
    cfg = OptimizerConfig()
    cfg.rules[1].group = "adamish"
    with pytest.raises(ConfigError) as err:
        validate_optimizer(cfg)
    assert err.value.key == "optimizer.rules[1].group"
    cfg = OptimizerConfig()
    cfg.rules[2].select = "kind=matrics"
    with pytest.raises(ConfigError) as err:
        validate_optimizer(cfg)
    assert err.value.key == "optimizer.rules[2].select"
    assert "unknown kind" in err.value.reason
    cfg = OptimizerConfig()
    cfg.adam_groups["muon"] = cfg.adam_groups["tok"]
    with pytest.raises(ConfigError) as err:
        validate_optimizer(cfg)
    assert err.value.key == "optimizer.adam_groups.muon"
