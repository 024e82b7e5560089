"""Rotary position embedding: full, partial, and the NTK-scaled base of the #1573 lineage.

Half-split convention of the official baseline (spec §1.5): inside the rotated block of ``rd`` dims the
pairs are (i, i + rd/2), ``x1' = x1 cos + x2 sin``, ``x2' = -x1 sin + x2 cos`` with
``inv_freq_i = base^(-2i/rd)``. Partial RoPE (jfprincz PR #315, spec §2.5) rotates only the first ``rd``
dims of each head and leaves the rest untouched; frequencies are computed over ``rd``.

NTK scaling (spec §2.5): the 03-20 XSA4 -> 03-22 lineage and #1573 built their rotary tables for 1024
tokens and trained at 2048, so every forward with T > 1024 used ``base * (T/1024)^(rd/(rd-2))``
(10000 -> ~22,081 for rd=16). ``ntk_reference_len`` reproduces that; leave it None for plain RoPE.

``freq_dtype="bfloat16"`` rounds the inverse frequencies to bf16 (#1493 and the official script cast
their ``inv_freq`` buffer with the model; frontier spec trap 12); positions and cos/sin stay fp32.

Holds no tensors: cos/sin are computed from Python constants on the input's device each forward (cheap,
and safe for models built on the meta device). Applied to q and k after their RMSNorm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def rope_base(base: float, dims: int, seq_len: int, ntk_reference_len: int | None) -> float:
    """The base used for a sequence of ``seq_len`` tokens (NTK-scaled past the reference length)."""
    if ntk_reference_len is None or seq_len <= ntk_reference_len:
        return base
    return base * (seq_len / ntk_reference_len) ** (dims / (dims - 2))


class Rotary(nn.Module):
    def __init__(self, dims: int, base: float, ntk_reference_len: int | None = None, freq_dtype: str = "float32"):
        super().__init__()
        self.dims, self.base, self.ntk_reference_len = dims, base, ntk_reference_len
        self.freq_dtype = getattr(torch, freq_dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Rotate ``x`` [B, T, heads, head_dim] by position along dim 1."""
        T, rd = x.size(1), self.dims
        base = rope_base(self.base, rd, T, self.ntk_reference_len)
        inv_freq = 1.0 / (base ** (torch.arange(0, rd, 2, dtype=torch.float32, device=x.device) / rd))
        inv_freq = inv_freq.to(self.freq_dtype).float()  # a no-op unless rounded to bf16
        freqs = torch.outer(torch.arange(T, dtype=torch.float32, device=x.device), inv_freq)  # [T, rd/2]
        cos = freqs.cos()[None, :, None, :].to(x.dtype)  # [1, T, 1, rd/2]
        sin = freqs.sin()[None, :, None, :].to(x.dtype)
        half = rd // 2
        x1, x2 = x[..., :half], x[..., half:rd]
        rotated = (x1 * cos + x2 * sin, x1 * (-sin) + x2 * cos)
        if rd == x.size(-1):  # full RoPE: no empty pass-through slice (its backward would allocate zeros)
            return torch.cat(rotated, dim=-1)
        return torch.cat((*rotated, x[..., rd:]), dim=-1)
