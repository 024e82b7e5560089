"""Full-Hessian GPTQ of one weight matrix (Frantar et al. 2022, "GPTQ: Accurate Post-Training
Quantization for Generative Pre-trained Transformers"), as the #1394 lineage and the 2026-04-09 record
(#1493, spec §5.2) run it on the CPU in fp32; on a GPU when the Hessian lives there.

For W [rows, cols] and H = Σ XᵀX over the layer's calibration inputs X [tokens, cols]:
  1. dead inputs (H_jj = 0): H_jj ← 1 and column j of W ← 0;
  2. damping: H ← H + damp · mean(diag H) · I;
  3. act-order: columns (and H's rows and columns) permuted by descending diag H;
  4. U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU);
  5. per-row clips c_r and fp16 scales s_r from the scheme's clip rule on the *unpermuted* W
     (SDClip for #1493: c_r = k·std(W_r), s_r = c_r/qmax rounded to fp16; any rule of
     :mod:`golf.quant.quantizer` works);
  6. lazy-batch quantization in blocks of ``block_size`` columns: for column j,
        q_j = clamp(round(clamp(w_j, ±c)/s), lo, hi),   e_j = (w_j − q_j·ŝ)/U_jj,
        W[:, j:block end] −= e_j ⊗ U[j, j:block end];
     after the block, W[:, block end:] −= E · U[block, block end:]  (E = the block's e columns);
     the inner clamp(w_j, ±c) is left out for ``clip_order=round_then_clamp``;
  7. codes un-permuted; returned with the scales as a :class:`QuantizedTensor`.
``s`` is the divisor the scheme rounds with (``rounding_scale``) and ŝ the stored fp16 scale that
dequantization uses. With H = I no error propagates (U is diagonal), so the codes equal the scheme's
round-to-nearest codes with the same scales. Hessians come from :mod:`golf.quant.calibrate`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from golf.quant.config import SchemeConfig
from golf.quant.quantizer import (
    QuantizedTensor,
    code_range,
    matrix_clip,
    round_codes,
    row_scales,
    scaled_for_rounding,
)


class GPTQError(ValueError):
    """GPTQ cannot run on this matrix (shapes, or a Hessian that stays singular after damping)."""


def _inverse_cholesky_upper(h: Tensor) -> Tensor:
    """U with UᵀU = H⁻¹ (H symmetric positive definite)."""
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        raise GPTQError(f"the damped Hessian is not positive definite (leading minor {int(info)}); "
                        "raise gptq.damp")
    return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)


def gptq_quantize(weight: Tensor, hessian: Tensor, scheme: SchemeConfig) -> QuantizedTensor:
    """GPTQ codes and scales of ``weight`` [rows, cols] for ``hessian`` [cols, cols], on H's device."""
    cfg = scheme.gptq
    if cfg is None:
        raise GPTQError("the scheme has no gptq settings")
    if weight.ndim != 2 or hessian.shape != (weight.shape[1], weight.shape[1]):
        raise GPTQError(f"weight {list(weight.shape)} and Hessian {list(hessian.shape)} do not fit "
                        "(GPTQ needs a matrix and a [cols, cols] Hessian)")
    device = hessian.device
    w = weight.detach().to(device=device, dtype=torch.float32).clone()
    h = hessian.detach().to(dtype=torch.float32).clone()
    rows, cols = w.shape
    clip = matrix_clip(w, scheme)            # [rows], from the unpermuted weights
    scale16, divisor = row_scales(clip, scheme)
    live = divisor > 0                       # an all-zero row (fp16 scale 0) gets codes 0
    div = torch.where(live, divisor, torch.ones_like(divisor))[:, None]
    deq = scale16.float()[:, None]
    lo, hi = code_range(scheme)

    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    torch.diagonal(h).add_(cfg.damp * torch.diagonal(h).mean())
    if cfg.act_order:
        perm = torch.argsort(torch.diagonal(h), descending=True)
        w, h = w[:, perm], h[perm][:, perm]
    u = _inverse_cholesky_upper(h)

    # Work on Wᵀ [cols, rows] so that each column of W is one contiguous row here.
    wt = w.T.contiguous()
    codes = torch.zeros_like(wt)
    c, div, deq = clip[None, :], div.T, deq.T           # [1, rows]
    for i1 in range(0, cols, cfg.block_size):
        i2 = min(i1 + cfg.block_size, cols)
        block = wt[i1:i2].clone()                        # [b, rows]
        errors = torch.empty_like(block)
        ub = u[i1:i2, i1:i2]
        for j in range(i2 - i1):
            col = block[j:j + 1]                         # [1, rows]
            q = round_codes(scaled_for_rounding(col, c, div, scheme), scheme)  # in [lo, hi]
            codes[i1 + j:i1 + j + 1] = q
            err = (col - q * deq) / ub[j, j]
            block[j:] -= ub[j, j:, None] * err            # [b-j, 1] * [1, rows]
            errors[j:j + 1] = err
        if i2 < cols:
            wt[i2:] -= u[i1:i2, i2:].T @ errors
    codes = codes.T
    if cfg.act_order:
        codes = codes[:, torch.argsort(perm)]
    codes = codes * live[:, None]
    return QuantizedTensor(codes.to(torch.int8).cpu().contiguous(), scale16.cpu().contiguous(), scheme.bits, lo, hi)
