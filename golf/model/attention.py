"""Causal self-attention of the official baseline and the attention techniques of the seeds.

Baseline (spec §1.5): ``c_q`` d->d, ``c_k``/``c_v`` d->Hkv*Dh (GQA), per-head RMSNorm (no weight) of q
and k, RoPE, ``q <- q * q_gain[h]`` (init 1.5; SDPA still applies its own 1/sqrt(Dh)), causal SDPA with
``enable_gqa`` (K/V heads are never repeated), zero-init output projection ``proj``. All bias-free.

The techniques are parts built from the layer's plan; an absent technique is an absent part:

* value inputs (value embeddings, :mod:`golf.model.value_embed`) are added to ``c_v(x)`` when given;
* value residual (:mod:`golf.model.value_residual`) blends the first layer's value into ``v``;
* head ops, applied in order to the per-head output y [B, T, H, Dh] before ``proj``: XSA
  (:mod:`golf.model.xsa`) then the attention gate (:mod:`golf.model.attn_gate`). A head op is called as
  ``op(y, x, v_raw, v)`` with x the attention input, v_raw the layer's own value, v the attended one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.attn_gate import build_gate
from golf.model.config import ArchConfig, head_dim, rope_dims
from golf.model.init import output_linear
from golf.model.plan import LayerPlan
from golf.model.roles import Label
from golf.model.rope import Rotary
from golf.model.value_residual import build_value_residual
from golf.model.xsa import ExclusiveSelfAttention


class CausalSelfAttention(nn.Module):
    PARAM_ROLES = {**{f"{n}.weight": Label("matrix", "core") for n in ("c_q", "c_k", "c_v", "proj")},
                   "q_gain": Label("control", "core"), "vr_lambda": Label("control", "value_residual")}

    def __init__(self, cfg: ArchConfig, layer: LayerPlan):
        super().__init__()
        a, d = cfg.attention, cfg.model_dim
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, head_dim(cfg)
        kv_dim = self.num_kv_heads * self.head_dim
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, kv_dim, bias=False)
        self.c_v = nn.Linear(d, kv_dim, bias=False)
        self.proj = output_linear(d, d)
        self.q_gain = nn.Parameter(torch.full((self.num_heads,), a.q_gain_init, dtype=torch.float32))
        self.rotary = Rotary(rope_dims(cfg), a.rope.base, a.rope.ntk_reference_len, a.rope.freq_dtype)
        self.value_mix = build_value_residual(a.value_residual, layer.value_residual)
        self.value_mix.attach(self)
        head_ops: dict[str, nn.Module] = {}
        if layer.xsa:
            head_ops["xsa"] = ExclusiveSelfAttention(a.xsa.value)
        if layer.gate:
            head_ops["attn_gate"] = build_gate(a.gate, d, self.num_heads)
        for name, op in head_ops.items():
            self.add_module(name, op)
        self._head_ops = tuple(head_ops)

    def forward(self, x: Tensor, ctx: dict, value_input: Tensor | None = None) -> Tensor:
        """``x`` [B, T, d] (already normalized); ``ctx`` is the per-forward context shared by all layers."""
        B, T, _ = x.shape
        H, Hkv, D = self.num_heads, self.num_kv_heads, self.head_dim
        q = self.c_q(x).view(B, T, H, D)    # [B, T, d] -> [B, T, H, D]
        k = self.c_k(x).view(B, T, Hkv, D)  # [B, T, kv] -> [B, T, Hkv, D]
        v = self.c_v(x)                     # [B, T, kv]: value inputs are added in this flat layout
        if value_input is not None:
            v = v + value_input
        v_raw = v.view(B, T, Hkv, D)        # [B, T, kv] -> [B, T, Hkv, D]
        v = self.value_mix(self, v_raw, ctx)
        q = self.rotary(F.rms_norm(q, (D,)))
        k = self.rotary(F.rms_norm(k, (D,)))
        q = q * self.q_gain.to(q.dtype)[:, None]  # [H, 1] over [B, T, H, D]
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # [B, heads, T, D]
            is_causal=True, enable_gqa=Hkv != H,
        ).transpose(1, 2)  # [B, T, H, D]
        for name in self._head_ops:
            y = getattr(self, name)(y, x, v_raw, v)
        return self.proj(y.reshape(B, T, H * D))  # [B, T, H, D] -> [B, T, d]
