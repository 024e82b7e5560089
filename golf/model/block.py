"""A transformer block (pre-norm), spec §1.5:

    x <- m0 * x + m1 * x0                      resid_mix = [m0; m1]
    x <- x + g_attn * attn(RMSNorm(x) * s)     g_attn = attn_scale (* cat_attn ...)
    x <- x + g_mlp  * mlp(RMSNorm(x) * s)      g_mlp  = mlp_scale  (* cat_mlp ...)

``s`` is the layer's LN scale (layer-wise LN scale); when that is off the factor is absent, not a
multiply by 1.0 (two full-size passes per block saved, forward and backward). The block builds its attention,
MLP and extra branch gains from sub-configs and its :class:`LayerPlan`; it never asks which variant
it holds. With zero output projections the block is the identity on the residual stream at init
(when resid_mix is the plain [1; 0]).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.attention import CausalSelfAttention
from golf.model.catalytic import branch_gains
from golf.model.config import ArchConfig
from golf.model.mlp import build_mlp
from golf.model.plan import LayerPlan
from golf.model.roles import Label


class Block(nn.Module):
    PARAM_ROLES = {**{n: Label("control", "core") for n in ("attn_scale", "mlp_scale", "resid_mix")},
                   **{n: Label("control", "catalytic") for n in ("cat_attn", "cat_mlp")}}

    def __init__(self, cfg: ArchConfig, layer: LayerPlan):
        super().__init__()
        d = cfg.model_dim
        self.attn = CausalSelfAttention(cfg, layer)
        self.mlp = build_mlp(cfg)
        self.attn_scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))).float())  # [2, d]
        # None when LN scale is off: the forward then applies no factor at all
        self.ln_scale = layer.ln_scale if layer.ln_scale != 1.0 else None
        extra = branch_gains(cfg.residual.catalytic, d)
        for params in extra.values():
            for name, p in params.items():
                self.register_parameter(name, p)
        self._attn_gains = ("attn_scale", *extra["attn"])
        self._mlp_gains = ("mlp_scale", *extra["mlp"])

    def _gain(self, names: tuple[str, ...], dtype: torch.dtype) -> Tensor:
        g = getattr(self, names[0])
        for name in names[1:]:
            g = g * getattr(self, name)
        return g.to(dtype)

    def _norm(self, x: Tensor) -> Tensor:
        n = F.rms_norm(x, (x.size(-1),))
        return n if self.ln_scale is None else n * self.ln_scale

    def forward(self, x: Tensor, x0: Tensor, ctx: dict, value_input: Tensor | None = None) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        a = self.attn(self._norm(x), ctx, value_input)
        x = x + self._gain(self._attn_gains, x.dtype) * a
        m = self.mlp(self._norm(x))
        return x + self._gain(self._mlp_gains, x.dtype) * m
