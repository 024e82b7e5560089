"""Causal self-attention of the official baseline and the attention techniques of the seeds.

Baseline (spec §1.5): ``c_q`` d->d, ``c_k``/``c_v`` d->Hkv*Dh (GQA), per-head RMSNorm (no weight) of q
and k, RoPE, ``q <- q * q_gain[h]`` (init 1.5; SDPA still applies its own 1/sqrt(Dh)), causal SDPA with
``enable_gqa`` (K/V heads are never repeated), zero-init output projection ``proj``. All bias-free.

Techniques, each present only where its sub-config is set (and, per layer, where its selector names the
layer):

* RoPE, half-split pairs (i, i + rd/2) inside the rotated block: ``x1' = x1 cos + x2 sin``,
  ``x2' = -x1 sin + x2 cos``, ``inv_freq_i = base^(-2i/rd)``. Partial RoPE (jfprincz PR #315, spec §2.5)
  rotates only the first ``rd`` dims of each head. NTK scaling (the 03-20 XSA4 -> 03-22 lineage, #1573):
  for T above ``ntk_reference_len`` the base is ``base * (T/ref)^(rd/(rd-2))`` (10000 -> ~22,081 for
  rd=16 at 2048/1024). ``freq_dtype=bfloat16`` rounds the inverse frequencies to bf16 as #1493's buffer
  cast did (frontier spec trap 12). cos/sin are computed from constants each forward (no buffers).
* value inputs (value embeddings, :mod:`golf.kernel.inputs`) are added to ``c_v(x)`` [B, T, kv].
* value residual (ResFormer, arXiv:2410.17897; spec §2.8): the first attention of a forward publishes its
  value in the per-forward ``ctx``; a layer owning ``vr_lambda`` = (l0, l1) attends with
  ``l0 * v_first + l1 * v`` (init ``half`` [0.5, 0.5], #344/#1573; ``identity`` [0, 1], #507). Layer 0's
  lambda (#1573) only acts when layer 0 is replayed.
* XSA (arXiv:2603.09078; spec §2.4): ``y <- y - (y . v_hat) v_hat`` per head with the head's KV-group
  value, grouped without repeating K/V (unnir's 2026-03-20 EfficientPartialXSA record); the value removed
  is the layer's own (``raw``, #344/#1493) or the blended one attended to (``blended``, #507/#1573).
* gated attention (arXiv:2505.06708; spec §2.9): ``y <- sigma(W x + b) * y`` per (position, head)
  (``input``: W [H, d] zero-init, b 4.0; #344, #1573, PR #487 style) or ``sigma(b) * y`` (``static``,
  #507). A per-head scalar, so it commutes with XSA. The gate is a control tensor, not an ``nn.Linear``
  (never a Muon/QAT target), though orthogonal init rules see its weight.
* sparse attention output gate (#1855 from #1787; frontier-1855 spec §3.5): ``y <- sigma(s W x[:k]) * y``
  per (position, head), W [H, k] zero-init (no bias), s the fixed ``scale``, x the attention's input: 0.5
  at init, so attention starts halved. Family ``sparse_attn_gate`` (the export stores it int8 per row in
  #1855); no init rule touches it.
* document-aware attention (#1855; frontier-1855 spec §2.6): causal attention inside segments cut at BOS
  and every ``max_len`` tokens (:mod:`golf.kernel.segments`), the segment starts computed once per forward.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.kernel.arch import head_dim, layer_ids, rope_dims
from golf.kernel.segments import document_attention

if TYPE_CHECKING:
    from golf.model.config import ArchConfig


def zero_linear(i: int, o: int) -> nn.Linear:
    """A bias-free Linear that starts at exactly zero and stays zero through every init rule (an output
    projection); it draws its default init first, as every Linear does."""
    lin = nn.Linear(i, o, bias=False)
    nn.init.zeros_(lin.weight)
    lin.zero_init = True
    return lin


def rope_base(base: float, rd: int, T: int, ref: int) -> float:
    """The RoPE base for ``T`` tokens: NTK-scaled past the reference length ``ref``."""
    return base if T <= ref else base * (T / ref) ** (rd / (rd - 2))


def rotary(x: Tensor, cfg: ArchConfig) -> Tensor:
    """``x`` [B, T, heads, head_dim] rotated by position along dim 1."""
    r = cfg.attention.rope
    T = x.size(1)
    rd = rope_dims(cfg)
    base = r.base if r.ntk_reference_len is None else rope_base(r.base, rd, T, r.ntk_reference_len)
    inv = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32, device=x.device) / rd))
    if r.freq_dtype == "bfloat16":
        inv = inv.bfloat16().float()
    f = torch.outer(torch.arange(T, dtype=torch.float32, device=x.device), inv)  # [T, rd/2]
    cos = f.cos()[None, :, None, :].to(x.dtype)  # [1, T, 1, rd/2]
    sin = f.sin()[None, :, None, :].to(x.dtype)
    x1, x2 = x[..., :rd // 2], x[..., rd // 2:rd]
    y = (x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos)
    if r.dims is not None and rd < x.size(-1):  # partial: the rest passes through
        y = (*y, x[..., rd:])
    return torch.cat(y, dim=-1)


def exclusive_self_attention(y: Tensor, v: Tensor) -> Tensor:
    """``y`` [B, T, H, D] without its component along each head's value ``v`` [B, T, Hkv, D]."""
    B, T, H, D = y.shape
    g = y.reshape(B, T, v.size(2), H // v.size(2), D)  # [B, T, Hkv, group, D]
    u = F.normalize(v, dim=-1).unsqueeze(3)  # [B, T, Hkv, 1, D]
    return (g - (g * u).sum(dim=-1, keepdim=True) * u).reshape(B, T, H, D)


class AttnGate(nn.Module):
    """The gate's parameters: ``weight`` [H, d] (input gate only) and ``bias`` [H]."""

    PARAM_ROLES = {"weight": ("control", "attn_gate"), "bias": ("control", "attn_gate")}

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        g = cfg.attention.gate
        if g.kind == "input":
            self.weight = nn.Parameter(torch.zeros(cfg.num_heads, cfg.model_dim, dtype=torch.float32))
        self.bias = nn.Parameter(torch.full((cfg.num_heads,), g.bias_init, dtype=torch.float32))


class SparseAttnGate(nn.Module):
    PARAM_ROLES = {"weight": ("control", "sparse_attn_gate")}

    def __init__(self, heads: int, window: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(heads, window, dtype=torch.float32))


class CausalSelfAttention(nn.Module):
    PARAM_ROLES = {"c_q.weight": ("matrix", "core"), "c_k.weight": ("matrix", "core"),
                   "c_v.weight": ("matrix", "core"), "proj.weight": ("matrix", "core"),
                   "q_gain": ("control", "core"), "vr_lambda": ("control", "value_residual")}

    def __init__(self, cfg: ArchConfig, i: int):
        super().__init__()
        a = cfg.attention
        d = cfg.model_dim
        kv = cfg.num_kv_heads * head_dim(cfg)
        self.cfg = cfg
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, kv, bias=False)
        self.c_v = nn.Linear(d, kv, bias=False)
        self.proj = zero_linear(d, d)
        self.q_gain = nn.Parameter(torch.full((cfg.num_heads,), a.q_gain_init, dtype=torch.float32))
        if a.value_residual is not None and i in layer_ids(a.value_residual.layers, cfg.num_layers):
            lam = (0.5, 0.5) if a.value_residual.init == "half" else (0.0, 1.0)
            self.vr_lambda = nn.Parameter(torch.tensor(lam, dtype=torch.float32))
        if a.xsa is not None:
            self.xsa = i in layer_ids(a.xsa.layers, cfg.num_layers)
        if a.gate is not None and i in layer_ids(a.gate.layers, cfg.num_layers):
            self.attn_gate = SparseAttnGate(cfg.num_heads, a.gate.window) if a.gate.kind == "sparse" else AttnGate(cfg)

    def forward(self, x: Tensor, ctx: dict, ve: Tensor | None = None) -> Tensor:
        """``x`` [B, T, d] (normalized); ``ctx`` the per-forward context all layers share."""
        return attend(self, self.cfg, x, ctx, ve)


