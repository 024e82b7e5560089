"""Magnitude pruning before quantization (spec §2.22; thwu1's 10L record p=0.03, PR #295 p=0.08).

For every 2-D float tensor with more than ``min_numel`` elements: ``thr`` = the ``fraction``-quantile
of |W| over the whole tensor (linear interpolation), and entries with ``|w| < thr`` become 0. It runs
after weight averaging and right before quantization, only to make the quantized codes more
compressible (more zeros); it does not change which tensors are quantized or how.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golf.quant.config import PruneConfig
from golf.quant.quantizer import quantile


def prune_tensor(t: Tensor, fraction: float) -> Tensor:
    """A copy of ``t`` with entries below the ``fraction``-quantile of |t| set to zero."""
    if fraction <= 0.0 or t.numel() == 0:
        return t.clone()
    absw = t.detach().float().abs()
    threshold = quantile(absw.flatten(), fraction)
    return torch.where(absw < threshold, torch.zeros_like(t), t)


def prune_state_dict(state_dict: dict[str, Tensor], cfg: PruneConfig) -> dict[str, Tensor]:
    """A new state dict with every large float matrix magnitude-pruned; other tensors unchanged."""
    out = {}
    for name, t in state_dict.items():
        eligible = t.is_floating_point() and t.ndim == 2 and t.numel() > cfg.min_numel
        out[name] = prune_tensor(t, cfg.fraction) if eligible else t
    return out
