"""LQER: a low-rank correction of the largest quantization errors, stored beside the codes.

Zhang et al. 2024, "LQER: Low-Rank Quantization Error Reconstruction for LLMs"; the asymmetric packing is
PR #1797's, as the 2026-04-27 record (PR #1855, spec frontier-1855 §5.5) runs it. After every tensor is
quantized (:func:`golf.kernel.artifact.quantize_state_dict`), each matrix stored with integer codes
gives E = W − q·s (fp32, W the exported weight before pruning). The ``top_n`` largest by ‖E‖_F, over
all kinds of matrices, get a thin SVD E = U S Vᵀ and rank-r factors

    A = U[:, :r]·diag(S[:r])   [rows, r]     one fp16 scale sA for the matrix
    B = Vᵀ[:r]                  [r, cols]     one fp16 scale per group of ``group`` values of B flattened
                                              row-major (the last group may be shorter)

coded with k bits as c = clamp(round(x/s), −2^(k−1), 2^(k−1) − 1), s = fp16(max(max|x|, 1e−10) /
(2^(k−1) − 0.5)), x divided by the fp16 scale. torch rounds half to even, so with A's int2 (levels
−2..1, s = max/1.5) the largest positive entry (+1.5 steps) rounds to 2 and is clamped to 1, while the
largest negative one rounds to −2 and keeps its level. Loading adds (qA·sA)(qB·sB) to q·s in fp32
before the cast to the parameter's dtype (tok_emb is corrected before it becomes bf16).

A corrected tensor is stored as :data:`Corrected` (its quantized tensor and the four factor tensors);
:mod:`golf.kernel.artifact` writes the factors into the tensor's header entry (``lqer``).
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from golf.kernel.quantize import QuantizedTensor, dequantize

if TYPE_CHECKING:
    from golf.quant.config import LQERConfig

# base: QuantizedTensor; a int8 [rows, r], sa fp16 [], b int8 [r, cols], sb fp16 [ceil(r·cols / group)]
Corrected = namedtuple("Corrected", "base a sa b sb")


def lqer_scale(x, k: int):
    """fp16 scale of ``x``'s values (the last axis) for k-bit codes: max(max|x|, 1e−10) / (2^(k−1) − 0.5)."""
    return (x.abs().amax(-1).clamp_min(1e-10) / ((1 << k - 1) - 0.5)).half()


def lqer_codes(x, s, k: int):
    """int8 codes of ``x`` for the fp16 scales ``s`` (broadcast against x): round half to even, clamp to
    [−2^(k−1), 2^(k−1) − 1]; a zero scale gives codes 0."""
    m = 1 << k - 1
    return (x / torch.where(s > 0, s.float(), 1.0)).round().clamp(-m, m - 1).to(torch.int8)


def _groups(v, g: int):
    """The flat vector ``v`` zero-padded to whole groups of ``g``: [groups, g]."""
    return F.pad(v, (0, -v.numel() % g)).view(-1, g)


def lqer_factors(e, c: LQERConfig):
    """(qA, sA, qB, sB) of the rank-``c.rank`` approximation of the error ``e`` [rows, cols] (fp32)."""
    u, s, vh = torch.linalg.svd(e, full_matrices=False)
    r = min(c.rank, s.numel())
    a, b = u[:, :r] * s[:r], vh[:r]
    sa = lqer_scale(a.reshape(-1), c.a_bits)
    bg = _groups(b.reshape(-1), c.group)  # [groups, group]
    sb = lqer_scale(bg, c.b_bits)
    return lqer_codes(a, sa, c.a_bits), sa, lqer_codes(bg, sb[:, None], c.b_bits).view(-1)[:b.numel()].view(b.shape), sb


def lqer_delta(qa, sa, qb, sb, g: int):
    """The correction (qA·sA)(qB·sB) in fp32 [rows, cols]; ``g``: B's group size."""
    b = (_groups(qb.reshape(-1).float(), g) * sb.float()[:, None]).view(-1)[:qb.numel()].view(qb.shape)
    return (qa.float() * sa.float()) @ b


def add_lqer(sd, st, c: LQERConfig):
    """Correct the ``c.top_n`` matrices of the stored tensors ``st`` (name → (scheme, dtype, data), changed
    in place) whose codes are farthest from the weights ``sd`` in Frobenius norm."""
    err = {n: sd[n].detach().cpu().float() - dequantize(d) for n, (_, _, d) in st.items()
           if isinstance(d, QuantizedTensor) and d.q.ndim == 2}
    for n in sorted(err, key=lambda n: -float(err[n].norm()))[:c.top_n]:
        sn, dt, d = st[n]
        st[n] = sn, dt, Corrected(d, *lqer_factors(err[n], c))
