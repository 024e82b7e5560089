"""Config groups compose: every arch × optimizer × quant preset, and every averaging and eval option
with each architecture, is accepted (on the meta device: no data, no weights)."""

from __future__ import annotations

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from golf.config.validate import load_config
from golf.model import as_arch_config, build_model
from golf.optim.config import OptimizerConfig, validate_optimizer
from golf.optim.groups import assign_groups
from golf.quant.config import QuantConfig, validate_quant
from golf.quant.qat import apply_qat
from golf.quant.routing import route_state_dict
from tests.helpers import compose_config, demo_data_for, group_options

ARCHS = group_options("arch")


def _data(arch: str) -> str:
    return demo_data_for(arch)


def _typed(schema, node):
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


@pytest.mark.parametrize("arch", ARCHS)
def test_every_optimizer_and_quant_preset_fits_the_architecture(arch):
    """The same check as validation (golf.config.policies), over the full product, one meta model per arch."""
    with torch.device("meta"):
        model = build_model(as_arch_config(compose_config([f"arch={arch}", _data(arch)]).arch))
    params = dict(model.named_parameters())
    for name in group_options("optimizer"):
        cfg = _typed(OptimizerConfig, compose_config([f"optimizer={name}"]).optimizer)
        validate_optimizer(cfg)
        routes = assign_groups(params, model.param_roles, cfg.rules, prefix=f"optimizer={name}")
        assert len(routes) == len(params)
    for name in group_options("quant"):
        cfg = _typed(QuantConfig, compose_config([f"quant={name}"]).quant)
        validate_quant(cfg)
        routes = route_state_dict(model.state_dict(), cfg, model.param_roles, prefix=f"quant={name}")
        assert set(routes) == set(params)
        with torch.device("meta"):
            qat = apply_qat(model, cfg.qat, prefix=f"quant={name}.qat")
        qat.remove(model)


def _pairs():
    """Each arch with every averaging option and every eval option (paired up, so each appears)."""
    averaging, evals = group_options("averaging"), group_options("eval")
    n = max(len(averaging), len(evals))
    for arch in ARCHS:
        for avg, ev in itertools.islice(zip(itertools.cycle(averaging), itertools.cycle(evals)), n):
            yield arch, avg, ev


@pytest.mark.parametrize("arch,averaging,eval_", list(_pairs()))
def test_every_averaging_and_eval_option_validates_with_each_architecture(arch, averaging, eval_):
    load_config(compose_config([f"arch={arch}", f"averaging={averaging}", f"eval={eval_}", _data(arch)]))


@pytest.mark.parametrize("arch", ARCHS)
def test_the_default_recipe_accepts_every_architecture(arch):
    """The README's first command used to stop on a parameter the default optimizer did not name."""
    load_config(compose_config([f"arch={arch}", _data(arch)]))
