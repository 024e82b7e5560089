"""Symmetric int-k quantizers: per-row for matrices, per-tensor otherwise (spec §1.8, §2.21, §6).

For a matrix W (one scale per row r):
    c_r = clip(|W_r|)             percentile (baseline 99.99984th), row max, a GPTQ-lite search, or
                                  SDClip k·std(W_r) (unbiased std; #1394 lineage, #1493)
    s_r = max(c_r / qmax, floor)  qmax = 2^(k−1) − 1, floor = 1/qmax or 1e−12, in fp32; stored as fp16
    q   = clamp(round(clamp(W_r, ±c_r) / s_r), lo, hi)   [lo, hi] = ±qmax or [−qmax−1, qmax]
    Ŵ_r = q · s_r (the stored fp16 scale)
#507's "int8-grid step" scheme then rounds q to a multiple of ``grid_step`` before the final clamp.
The scale that divides W is the unrounded fp32 one (baseline, #187, #344) or the stored fp16 one (#295
lineage, #1573): ``rounding_scale``. ``clip_order=round_then_clamp`` drops the pre-clip of W
(q = clamp(round(W_r/s_r), lo, hi), #1573); it differs from clipping first only where the scale floor
is active and |w| > c_r. GPTQ-lite (signalrush 03-22 record; #1573 per matrix, #344 per row) tries each
candidate clip quantile and keeps the one with the lowest reconstruction MSE, the candidate rebuilt
with the scale it was rounded with (fp32 for #344); it is not Hessian-based GPTQ.

Tensors that are not 2-D follow the baseline's per-tensor rule: one fp32 scale ``c/qmax`` (1.0 when
c = 0, no floor). Full-Hessian GPTQ (:mod:`golf.quant.gptq`) takes its per-row clips and scales from
:func:`matrix_clip` and :func:`row_scales` here, so every clip rule is available to it. The same
functions serve export (:mod:`golf.quant.export`) and QAT's fake quantization (:mod:`golf.quant.qat`),
so training sees the grid the artifact stores; QAT multiplies the codes by the fp32 scale by default
(#187, #295), the artifact by the fp16 one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from golf.quant.config import (
    ClipOrder,
    ClipRule,
    RangeConvention,
    ScaleFloor,
    ScalePrecision,
    SchemeConfig,
    SearchGranularity,
)

TINY_SCALE = 1e-12
_QUANTILE_MAX_NUMEL = 1 << 24  # torch.quantile refuses larger inputs


@dataclass
class QuantizedTensor:
    """Integer codes of one tensor with their scales (per row: fp16 [rows]; per tensor: fp32 [])."""

    q: Tensor  # int8, the original shape
    scale: Tensor
    bits: int
    lo: int
    hi: int


def code_range(scheme: SchemeConfig) -> tuple[int, int]:
    """Smallest and largest code of a k-bit scheme under its range convention."""
    qmax = (1 << (scheme.bits - 1)) - 1
    lo = -qmax - 1 if scheme.range is RangeConvention.full else -qmax
    return lo, qmax


def quantile(x: Tensor, q: float, dim: int | None = None) -> Tensor:
    """``torch.quantile`` (linear interpolation), also for inputs above its 2^24-element limit."""
    if x.numel() <= _QUANTILE_MAX_NUMEL:
        return torch.quantile(x, q, dim=dim)
    flat = x.flatten() if dim is None else x
    d = -1 if dim is None else dim
    ordered = flat.sort(dim=d).values
    pos = q * (ordered.shape[d] - 1)
    below = ordered.narrow(d, int(pos), 1).squeeze(d)
    above = ordered.narrow(d, min(int(pos) + 1, ordered.shape[d] - 1), 1).squeeze(d)
    return torch.lerp(below, above, torch.tensor(pos - int(pos), dtype=x.dtype))


def _row_clip(absw: Tensor, q: float) -> Tensor:
    """Per-row clip value: the q-quantile of |W_r| (q = 1 → row max)."""
    if absw.shape[1] == 0:
        return torch.zeros(absw.shape[0], dtype=absw.dtype)
    return absw.amax(dim=1) if q >= 1.0 else quantile(absw, q, dim=1)


def _std_clip(t32: Tensor, k: float, dim: int | None = None) -> Tensor:
    """SDClip: k · std (unbiased); 0 for fewer than two values."""
    n = t32.shape[dim] if dim is not None else t32.numel()
    if n < 2:
        return torch.zeros(t32.shape[0] if dim is not None else (), dtype=t32.dtype)
    return k * (t32.std(dim=dim) if dim is not None else t32.std())


def round_codes(x: Tensor, scheme: SchemeConfig) -> Tensor:
    """Round scaled values to codes on the scheme's grid and clamp to its range (float result)."""
    lo, hi = code_range(scheme)
    q = torch.round(x)
    if scheme.grid_step > 1:
        q = torch.round(q / scheme.grid_step) * scheme.grid_step
    return q.clamp(lo, hi)


