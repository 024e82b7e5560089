"""Symmetric int-k quantizers: per row for matrices, per tensor otherwise (spec §1.8, §2.21, §6), and
magnitude pruning before them (spec §2.22).

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
c = 0, no floor). Full-Hessian GPTQ (:mod:`golf.kernel.gptq`) takes its per-row clips and scales from
:func:`quantize_rows` here, so every clip rule is available to it. The same functions serve export
(:mod:`golf.kernel.artifact`) and QAT's fake quantization, so training sees the grid the artifact
stores; QAT multiplies the codes by the fp32 scale by default (#187, #295), the artifact by the fp16 one.

Pruning (thwu1's 10L record p=0.03, PR #295 p=0.08): entries of a selected tensor with |w| below the
``fraction``-quantile of |W| (over the whole tensor) become 0, right before quantization, only to make
the codes more compressible. Schemes are :class:`golf.quant.config.SchemeConfig` objects (several per
config, so their settings are read at run time, not folded).
"""

from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from golf.quant.config import SchemeConfig

# integer codes (int8, the original shape) with their scales (per row: fp16 [rows]; per tensor: fp32 [])
QuantizedTensor = namedtuple("QuantizedTensor", "q scale bits lo hi")


def code_range(s: SchemeConfig) -> tuple[int, int]:
    """Smallest and largest code of a k-bit scheme under its range convention."""
    m = (1 << s.bits - 1) - 1
    return (-m - 1 if s.range == "full" else -m), m


def quantile(x, q: float, dim=None):
    """``torch.quantile`` (linear interpolation), also for inputs above its 2^24-element limit."""
    if x.numel() <= 1 << 24:
        return torch.quantile(x, q, dim=dim)
    d = -1 if dim is None else dim
    o = (x.flatten() if dim is None else x).sort(dim=d).values
    n = o.shape[d]
    p = q * (n - 1)
    i = int(p)
    return torch.lerp(o.narrow(d, i, 1).squeeze(d), o.narrow(d, min(i + 1, n - 1), 1).squeeze(d),
                      torch.tensor(p - i, dtype=x.dtype))


def prune_tensor(t, fraction: float):
    """A copy of ``t`` with entries below the ``fraction``-quantile of |t| set to zero."""
    if fraction <= 0.0 or t.numel() == 0:
        return t.clone()
    a = t.detach().float().abs()
    return torch.where(a < quantile(a.flatten(), fraction), torch.zeros_like(t), t)


def _qstd(t, k: float, dim=None):
    """SDClip: k · std (unbiased); 0 for fewer than two values."""
    if (t.numel() if dim is None else t.shape[dim]) < 2:
        return torch.zeros(() if dim is None else t.shape[0], dtype=t.dtype)
    return k * (t.std() if dim is None else t.std(dim=dim))


def round_codes(x, s: SchemeConfig):
    """Round scaled values to codes on the scheme's grid and clamp to its range (float result)."""
    q = torch.round(x)
    if s.grid_step > 1:
        q = torch.round(q / s.grid_step) * s.grid_step
    return q.clamp(*code_range(s))


def _qpick(a, h, precision: str):
    """The fp32 scale ``a`` or its fp16 rounding ``h`` (widened), per ``precision``."""
    return a if precision == "fp32" else h.float()


def scaled_for_rounding(w, clip, divisor, s: SchemeConfig):
    """``clip(W, ±c)/s`` (clip_then_round) or ``W/s`` (round_then_clamp, #1573), ready for
    :func:`round_codes`; ``clip`` and ``divisor`` broadcast against ``w``."""
    if s.clip_order == "clip_then_round":
        w = torch.maximum(torch.minimum(w, clip), -clip)
    return w / divisor


def _qrows(t, clip, s: SchemeConfig):
    """(clips, codes, fp32 scales, fp16 scales) of a matrix for the given per-row clips; an all-zero
    row (a zero divisor) gets codes 0."""
    m = (1 << s.bits - 1) - 1
    a = (clip / m).clamp_min(1.0 / m if s.scale_floor == "qmax" else 1e-12)
    h = a.to(torch.float16)
    d = _qpick(a, h, s.rounding_scale)
    safe = torch.where(d > 0, d, torch.ones_like(d))
    return clip, round_codes(scaled_for_rounding(t, clip[:, None], safe[:, None], s), s) * (d > 0)[:, None], a, h


