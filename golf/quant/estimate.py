"""Estimate the compressed model bytes of an export before training (DESIGN principle 8: budgets
before compute), so a dry run can refuse a sweep point that cannot fit the 16,000,000-byte cap.

The estimate runs the real chain — routing, pruning, the scheme's quantizer, packing, serialization,
the configured compressor — on stand-in weights, so scheme, packing, compressor and header overheads
are exact and only the trained weights are modelled: i.i.d. Gaussian values per tensor, with std
  * ``weight_std`` when given;
  * for bare shapes or a ``meta`` model (the dry run): 0.15, calibrated on the seeds' records — with
    it the estimates for #1573, #187 and #295 (arch + quant presets) land within 2% of their logged
    model bytes and #507 12% below (its weights are larger; 0.2 would put it at −4% and #1573 at +10%);
    Gaussian tails are right where no scale floor applies (#295: +1% at any std);
  * for a model or state dict with values (at init): max(own RMS, typical RMS), typical = the median
    RMS of the non-constant matrices above the passthrough size — a short-training assumption (within
    ±5% of a tiny model trained a few hundred steps); taking the larger keeps zero-init projections
    and small-init embeddings from looking free.
Schemes quantized with GPTQ are estimated with round to nearest under the same clip rule and scales
(no Hessians exist before training); GPTQ's codes carry slightly more entropy (error feedback moves
values between levels), so expect the real artifact a little larger.
Absolute scale matters only through the ``1/qmax`` scale floors, which make small weights cheaper.
Real bytes depend on how far training moves the weights (learning rate, steps), which no estimate
made before training knows: treat it as ±10–20%.

LQER (``quant.lqer``) adds its factors at their raw size for the ``top_n`` largest matrices routed to
integer codes (which matrices it corrects depends on the trained weights). The per-group container
(``quant.pergroup``) is estimated as one body compressed with ``quant.compressor``, less
:data:`LRZIP_CONTAINER_SAVING` when a group goes through lrzip: lrzip runs at ~0.16 MB/s on one core (too
slow for a check before every run), and what it and the row sort gain comes from the structure of
trained rows, which Gaussian stand-ins do not have (on them the container saves 0.8%). The saving is
calibrated on #1855, where one brotli-11 body gave a 16,112,007-byte artifact and the container
15,902,285 (spec frontier-1855 §5.7): 209,722 bytes, 1.304% of the brotli body's 16,080,008 model bytes.

Large matrices are sampled: a miniature artifact holds ``sample_fraction`` of each large matrix's rows
and every other tensor whole; a second one twice those rows. The difference of their compressed
sizes is the marginal cost of the sampled elements once the compressor has adapted, extrapolated to
the rows not sampled. Two compressor calls: seconds for a full-size model even with zstd-22 or LZMA-9,
within about 2% of exporting the same stand-in weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

import torch
from torch import Tensor, nn

from golf.kernel.artifact import frame_body, quantize_state_dict, serialize
from golf.kernel.quantize import prune_tensor
from golf.model.roles import Role
from golf.quant.config import QuantConfig, SchemeKind
from golf.quant.config_stages import GroupCodec
from golf.quant.routing import prune_targets, route_state_dict

SAMPLE_MIN_NUMEL = 1 << 16  # matrices above this many elements (and ≥ 4× the sample rows) are sampled
MIN_SAMPLE_ROWS = 8
RECORD_WEIGHT_STD = 0.15  # stand-in std without real values (calibration: module docstring)
# the per-group lrzip container against one brotli body on #1855's trained weights (module docstring)
LRZIP_CONTAINER_SAVING = 209_722 / 16_080_008


def _specs(source) -> dict[str, Tensor]:
    """Name → tensor (real values, or a float32 ``meta`` tensor for a bare shape)."""
    if isinstance(source, nn.Module):
        return dict(source.state_dict())
    if not isinstance(source, Mapping):
        raise TypeError(f"expected a model, a state dict or a name → shape mapping, got {type(source).__name__}")
    out = {}
    for name, value in source.items():
        if isinstance(value, Tensor):
            out[name] = value.detach()
        elif isinstance(value, (tuple, list, torch.Size)) and all(isinstance(d, int) for d in value):
            out[name] = torch.empty(tuple(value), dtype=torch.float32, device="meta")
        else:
            raise TypeError(f"{name!r}: expected a tensor or a shape, got {value!r}")
    return out


def _rms(t: Tensor) -> float | None:
    """RMS of a tensor with real, non-constant float values; None otherwise."""
    if t.device.type == "meta" or not t.is_floating_point() or t.numel() < 2 or bool(t.max() == t.min()):
        return None
    return float(t.detach().float().square().mean().sqrt())


def _stand_in_std(t: Tensor, typical: float | None, weight_std: float | None) -> float:
    if weight_std is not None:
        return weight_std
    if typical is None:  # no real matrix values: shapes or a meta model
        return RECORD_WEIGHT_STD
    return max(_rms(t) or 0.0, typical)


def estimate_artifact_bytes(source, cfg: QuantConfig, *, roles: Mapping[str, Role] | None = None,
                            weight_std: float | None = None, sample_fraction: float = 1 / 32, seed: int = 0) -> int:
    """Estimated compressed model bytes after training, from a model, a state dict or name → shape.

    ``roles`` (parameter roles, :mod:`golf.model.roles`) route the tensors; a GPT brings its own."""
    specs = _specs(source)
    if roles is None:
        roles = getattr(source, "param_roles", None)
        if roles is None:
            raise TypeError("estimate_artifact_bytes needs the parameter roles of a state dict or shapes")
    routes = route_state_dict(specs, cfg, roles)
    rms = [r for t in specs.values()
           if t.ndim == 2 and t.numel() > cfg.passthrough_max_numel and (r := _rms(t)) is not None]
    typical = float(torch.tensor(rms).median()) if rms else None
    pruned = prune_targets(cfg.prune, roles) if cfg.prune is not None else set()

    plain = replace(cfg, lqer=None, pergroup=None)

    def store(name: str, values: Tensor) -> tuple:
        """What the kernel stores for ``values`` (round to nearest where the export would run GPTQ)."""
        return quantize_state_dict({name: values}, plain, {name: routes[name].scheme_name})[name]

    gen = torch.Generator().manual_seed(seed)
    small, samples = {}, {}  # samples: name → (stored sample of ``rows`` rows, of ``2·rows`` rows)
    full = sampled = 0       # elements of the sampled matrices: in total, and in their first samples
    for name, t in specs.items():
        rows = max(MIN_SAMPLE_ROWS, math.ceil(t.shape[0] * sample_fraction)) if t.ndim == 2 else 0
        big = t.ndim == 2 and t.numel() > SAMPLE_MIN_NUMEL and t.shape[0] >= 4 * rows
        shape = (2 * rows, *t.shape[1:]) if big else tuple(t.shape)
        if not t.is_floating_point():
            values = torch.zeros(shape, dtype=t.dtype)
        else:
            values = (torch.randn(shape, generator=gen) * _stand_in_std(t, typical, weight_std)).to(t.dtype)
        if name in pruned and t.is_floating_point():
            values = prune_tensor(values, cfg.prune.fraction)
        if big:
            samples[name] = (store(name, values[:rows]), store(name, values))
            full += t.numel()
            sampled += values[:rows].numel()
        else:
            small[name] = store(name, values)
    # Samples of one scheme and shape sit together, so the short samples form long homogeneous runs
    # as the full matrices do in the real artifact (block-based coders such as zstd care).
    order = sorted(samples, key=lambda n: (routes[n].scheme_name, tuple(specs[n].shape)))

    def framed(which: int) -> int:
        stored = small | {name: samples[name][which] for name in order}
        return len(frame_body(serialize(stored, plain), plain))

    one = framed(0) + lqer_bytes(specs, routes, cfg)
    body = one
    if samples:
        # The second artifact adds as many sampled elements again: their cost is the marginal cost once
        # the compressor has adapted, extrapolated to the rows not sampled.
        more = framed(1) + lqer_bytes(specs, routes, cfg) - one
        body = one + more * (full - sampled) / sampled
    return int(round(body * (1 - container_saving(cfg))))


def container_saving(cfg: QuantConfig) -> float:
    """Fraction of one compressed body the per-group container is estimated to save (0 without lrzip)."""
    if cfg.pergroup is None or all(g.codec is not GroupCodec.lrzip for g in cfg.pergroup.groups):
        return 0.0
    return LRZIP_CONTAINER_SAVING


def lqer_bytes(specs: Mapping[str, Tensor], routes, cfg: QuantConfig) -> int:
    """Raw bytes of LQER's factors on the ``top_n`` largest matrices routed to integer codes (0 without)."""
    c = cfg.lqer
    if c is None:
        return 0
    sizes = sorted((tuple(t.shape) for n, t in specs.items() if t.ndim == 2 and routes[n].scheme is not None
                    and routes[n].scheme.kind is SchemeKind.int), key=math.prod, reverse=True)[:c.top_n]
    return sum((rows + cols) * min(c.rank, rows, cols) + 2 + 2 * -(-min(c.rank, rows, cols) * cols // c.group)
               for rows, cols in sizes)
