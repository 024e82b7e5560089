"""Value residual (ResFormer, arXiv:2410.17897; spec §2.8): blend the first layer's value into later ones.

The first attention applied in a forward pass publishes its value (shape [B, T, kv_heads, head_dim],
after any value-embedding addition) in the pass context; a layer that owns ``vr_lambda`` = (l0, l1)
then attends with ``v <- l0 * v_first + l1 * v``. Gradients flow into the first layer (no detach).

* init ``half`` = [0.5, 0.5] (#344 layers >= 1; #1573 every layer, recycled passes too);
* init ``identity`` = [0, 1] (#507's alpha = 1, beta = 0 on layers >= 1): identity at init.

Layer 0 is the source: a ``vr_lambda`` on it (#1573) only acts when layer 0 is replayed after the
first pass. XSA can remove the raw value or this blended one (:mod:`golf.model.xsa`).

PARAMS: ``blocks.{i}.attn.vr_lambda`` [2] (control scalar: Adam scalar group, fp32 at export).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golf.model.config import ValueResidualConfig, ValueResidualInit

# key of the first layer's value in the per-forward context dict
FIRST_VALUE = "v_first"

_INIT = {ValueResidualInit.half: (0.5, 0.5), ValueResidualInit.identity: (0.0, 1.0)}


class NoValueResidual:
    """The model has no value residual: values pass unchanged."""

    def attach(self, host: nn.Module) -> None:
        pass

    def __call__(self, host: nn.Module, v: Tensor, ctx: dict) -> Tensor:
        return v


class ValueResidual:
    """Hosted on a CausalSelfAttention: registers ``vr_lambda`` on it when the layer owns one."""

    def __init__(self, cfg: ValueResidualConfig, owns_lambda: bool):
        self.init, self.owns_lambda = _INIT[cfg.init], owns_lambda

    def attach(self, host: nn.Module) -> None:
        if self.owns_lambda:
            host.vr_lambda = nn.Parameter(torch.tensor(self.init, dtype=torch.float32))

    def __call__(self, host: nn.Module, v: Tensor, ctx: dict) -> Tensor:
        first = ctx.get(FIRST_VALUE)
        if first is None:
            ctx[FIRST_VALUE] = v
            return v
        if not self.owns_lambda:
            return v
        lam = host.vr_lambda.to(v.dtype)
        return lam[0] * first + lam[1] * v


def build_value_residual(cfg: ValueResidualConfig | None, owns_lambda: bool):
    return NoValueResidual() if cfg is None else ValueResidual(cfg, owns_lambda)
