"""The generated script's own config and plan: read back from ``train_gpt.py`` (defined, not run), every
field it keeps is the resolved config's, its tables are the lab's, and its model is the experiment's."""

from __future__ import annotations

import math
import sys
import types

import pytest
import torch

from golf.config.validate import load_config
from golf.model import build_model, count_parameters
from golf.plan import submission_of, submission_plan
from golf.specialise import Node, plain
from tests.helpers import compose_config, group_options


def kept_fields_agree(script, resolved, where="C") -> int:
    """Every field the script's config keeps equals the resolved one; returns how many leaves matched."""
    if isinstance(resolved, Node):
        fields = vars(script)
        assert set(fields) <= set(resolved), f"{where}: fields the config does not have: {set(fields) - set(resolved)}"
        return sum(kept_fields_agree(v, resolved[k], f"{where}.{k}") for k, v in fields.items())
    if isinstance(resolved, dict):
        assert set(script) <= set(resolved), where
        return sum(kept_fields_agree(v, resolved[k], f"{where}[{k!r}]") for k, v in script.items())
    if isinstance(resolved, list):
        assert len(script) == len(resolved), where
        return sum(kept_fields_agree(a, b, f"{where}[{i}]") for i, (a, b) in enumerate(zip(script, resolved)))
    assert script == resolved and type(script) is type(resolved), f"{where}: {script!r} != {resolved!r}"
    return 1


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_the_script_carries_the_resolved_config_tables_and_model(experiment):
    cfg = load_config(compose_config([f"experiment={experiment}"]))
    sub = submission_of(cfg)
    module = types.ModuleType(f"train_gpt_{experiment}")  # not __main__: the definitions only
    sys.modules[module.__name__] = module  # (dataclasses look their module up)
    try:
        exec(compile(sub.readable, "train_gpt.py", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    ns = module.__dict__
    assert kept_fields_agree(ns["C"], plain(cfg)) > 5
    used = set(submission_plan(cfg)["schemes"].values())
    assert set(vars(ns["C"].quant)["schemes"]) == used & set(cfg.quant.schemes)  # only the schemes in use
    assert ns["T"] == submission_plan(cfg)  # the per-block comprehensions rebuild the same tables
    with torch.device("meta"):
        model = ns["build_gpt"](ns["C"].arch)
        want = count_parameters(build_model(cfg.arch))["total"]
    assert sum(math.prod(p.shape) for p in model.parameters()) == want
    assert [n for n, _ in model.named_parameters()] == list(ns["T"]["groups"])
