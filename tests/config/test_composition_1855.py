"""#1855's model options compose with every architecture preset at scale=cpu width: each validates, builds,
labels and routes every parameter, and runs a forward and backward (at vocabulary 64; frontier-1855 spec
§3.3, §3.5, §3.8)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from omegaconf import OmegaConf

from golf.config.validate import load_config
from golf.model import build_model
from golf.optim import build_optimizer
from tests.helpers import compose_config, demo_data_for, group_options

OPTIONS = {
    "smear_bos": {"input": {"smear": {"variant": "scalar_gate_bos", "gate_dims": 12}}},
    "sparse_gate": {"attention": {"gate": {"kind": "sparse", "layers": "all", "window": 12, "scale": 0.5}}},
    "two_lane": {"residual": {"parallel": None, "two_lane": {"start_layer": -2}}},  # the last two blocks
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("arch", group_options("arch"))
def test_option_composes_with_every_arch(arch, option):
    composed = compose_config([f"arch={arch}", demo_data_for(arch), "scale=cpu", "optimizer=pr1855"])
    delta = OPTIONS[option]
    if option == "two_lane":
        delta = {"residual": {"parallel": None, "two_lane": {"start_layer": composed.arch.num_layers - 2}}}
    composed.arch = OmegaConf.merge(composed.arch, delta)
    cfg = load_config(composed)
    torch.manual_seed(0)
    model = build_model(dataclasses.replace(cfg.arch, vocab_size=64))  # every parameter labelled (else it raises)
    build_optimizer(model, cfg.optimizer)  # every parameter routed
    ids = torch.randint(0, 64, (2, 16))
    loss = model(ids, ids)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
