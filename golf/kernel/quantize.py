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


def quantile(x, q: float, rows=False):
    """The q-quantile of ``x`` (or of each of its rows) with linear interpolation, computed as
    ``torch.quantile`` does (rank q·(n−1) in x's dtype), also above its 2^24-element limit."""
    o = (x if rows else x.reshape(1, -1)).sort().values  # [rows, n]
    r = torch.tensor(q, dtype=x.dtype) * (o.shape[1] - 1)
    i = int(r)
    v = o[:, i].lerp(o[:, int(r.ceil())], r - i)
    return v if rows else v[0]


def prune_tensor(t, fraction: float):
    """A copy of ``t`` with entries below the ``fraction``-quantile of |t| set to zero."""
    if fraction <= 0.0 or t.numel() == 0:
        return t.clone()
    a = t.detach().float().abs()
    return torch.where(a < quantile(a, fraction), torch.zeros_like(t), t)


def _qstd(t, k: float):
    """SDClip: k · std of each row (unbiased); 0 for rows of fewer than two values."""
    return k * t.std(dim=1) if t.shape[1] > 1 else torch.zeros(t.shape[0])


def round_codes(w, c, d, s: SchemeConfig):
    """The codes (float) of ``w`` for the clip ``c`` and divisor ``d`` (both broadcast against ``w``):
    round(clip(w, ±c)/d) (clip_then_round; ``round(w/d)`` for round_then_clamp, #1573), rounded to the
    scheme's grid, clamped to its range."""
    if s.clip_order == "clip_then_round":
        w = torch.maximum(torch.minimum(w, c), -c)
    q = (w / d).round()
    if s.grid_step > 1:
        q = (q / s.grid_step).round() * s.grid_step
    return q.clamp(*code_range(s))


def _qrows(t, c, s: SchemeConfig, f=False):
    """(clips, codes, fp32 scales, fp16 scales, divisors) of a matrix for the per-row clips ``c``; an
    all-zero row (a zero divisor) gets codes 0. ``f``: the per-tensor rule (one row; the fp32 scale
    ``c/qmax`` divides, no floor, 1 for c = 0; since qmax = 2^j − 1, the fp32 quotient equals the
    baseline's fp64 one rounded to fp32)."""
    m = (1 << s.bits - 1) - 1
    a = torch.where(c > 0, c / m, 1.0) if f else (c / m).clamp_min(1.0 / m if s.scale_floor == "qmax" else 1e-12)
    h = a.half()
    d = a if f or s.rounding_scale == "fp32" else h.float()
    return c, round_codes(t, c[:, None], torch.where(d > 0, d, 1)[:, None], s) * (d > 0)[:, None], a, h, d


def quantize_rows(t, s: SchemeConfig, f=False):
    """(clips, codes, fp32 scales, fp16 scales, divisors) per row of the fp32 matrix ``t`` under the
    scheme's clip rule (``f``: see :func:`_qrows`); for clip=search the lowest-MSE candidate (per matrix,
    or per row), its MSE that of ``q·s`` with the scale it was rounded with (#344: fp32, the 03-22 lineage
    and #1573: fp16). Ties keep the earlier candidate."""
    if s.clip == "sdclip":
        return _qrows(t, _qstd(t, s.clip_sigmas), s, f)
    best = None
    for c in s.candidates if s.clip == "search" else [1.0 if s.clip == "rowmax" else s.clip_quantile]:
        r = _qrows(t, t.abs().amax(1) if c >= 1 else quantile(t.abs(), c, True), s, f)
        if s.clip != "search":
            return r
        e = (t - r[1] * r[4][:, None]).square().mean(1)  # [rows]
        if best is None:
            best, be = r, e
        elif s.search_granularity == "row":
            b = e < be
            best = tuple(torch.where(b if n.ndim == 1 else b[:, None], n, o) for n, o in zip(r, best))
            be = torch.where(b, e, be)
        elif e.mean() < be.mean():
            best, be = r, e
    return best


def quantize(t, s: SchemeConfig):
    """Quantize a float tensor with an int scheme: per row if 2-D, else per tensor (one fp32 scale)."""
    t = t.detach().float()
    f = t.ndim != 2
    _, q, a, h, _ = quantize_rows(t.reshape(1, -1) if f else t, s, f)
    return QuantizedTensor(q.view(t.shape).to(torch.int8), a[0] if f else h, s.bits, *code_range(s))


def dequantize(qt, dt=torch.float32):
    """``q · s`` in fp32 (per-row fp16 scales widened), cast to ``dt``."""
    return (qt.q.float() * (qt.scale.float()[:, None] if qt.scale.ndim else qt.scale)).to(dt)


def fake_quantize(w, s: SchemeConfig, p: str = "fp32"):
    """The codes of a matrix times its per-row scale, in w's dtype, as pure tensor ops (QAT's forward).

    ``p=fp32`` multiplies by the unrounded scale, as #187 and #295 trained (spec §6); ``fp16`` by the
    stored scale, which makes the result equal ``dequantize(quantize(w))``."""
    r = quantize_rows(w.float(), s)
    return (r[1] * (r[2] if p == "fp32" else r[3].float())[:, None]).to(w.dtype)
