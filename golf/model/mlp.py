"""The MLP of a block: relu² (baseline), LeakyReLU(0.5)², GELU, or SwiGLU (spec §1.5, §2.12).

* two-matrix MLPs: ``proj(act(fc(x)))`` with ``fc`` d->h, ``proj`` h->d zero-init;
  relu2 = relu(.)², leaky_relu2 = leaky_relu(., 0.5)² (PR #493/#518; #344 at h=1792, #1573 at h=1536),
  gelu = GELU (erf form).
* SwiGLU (#507): ``proj(silu(gate(x)) * fc(x))``, three matrices; by default parameter-matched to a
  two-matrix MLP of the same ``mult``: h = 2 * mult * d / 3 (mult 3, d 512 -> h 1024).

Hidden sizes come from :func:`golf.model.config.mlp_hidden` (fractional multipliers: 3.5 x 512 = 1792).
PARAMS: ``blocks.{i}.mlp.fc.weight``, ``blocks.{i}.mlp.proj.weight``, SwiGLU adds ``blocks.{i}.mlp.gate.weight``.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.config import ArchConfig, MLPActivation, mlp_hidden
from golf.model.init import output_linear
from golf.model.roles import Label

MLP_ROLES = {f"{n}.weight": Label("matrix", "core") for n in ("gate", "fc", "proj")}


def relu2(h: Tensor) -> Tensor:
    return torch.relu(h).square()


def leaky_relu2(h: Tensor, negative_slope: float) -> Tensor:
    return F.leaky_relu(h, negative_slope).square()


def activation_fn(cfg: ArchConfig):
    m = cfg.mlp
    if m.activation is MLPActivation.relu2:
        return relu2
    if m.activation is MLPActivation.leaky_relu2:
        return partial(leaky_relu2, negative_slope=m.negative_slope)
    return F.gelu


class MLP(nn.Module):
    PARAM_ROLES = MLP_ROLES

    def __init__(self, dim: int, hidden: int, activation):
        super().__init__()
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = output_linear(hidden, dim)
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.activation(self.fc(x)))


class SwiGLU(nn.Module):
    PARAM_ROLES = MLP_ROLES

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.fc = nn.Linear(dim, hidden, bias=False)
        self.proj = output_linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(F.silu(self.gate(x)) * self.fc(x))


def build_mlp(cfg: ArchConfig) -> nn.Module:
    m, h = cfg.mlp, mlp_hidden(cfg)
    if m.activation is MLPActivation.swiglu:
        return SwiGLU(cfg.model_dim, h)
    return MLP(cfg.model_dim, h, activation_fn(cfg))
