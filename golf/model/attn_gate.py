"""Gated attention (arXiv:2505.06708; spec §2.9): a per-head sigmoid gate on the attention output.

* ``input``: ``gate = sigma(W x + b)`` in R^{B x T x H}, x = the (normalized, LN-scaled) attention input,
  W [H, d] zero-init, b init 4.0 (#344 and #1573, PR #487 style). An orthogonal init rule that selects
  every Linear (#344) replaces the zero W; #1573's rule (both dims >= 64) leaves it zero.
* ``static``: ``gate = sigma(b)``, one logit per head, init 4.0 (#507), independent of the input.

``y_{t,h} <- gate_{t,h} * y_{t,h}`` before the output projection.

PARAMS: ``blocks.{i}.attn.attn_gate.weight`` [H, d] (input only) and ``blocks.{i}.attn.attn_gate.bias``
[H] (control tensors: scalar Adam, fp32 passthrough at export; never Muon/QAT).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.config import AttnGateConfig, GateKind
from golf.model.roles import Label

GATE_ROLES = {"weight": Label("control", "attn_gate"), "bias": Label("control", "attn_gate")}


class InputGate(nn.Module):
    """Linear-shaped (``weight`` [H, d], ``bias`` [H]) but not an ``nn.Linear``: it is a control tensor,
    never a target of Linear-wide policies (QAT, Muon); the orthogonal init rules still see it."""

    PARAM_ROLES = GATE_ROLES

    def __init__(self, model_dim: int, num_heads: int, bias_init: float):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_heads, model_dim, dtype=torch.float32))
        self.bias = nn.Parameter(torch.full((num_heads,), bias_init, dtype=torch.float32))

    def forward(self, y: Tensor, x: Tensor, v_raw: Tensor, v: Tensor) -> Tensor:
        logits = F.linear(x, self.weight.to(x.dtype), self.bias.to(x.dtype))  # [B, T, H]
        return y * torch.sigmoid(logits).unsqueeze(-1)  # [B, T, H, 1] over [B, T, H, D]


class StaticGate(nn.Module):
    PARAM_ROLES = GATE_ROLES

    def __init__(self, num_heads: int, bias_init: float):
        super().__init__()
        self.bias = nn.Parameter(torch.full((num_heads,), bias_init, dtype=torch.float32))

    def forward(self, y: Tensor, x: Tensor, v_raw: Tensor, v: Tensor) -> Tensor:
        return y * torch.sigmoid(self.bias).to(y.dtype)[:, None]  # [H, 1] over [B, T, H, D]


def build_gate(cfg: AttnGateConfig, model_dim: int, num_heads: int) -> nn.Module:
    if cfg.kind is GateKind.input:
        return InputGate(model_dim, num_heads, cfg.bias_init)
    return StaticGate(num_heads, cfg.bias_init)