def row_scales(clip: Tensor, scheme: SchemeConfig) -> tuple[Tensor, Tensor]:
    """Stored fp16 scales ``max(c/qmax, floor)`` and the fp32 divisor rounding uses (per rounding_scale)."""
    scale32, scale16 = _scales(clip, scheme)
    return scale16, _pick(scale32, scale16, scheme.rounding_scale)


def _scales(clip: Tensor, scheme: SchemeConfig) -> tuple[Tensor, Tensor]:
    """The unrounded fp32 scales ``max(c/qmax, floor)`` and their fp16 rounding (the stored ones)."""
    qmax = (1 << (scheme.bits - 1)) - 1
    floor = 1.0 / qmax if scheme.scale_floor is ScaleFloor.qmax else TINY_SCALE
    scale32 = (clip / qmax).clamp_min(floor)
    return scale32, scale32.to(torch.float16)


def _pick(scale32: Tensor, scale16: Tensor, precision: ScalePrecision) -> Tensor:
    return scale32 if precision is ScalePrecision.fp32 else scale16.float()


def scaled_for_rounding(w: Tensor, clip: Tensor, divisor: Tensor, scheme: SchemeConfig) -> Tensor:
    """``clip(W, ±c)/s`` (clip_then_round) or ``W/s`` (round_then_clamp, #1573), ready for :func:`round_codes`.

    ``clip`` and ``divisor`` broadcast against ``w`` (per row: shaped [rows, 1] for W [rows, cols])."""
    if scheme.clip_order is ClipOrder.clip_then_round:
        w = torch.maximum(torch.minimum(w, clip), -clip)
    return w / divisor


@dataclass
class _Rows:
    """One candidate's per-row result: clips, codes (float, exact integers), fp32 and fp16 scales."""

    clip: Tensor
    codes: Tensor
    scale32: Tensor
    scale16: Tensor

    def scale(self, precision: ScalePrecision) -> Tensor:
        """The per-row scale of the given precision, as fp32 (the fp16 one rounded, not recomputed)."""
        return _pick(self.scale32, self.scale16, precision)


def _quantize_rows(t32: Tensor, clip: Tensor, scheme: SchemeConfig) -> _Rows:
    """Codes and scales of a matrix for the given per-row clips."""
    scale32, scale16 = _scales(clip, scheme)
    divisor = _pick(scale32, scale16, scheme.rounding_scale)
    safe = torch.where(divisor > 0, divisor, torch.ones_like(divisor))  # an all-zero row → codes 0
    codes = round_codes(scaled_for_rounding(t32, clip[:, None], safe[:, None], scheme), scheme)
    return _Rows(clip, codes * (divisor > 0)[:, None], scale32, scale16)


def _candidates(scheme: SchemeConfig) -> list[float]:
    if scheme.clip is ClipRule.search:
        return [float(c) for c in scheme.candidates]
    return [1.0 if scheme.clip is ClipRule.rowmax else float(scheme.clip_quantile)]


