"""#1855's model options compose with every architecture preset at scale=cpu width: each validates, builds,
labels every parameter, is routed by the #1855 optimizer and #1493 export tables, and runs a forward and
backward (at vocabulary 64; frontier-1855 spec §3.3, §3.5, §3.8)."""

from __future__ import annotations

import dataclasses
import functools

import pytest
import torch
from omegaconf import OmegaConf

from golf.model import as_arch_config, build_model
from golf.optim import build_optimizer
from golf.optim.config import OptimizerConfig
from golf.quant.config import QuantConfig
from golf.quant.routing import route_state_dict
from tests.helpers import compose_config, demo_data_for, group_options

OPTIONS = {
    "smear_bos": lambda L: {"input": {"smear": {"variant": "scalar_gate_bos", "gate_dims": 12}}},
    "sparse_gate": lambda L: {"attention": {"gate": {"kind": "sparse", "layers": "all", "window": 12, "scale": 0.5}}},
    "two_lane": lambda L: {"residual": {"parallel": None, "two_lane": {"start_layer": L - 2}}},  # the last two blocks
}


@functools.cache
def _composed(arch: str):
    c = compose_config([f"arch={arch}", demo_data_for(arch), "scale=cpu", "optimizer=pr1855", "quant=pr1493"])
    typed = [OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(s), node))
             for s, node in ((OptimizerConfig, c.optimizer), (QuantConfig, c.quant))]
    return c.arch, *typed


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("arch", group_options("arch"))
def test_option_composes_with_every_arch(arch, option):
    arch_node, optimizer, quant = _composed(arch)
    cfg = as_arch_config(OmegaConf.merge(arch_node, OPTIONS[option](arch_node.num_layers)))
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(cfg, vocab_size=64))  # validated; every parameter labelled
    build_optimizer(model, optimizer)  # every parameter routed
    route_state_dict(model.state_dict(), quant, model.param_roles)
    ids = torch.randint(0, 64, (2, 16))
    loss = model(ids, ids)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pr1855_dry_run_prints_the_recipe(capsys):
    """The record's 35,945,671 parameters, the 17 applications after the loop switch with the lanes from
    block 8 marked, the optimizer groups, and an estimate under the limit (frontier-1855 spec §3.11)."""
    from golf.config.validate import load_config
    from golf.train import dry_run

    out = dry_run(load_config(compose_config(["experiment=pr1855"])))
    printed = capsys.readouterr().out
    assert out["model_params"] == 35_945_671 and "35,945,671" in printed
    assert "block order (topology 1): [0, 1, 2, 3, 4, 5, 3, 4, 5, 3, 4, 5, 6, 7, 8, 9, 10]" in printed
    assert "two lanes from application 14 (block 8): [8, 9, 10]" in printed
    assert "optimizer groups:" in printed and "muon" in printed
    assert out["estimated_artifact_bytes"] < 16_000_000
