"""Catalytic residuals (#507, from PR #450; spec §2.13): a second per-dim gain on each residual branch.

``x <- x + attn_scale * cat_attn * attn_out``; ``x <- x + mlp_scale * cat_mlp * mlp_out`` with
``cat_attn``, ``cat_mlp`` in R^d, init 1. Functionally a re-parameterisation of the existing
``attn_scale``/``mlp_scale`` that changes the optimizer's dynamics (#507 gives decoder blocks 2x lr).

Hosted on a Block: :func:`branch_gains` names the extra gain parameters of each branch, the block
registers them under these names and multiplies every gain of a branch together.

PARAMS: ``blocks.{i}.cat_attn``, ``blocks.{i}.cat_mlp`` [d] (control tensors: scalar Adam, fp32 export).
"""

from __future__ import annotations

import torch
from torch import nn

from golf.model.config import CatalyticConfig


def branch_gains(cfg: CatalyticConfig | None, dim: int) -> dict[str, dict[str, nn.Parameter]]:
    """Extra gains per branch (``attn``, ``mlp``): {branch: {parameter name: parameter}}."""
    if cfg is None:
        return {"attn": {}, "mlp": {}}
    return {
        "attn": {"cat_attn": nn.Parameter(torch.full((dim,), cfg.init, dtype=torch.float32))},
        "mlp": {"cat_mlp": nn.Parameter(torch.full((dim,), cfg.init, dtype=torch.float32))},
    }
