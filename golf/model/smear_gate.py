"""SmearGate (unnir PR #102/#135; spec §2.1): blend each position with the previous one at the input.

Three incompatible variants, x_{-1} = 0:

* A ``pass_through`` (smeargate record, #187): g = sigma(gate), gate in R^d init 3.0 (g = 0.953);
  ``x_t <- g x_t + (1-g) x_{t-1}``; before the input norm (in #187 also before pre-enrichment).
* B ``half_blend`` (#344, #295, #1573): gate in R^d init 0 (g = 0.5); ``x_t <- (1-g) x_t + g x_{t-1}``;
  after the input RMSNorm, its output is x0. At init every position is an equal mix.
* C ``scalar_gate`` (#507, modded-nanogpt): ``x_t <- x_t + lambda sigma(w . x_t[:k]) x_{t-1}``, w in R^k
  (k = 12) init 0, lambda init 0: identity at init; on the raw token embedding, before the norm.

``placement`` tells the input stage where the gate goes. PARAMS: ``smear.gate`` ([d], or [k] for C) and,
for C, ``smear.scale`` [1] (control tensors: scalar Adam, fp32 passthrough).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.config import SmearConfig, SmearVariant
from golf.model.roles import Label

PRE_NORM, POST_NORM = "pre_norm", "post_norm"
SMEAR_ROLES = {"gate": Label("control", "smear", "input"), "scale": Label("control", "smear", "input")}


def previous(x: Tensor) -> Tensor:
    """x_{t-1} along dim 1 with zeros at t = 0: [B, T, d] -> [B, T, d]."""
    return F.pad(x[:, :-1], (0, 0, 1, 0))


class PassThroughSmear(nn.Module):
    PARAM_ROLES = SMEAR_ROLES
    placement = PRE_NORM

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.full((dim,), 3.0, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate).to(x.dtype)
        return g * x + (1.0 - g) * previous(x)


class HalfBlendSmear(nn.Module):
    PARAM_ROLES = SMEAR_ROLES
    placement = POST_NORM

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate).to(x.dtype)
        return (1.0 - g) * x + g * previous(x)


class ScalarGateSmear(nn.Module):
    PARAM_ROLES = SMEAR_ROLES
    placement = PRE_NORM

    def __init__(self, gate_dims: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(gate_dims, dtype=torch.float32))
        self.scale = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        k = self.gate.numel()
        g = self.scale.to(x.dtype) * torch.sigmoid(x[..., :k] @ self.gate.to(x.dtype))  # [B, T]
        return x + g.unsqueeze(-1) * previous(x)


def build_smear(cfg: SmearConfig, dim: int) -> nn.Module:
    if cfg.variant is SmearVariant.pass_through:
        return PassThroughSmear(dim)
    if cfg.variant is SmearVariant.half_blend:
        return HalfBlendSmear(dim)
    return ScalarGateSmear(cfg.gate_dims)