def _search(t32: Tensor, scheme: SchemeConfig) -> _Rows:
    """Per-row clips, codes and scales of the clip rule (the lowest-MSE candidate for clip=search).

    A candidate's MSE is that of ``q·s`` with the scale it was rounded with (``rounding_scale``), in fp32:
    #344 compares fp32 reconstructions, the 03-22 lineage (#1573) fp16-scale ones."""
    if scheme.clip is ClipRule.sdclip:
        return _quantize_rows(t32, _std_clip(t32, scheme.clip_sigmas, dim=1), scheme)
    absw = t32.abs()
    per_row = scheme.search_granularity is SearchGranularity.row
    cands = _candidates(scheme)
    best, best_err = None, None
    for cand in cands:
        rows = _quantize_rows(t32, _row_clip(absw, cand), scheme)
        if len(cands) == 1:
            return rows
        recon = rows.codes * rows.scale(scheme.rounding_scale)[:, None]
        err = (t32 - recon).square().mean(dim=1)  # [rows]
        if best is None:
            best, best_err = rows, err
        elif per_row:
            better = err < best_err  # strict: ties keep the earlier candidate
            best = _Rows(*(torch.where(better if new.ndim == 1 else better[:, None], new, old)
                           for new, old in zip((rows.clip, rows.codes, rows.scale32, rows.scale16),
                                               (best.clip, best.codes, best.scale32, best.scale16))))
            best_err = torch.where(better, err, best_err)
        elif err.mean() < best_err.mean():
            best, best_err = rows, err
    return best


def matrix_clip(t32: Tensor, scheme: SchemeConfig) -> Tensor:
    """The per-row clip values ``c_r`` the scheme's clip rule chooses for a matrix."""
    return _search(t32, scheme).clip


def _quantize_flat(t32: Tensor, scheme: SchemeConfig) -> tuple[Tensor, Tensor]:
    """Per-tensor codes with one fp32 scale (baseline rule for non-matrix tensors)."""
    qmax = (1 << (scheme.bits - 1)) - 1
    flat = t32.flatten()
    best = None
    for cand in _candidates(scheme):
        if flat.numel() == 0:
            clip = 0.0
        elif scheme.clip is ClipRule.sdclip:
            clip = float(_std_clip(flat, scheme.clip_sigmas))
        else:
            clip = float(flat.abs().max()) if cand >= 1.0 else float(quantile(flat.abs(), cand))
        scale = clip / qmax if clip > 0 else 1.0
        kept = flat.clamp(-clip, clip) if scheme.clip_order is ClipOrder.clip_then_round else flat
        codes = round_codes(kept / scale, scheme)
        err = float((flat - codes * scale).square().mean()) if flat.numel() else 0.0
        if best is None or err < best[2]:
            best = (codes, scale, err)
    codes, scale, _ = best
    return codes.view(t32.shape), torch.tensor(scale, dtype=torch.float32)


def quantize(t: Tensor, scheme: SchemeConfig) -> QuantizedTensor:
    """Quantize a float tensor with an int scheme (per row if 2-D, else per tensor)."""
    t32 = t.detach().float()
    if t32.ndim == 2:
        rows = _search(t32, scheme)
        codes, scale = rows.codes, rows.scale16
    else:
        codes, scale = _quantize_flat(t32, scheme)
    lo, hi = code_range(scheme)
    return QuantizedTensor(codes.to(torch.int8).contiguous(), scale.contiguous(), scheme.bits, lo, hi)


def dequantize(qt: QuantizedTensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """``q · s`` in fp32 (per-row fp16 scales widened), cast to ``dtype``."""
    q = qt.q.float()
    if qt.scale.ndim == 1:
        return (q * qt.scale.float()[:, None]).to(dtype)
    return (q * float(qt.scale)).to(dtype)


def fake_quantize(w: Tensor, scheme: SchemeConfig, scale: ScalePrecision = ScalePrecision.fp32) -> Tensor:
    """The codes of a matrix times its per-row scale, in w's dtype, as pure tensor ops (QAT's forward).

    ``scale=fp32`` multiplies by the unrounded scale, as #187 and #295 trained (spec §6); ``fp16`` by the
    stored scale, which makes the result equal ``dequantize(quantize(w))``."""
    rows = _search(w.float(), scheme)
    return (rows.codes * rows.scale(scale)[:, None]).to(w.dtype)
