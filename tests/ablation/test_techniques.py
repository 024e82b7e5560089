"""Techniques found in the config schema, their off forms, and how removals are settled (fast tier)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pytest

from golf.config.validate import load_config
from hydra_plugins.golf_ablation._plan import diff_overrides, override, render
from hydra_plugins.golf_ablation._techniques import find_techniques
from hydra_plugins.golf_launcher.checks import build_on_meta
from tests.ablation.helpers import SPEC_SEEDS, SPEC_TO_GOLF, composed, planner
from tests.helpers import TINY, compose_config


@pytest.mark.parametrize("experiment", sorted(SPEC_SEEDS))
def test_the_techniques_found_are_the_spec_list_of_each_seed(experiment):
    cfg = load_config(compose_config([f"experiment={experiment}"]))
    found = [t.label for t in find_techniques(cfg)]
    expected = [SPEC_TO_GOLF[item] for item in SPEC_SEEDS[experiment]]
    assert len(found) == len(set(found)) and len(expected) == len(set(expected))
    assert sorted(found) == sorted(expected)


class Mode(enum.Enum):
    plain = "plain"
    fancy = "fancy"


@dataclass
class NewTechnique:
    size: int = 3


@dataclass
class Inner:
    fresh: NewTechnique | None = None  # a sub-config the planner has never heard of
    mode: Mode = Mode.plain
    flag: bool = False
    width: int = 4  # a setting, not a switch


@dataclass
class Arch:
    inner: Inner = field(default_factory=Inner)


@dataclass
class Root:
    arch: Arch = field(default_factory=Arch)
    seed: int = 0  # outside the technique groups


def test_a_new_schema_field_is_found_without_any_change_to_the_planner():
    assert find_techniques(Root()) == []
    cfg = Root(Arch(Inner(fresh=NewTechnique(), mode=Mode.fancy, flag=True, width=8)), seed=3)
    found = {t.label: t.edits for t in find_techniques(cfg)}
    assert list(found) == ["fresh", "fancy", "flag"]  # schema order; width and seed are settings
    assert all(len(e) == 1 for e in found.values())


def test_variants_belong_to_their_technique_and_policies_are_not_techniques():
    cfg = load_config(compose_config(["experiment=pr344"]))  # XSA with the raw value, over_limit=warn
    labels = [t.label for t in find_techniques(cfg)]
    assert "xsa" in labels and "raw" not in labels and "warn" not in labels
    xsa = next(t for t in find_techniques(cfg) if t.label == "xsa")
    assert xsa.paths == ["arch.attention.xsa"]


def test_override_values_parse_back_exactly():
    tricky = ["^blocks\\.([5-9]|10)\\.(attn|mlp)\\.weight$", "it's", "a\\'b", "${seed}", "", "x=y,z"]
    for s in tricky:
        assert override("k", s).startswith("k='")
    rules = [{"pattern": p, "group": "scalar", "lr_mul": 2.0} for p in tricky] + [{"x": None, "y": [1, True]}]
    override("optimizer.rules", rules)  # raises if Hydra would read it differently
    assert render(None) == "null" and render(1e-08) == "1e-08"
    old = {"a": {"b": 1, "c": [1, 2]}, "d": {"e": 1}}
    new = {"a": {"b": 1, "c": [1]}, "d": None, "f": 2}
    assert diff_overrides(old, new) == ["a.c=[1]", "d=null", "+f=2"]
    assert diff_overrides({"x": {"y": 1}}, {"x": {}}) == ["~x.y"]


def test_baseline_points_validate_and_repair_routing_tables():
    plan = planner(["experiment=baseline"]).plan()
    by_name = {p.name: p for p in plan.points}
    assert list(by_name) == ["full", "no-unet_skips", "no-momentum_warmup"]
    skips = by_name["no-unet_skips"]
    assert skips.overrides[0] == "arch.skips=null"
    for p in plan.points:  # each point composes through Hydra, validates and builds, without its techniques
        cfg = load_config(compose_config(["experiment=baseline", *p.overrides]))
        build_on_meta(cfg)
        assert {t.label for t in find_techniques(cfg)} == set(plan.techniques) - set(p.off)


def test_techniques_that_cannot_be_removed_alone_are_grouped():
    # #344's optional SWA of the EMA: removing the EMA alone leaves SWA without its source
    overrides = [*TINY, "averaging=swa_of_ema_pr344"]
    plan = planner(overrides).plan(only=["ema", "swa"])
    assert list(plan.groups) == ["ema+swa"]
    assert "ema cannot be removed without swa" in plan.groups["ema+swa"]
    assert "averaging.swa.source" in plan.groups["ema+swa"]
    by_name = {p.name: p for p in plan.points}
    assert set(by_name) == {"full", "no-ema+swa", "no-swa"}
    assert by_name["no-ema+swa"].off == ["ema", "swa"]
    # SWA alone is removable: the exported weights become the EMA's (a value the averaging presets use)
    no_swa = by_name["no-swa"]
    assert "averaging.swa=null" in no_swa.overrides and "averaging.export='ema'" in no_swa.overrides
    cfg = load_config(compose_config([*overrides, *no_swa.overrides]))
    assert cfg.averaging.swa is None and cfg.averaging.export == "ema" and cfg.averaging.ema is not None


def test_schema_fields_are_set_and_only_free_dict_entries_deleted():
    # Hydra cannot delete a field of the typed schema: an absent technique is `key=null`, a default is
    # written out, and `~` only removes an entry of a free dict (the int6 scheme of the export tables)
    overrides = [*TINY, "quant=int6", "averaging=ema0997", "arch.mlp.activation=leaky_relu2"]
    plan = planner(overrides).plan(only=["lowbit_quant", "ema", "leaky_relu2"])
    by_name = {p.name: p.overrides for p in plan.points}
    assert by_name["no-ema"][0] == "averaging.ema=null"
    assert "arch.mlp.activation='relu2'" in by_name["no-leaky_relu2"]
    deleted = [o for p in plan.points for o in p.overrides if o.startswith("~")]
    assert deleted == ["~quant.schemes.int6"]
    for p in plan.points:
        cfg = load_config(compose_config([*overrides, *p.overrides]))
        assert {t.label for t in find_techniques(cfg)} == set(plan.techniques) - set(p.off)


def test_test_time_training_comes_off_to_sliding_and_sliding_only_with_it():
    overrides = [*TINY, "eval=ttt"]
    plan = planner(overrides).plan(only=["ttt", "sliding_eval"])
    by_name = {p.name: p for p in plan.points}
    assert set(by_name) == {"full", "no-ttt", "no-ttt+sliding_eval"}
    assert "sliding_eval cannot be removed without ttt" in plan.groups["ttt+sliding_eval"]
    no_ttt = load_config(compose_config([*overrides, *by_name["no-ttt"].overrides])).eval
    assert no_ttt.kind == "sliding" and no_ttt.ttt is None and no_ttt.stride is not None
    neither = load_config(compose_config([*overrides, *by_name["no-ttt+sliding_eval"].overrides])).eval
    assert neither.kind == "standard" and neither.ttt is None and neither.seq_len is None


def test_unknown_technique_names_are_refused_with_the_list():
    with pytest.raises(ValueError, match="'xsa' is not in this recipe; it has: unet_skips, momentum_warmup"):
        planner(["experiment=baseline"]).plan(only=["xsa"])


def test_composed_view_is_unresolved():
    assert "${" in composed(["experiment=baseline"])["run_name"]  # interpolations resolve in the job