def attend(m: CausalSelfAttention, cfg: ArchConfig, x: Tensor, ctx: dict, ve: Tensor | None) -> Tensor:
    a = cfg.attention
    B, T, _ = x.shape
    q = m.c_q(x).view(B, T, cfg.num_heads, -1)  # [B, T, d] -> [B, T, H, D]
    k = m.c_k(x).view(B, T, cfg.num_kv_heads, -1)  # [B, T, kv] -> [B, T, Hkv, D]
    v = m.c_v(x)  # [B, T, kv]: value inputs are added in this flat layout
    if a.value_embed is not None and ve is not None:
        v = v + ve
    v = v_raw = v.view(B, T, cfg.num_kv_heads, -1)
    if a.value_residual is not None:
        first = ctx.get("v_first")
        if first is None:
            ctx["v_first"] = v
        elif hasattr(m, "vr_lambda"):
            lam = m.vr_lambda.to(v.dtype)
            v = lam[0] * first + lam[1] * v
    q = rotary(F.rms_norm(q, (q.size(-1),)), cfg)
    k = rotary(F.rms_norm(k, (k.size(-1),)), cfg)
    q = q * m.q_gain.to(q.dtype)[:, None]  # [H, 1] over [B, T, H, D]
    if a.document is not None:  # inside segments only (golf.kernel.segments; starts from the model's ctx)
        y = document_attention(q, k, v, ctx["segments"], a.document.max_len)
    else:
        y = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),  # [B, heads, T, D]
            is_causal=True, enable_gqa=cfg.num_kv_heads != cfg.num_heads,
        ).transpose(1, 2)  # [B, T, H, D]
    if a.xsa is not None and m.xsa:
        y = exclusive_self_attention(y, v_raw if a.xsa.value == "raw" else v)
    if a.gate is not None and hasattr(m, "attn_gate"):
        if a.gate.kind == "sparse":
            w = F.linear(x[..., :a.gate.window], m.attn_gate.weight.to(x.dtype))  # [B, T, H]
            y = y * torch.sigmoid(a.gate.scale * w).unsqueeze(-1)
        elif a.gate.kind == "input":
            w = F.linear(x, m.attn_gate.weight.to(x.dtype), m.attn_gate.bias.to(x.dtype))  # [B, T, H]
            y = y * torch.sigmoid(w).unsqueeze(-1)
        else:
            y = y * torch.sigmoid(m.attn_gate.bias).to(y.dtype)[:, None]
    return m.proj(y.reshape(B, T, -1))  # [B, T, H, D] -> [B, T, d]
