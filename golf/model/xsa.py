"""XSA, exclusive self attention (arXiv:2603.09078; spec §2.4): remove the self-value direction.

For query position t and head h in KV group g = h // (H / Hkv), with v_hat = v_{t,g} / |v_{t,g}|:
``y_{t,h} <- y_{t,h} - (y_{t,h} . v_hat) v_hat``. Zero parameters.

Efficient grouped form (unnir's 2026-03-20 EfficientPartialXSA record): y [B, T, H, D] is viewed as
[B, T, Hkv, H/Hkv, D] and v_hat [B, T, Hkv, 1, D] broadcast over the group, so K/V heads are never
repeated. The value removed is the layer's own value either ``raw`` (before value-residual blending,
#344) or ``blended`` (the value attended to, #507/#1573). The gate of :mod:`golf.model.attn_gate` is a
per-(position, head) scalar, so it commutes with this projection: the order of the two does not matter.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.config import XSAValue


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """``y`` [B, T, H, D] attention output, ``v`` [B, T, Hkv, D] values; returns y without its v-component."""
    B, T, H, D = y.shape
    Hkv = v.size(2)
    y_g = y.reshape(B, T, Hkv, H // Hkv, D)        # [B, T, Hkv, group, D]
    v_hat = F.normalize(v, dim=-1).unsqueeze(3)    # [B, T, Hkv, 1, D]
    y_g = y_g - (y_g * v_hat).sum(dim=-1, keepdim=True) * v_hat
    return y_g.reshape(B, T, H, D)


class ExclusiveSelfAttention(nn.Module):
    """A head op of CausalSelfAttention (see there for the op signature)."""

    def __init__(self, value: XSAValue):
        super().__init__()
        self.use_raw = value is XSAValue.raw

    def forward(self, y: Tensor, x: Tensor, v_raw: Tensor, v: Tensor) -> Tensor:
        return exclusive_self_attention(y, v_raw if self.use_raw else v)