def _qcands(s: SchemeConfig) -> list[float]:
    if s.clip == "search":
        return [float(c) for c in s.candidates]
    return [1.0 if s.clip == "rowmax" else float(s.clip_quantile)]


def quantize_rows(t, s: SchemeConfig):
    """(clips, codes, fp32 scales, fp16 scales) per row of the fp32 matrix ``t`` under the scheme's clip
    rule; for clip=search the lowest-MSE candidate (per matrix, or per row), its MSE that of ``q·s`` with
    the scale it was rounded with (#344: fp32, the 03-22 lineage and #1573: fp16). Ties keep the earlier
    candidate."""
    if s.clip == "sdclip":
        return _qrows(t, _qstd(t, s.clip_sigmas, 1), s)
    absw = t.abs()
    cands = _qcands(s)
    best = None
    for c in cands:
        r = _qrows(t, torch.zeros(t.shape[0], dtype=t.dtype) if t.shape[1] == 0 else
                   absw.amax(dim=1) if c >= 1.0 else quantile(absw, c, dim=1), s)
        if len(cands) == 1:
            return r
        e = (t - r[1] * _qpick(r[2], r[3], s.rounding_scale)[:, None]).square().mean(dim=1)  # [rows]
        if best is None:
            best, be = r, e
        elif s.search_granularity == "row":
            b = e < be
            best = tuple(torch.where(b if n.ndim == 1 else b[:, None], n, o) for n, o in zip(r, best))
            be = torch.where(b, e, be)
        elif e.mean() < be.mean():
            best, be = r, e
    return best


def _qflat(t, s: SchemeConfig):
    """Per-tensor codes with one fp32 scale (baseline rule for tensors that are not matrices)."""
    m = (1 << s.bits - 1) - 1
    f = t.flatten()
    best = None
    for c in _qcands(s):
        if f.numel() == 0:
            c = 0.0
        elif s.clip == "sdclip":
            c = float(_qstd(f, s.clip_sigmas))
        else:
            c = float(f.abs().max()) if c >= 1.0 else float(quantile(f.abs(), c))
        sc = c / m if c > 0 else 1.0
        q = round_codes((f.clamp(-c, c) if s.clip_order == "clip_then_round" else f) / sc, s)
        e = float((f - q * sc).square().mean()) if f.numel() else 0.0
        if best is None or e < best[2]:
            best = q, sc, e
    return best[0].view(t.shape), torch.tensor(best[1], dtype=torch.float32)


def quantize(t, s: SchemeConfig):
    """Quantize a float tensor with an int scheme (per row if 2-D, else per tensor)."""
    t = t.detach().float()
    if t.ndim == 2:
        r = quantize_rows(t, s)
        q, sc = r[1], r[3]
    else:
        q, sc = _qflat(t, s)
    return QuantizedTensor(q.to(torch.int8).contiguous(), sc.contiguous(), s.bits, *code_range(s))


def dequantize(qt, dtype=torch.float32):
    """``q · s`` in fp32 (per-row fp16 scales widened), cast to ``dtype``."""
    q = qt.q.float()
    if qt.scale.ndim == 1:
        return (q * qt.scale.float()[:, None]).to(dtype)
    return (q * float(qt.scale)).to(dtype)


def fake_quantize(w, s: SchemeConfig, scale: str = "fp32"):
    """The codes of a matrix times its per-row scale, in w's dtype, as pure tensor ops (QAT's forward).

    ``scale=fp32`` multiplies by the unrounded scale, as #187 and #295 trained (spec §6); ``fp16`` by the
    stored scale, which makes the result equal ``dequantize(quantize(w))``."""
    r = quantize_rows(w.float(), s)
    return (r[1] * _qpick(r[2], r[3], scale)[:, None]).to(w.dtype)
