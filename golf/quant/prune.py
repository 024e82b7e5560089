"""Magnitude pruning before quantization (spec §2.22; thwu1's 10L record p=0.03, PR #295 p=0.08).

For every float tensor whose parameter ``select`` chooses (a role expression, :mod:`golf.rules`; by
default every matrix of more than 65,536 elements, as #295): ``thr`` = the ``fraction``-quantile of |W|
over the whole tensor (linear interpolation), and entries with ``|w| < thr`` become 0. It runs after
weight averaging and right before quantization, only to make the quantized codes more compressible
(more zeros); it does not change which tensors are quantized or how. The targets are resolved from the
model's parameter roles, once (on the meta model when the config is validated).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from golf.model.roles import Role
from golf.quant.config import PruneConfig
from golf.quant.quantizer import quantile
from golf.rules import selected


def prune_tensor(t: Tensor, fraction: float) -> Tensor:
    """A copy of ``t`` with entries below the ``fraction``-quantile of |t| set to zero."""
    if fraction <= 0.0 or t.numel() == 0:
        return t.clone()
    absw = t.detach().float().abs()
    threshold = quantile(absw.flatten(), fraction)
    return torch.where(absw < threshold, torch.zeros_like(t), t)


def prune_targets(cfg: PruneConfig, roles: Mapping[str, Role], prefix: str = "quant.prune") -> set[str]:
    """The parameters ``cfg.select`` chooses (a bad expression is a ConfigError naming ``<prefix>.select``)."""
    return selected(cfg.select, roles, f"{prefix}.select")


def prune_state_dict(state_dict: dict[str, Tensor], cfg: PruneConfig, roles: Mapping[str, Role]) -> dict[str, Tensor]:
    """A new state dict with every selected float tensor magnitude-pruned; other tensors unchanged."""
    targets = prune_targets(cfg, roles)
    return {name: prune_tensor(t, cfg.fraction) if name in targets and t.is_floating_point() else t
            for name, t in state_dict.items()}
