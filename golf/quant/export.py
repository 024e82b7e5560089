"""The post-training chain on state dicts (DESIGN principle 6), each stage a pure function:

    export:  prune → route → quantize (store) → serialize (pack) → (byte shuffle) → compress/frame → bytes
    load:    unframe/decompress → (unshuffle) → parse (unpack) → dequantize → state dict

Schemes with ``gptq`` settings quantize with full-Hessian GPTQ (:mod:`golf.quant.gptq`) and need the
Hessian of each such tensor (``hessians``, name → H, from :mod:`golf.quant.calibrate`).

``export_state_dict`` returns the artifact's model bytes and a :class:`QuantReport`; ``load_artifact``
needs nothing but the bytes (the container is self-describing) and returns tensors with the original
names, shapes and dtypes. The reported val_bpb must come from the loaded state dict, never the live
model. Baseline reference: ``quantize_state_dict_int8`` / ``dequantize_state_dict_int8`` (spec §1.8).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor

from golf.model.roles import Role
from golf.quant.config import Packing, QuantConfig, SchemeKind, validate_quant
from golf.quant.container import StoredTensor, frame, parse, serialize, unframe
from golf.quant.gptq import gptq_quantize
from golf.quant.packing import packed_nbytes
from golf.quant.prune import prune_state_dict
from golf.quant.quantizer import QuantizedTensor, dequantize, quantize
from golf.quant.report import QuantReport, TensorReport, code_entropy_bits
from golf.quant.routing import Route, route_state_dict


def uses_gptq(route: Route) -> bool:
    return route.scheme is not None and route.scheme.kind is SchemeKind.int and route.scheme.gptq is not None


def store_tensor(t: Tensor, route: Route, hessian: Tensor | None = None) -> StoredTensor:
    """Apply one route: int codes + scales (GPTQ when a Hessian is given), an fp16/fp32 copy, or raw."""
    if route.scheme is None:
        data = t
    elif route.scheme.kind is SchemeKind.int and hessian is not None and t.ndim == 2:
        data = gptq_quantize(t, hessian, route.scheme)
    elif route.scheme.kind is SchemeKind.int:
        data = quantize(t, route.scheme)
    else:
        data = t.to(torch.float16 if route.scheme.kind is SchemeKind.fp16 else torch.float32)
    return StoredTensor(route.scheme_name, t.dtype, data.contiguous() if isinstance(data, Tensor) else data)


def quantize_state_dict(state_dict: dict[str, Tensor], cfg: QuantConfig, roles: Mapping[str, Role],
                        hessians: dict[str, Tensor] | None = None) -> tuple[dict[str, StoredTensor], dict[str, Route]]:
    """Prune (if configured), route by the parameters' ``roles`` and quantize every tensor (CPU copies; the
    input is not modified).

    Every tensor routed to a GPTQ scheme needs its Hessian in ``hessians``; a missing one is an error
    raised before any tensor is quantized."""
    sd = {name: t.detach().cpu() for name, t in state_dict.items()}
    if cfg.prune is not None:
        sd = prune_state_dict(sd, cfg.prune, roles)
    routes = route_state_dict(sd, cfg, roles)
    hessians = hessians or {}
    missing = [n for n, r in routes.items() if uses_gptq(r) and n not in hessians]
    if missing:
        raise ValueError(f"no calibration Hessian for {missing} (routed to GPTQ schemes): the export needs "
                         "quant.calibration and a model whose layers feed these weights")
    stored = {name: store_tensor(t, routes[name], hessians.get(name) if uses_gptq(routes[name]) else None)
              for name, t in sd.items()}
    return stored, routes


def restore_tensor(st: StoredTensor) -> Tensor:
    """Dequantize one stored tensor back to its original dtype."""
    if isinstance(st.data, QuantizedTensor):
        return dequantize(st.data, st.dtype)
    return st.data.to(st.dtype)


def dequantize_state_dict(stored: dict[str, StoredTensor]) -> dict[str, Tensor]:
    return {name: restore_tensor(st) for name, st in stored.items()}


def _row(name: str, t: Tensor, st: StoredTensor, route: Route, packing: Packing) -> TensorReport:
    before = t.numel() * t.element_size()
    if isinstance(st.data, QuantizedTensor):
        qt = st.data
        packed = packing is Packing.bits and qt.bits < 8
        code_bytes = packed_nbytes(qt.q.numel(), qt.bits) if packed else qt.q.numel()
        after = code_bytes + qt.scale.numel() * qt.scale.element_size()
        return TensorReport(name, st.scheme, route.reason, list(t.shape), qt.bits, before, after, code_bytes,
                            code_entropy_bits(qt.q))
    data = st.data
    return TensorReport(name, st.scheme, route.reason, list(t.shape), data.element_size() * 8, before,
                        data.numel() * data.element_size(), 0, None)


EXPORT_STAGES = ("quantize", "pack", "compress")


def export_state_dict(state_dict: dict[str, Tensor], cfg: QuantConfig, roles: Mapping[str, Role],
                      hessians: dict[str, Tensor] | None = None,
                      on_stage: Callable[..., None] | None = None) -> tuple[bytes, QuantReport]:
    """The artifact's model bytes for a state dict (routed by its parameters' ``roles``), and the report of
    how they were made.

    ``on_stage(name, **fields)`` is called after each of :data:`EXPORT_STAGES` (progress display)."""
    validate_quant(cfg)
    done = on_stage or (lambda stage, **fields: None)
    t0 = time.perf_counter()
    stored, routes = quantize_state_dict(state_dict, cfg, roles, hessians)
    done("quantize", tensors=len(stored))
    t1 = time.perf_counter()
    body = serialize(stored, cfg.packing)
    done("pack", bytes=len(body))
    blob = frame(body, cfg.compressor, cfg.level, cfg.byte_shuffle)
    done("compress", bytes=len(blob), codec=f"{cfg.compressor.value}-{int(cfg.level)}")
    rows = [_row(name, state_dict[name], stored[name], routes[name], cfg.packing) for name in stored]
    report = QuantReport(rows, len(blob), len(body), cfg.compressor.value, int(cfg.level), cfg.packing.value,
                         shuffle=cfg.byte_shuffle, quantize_s=round(t1 - t0, 3),
                         compress_s=round(time.perf_counter() - t1, 3))
    return blob, report


def load_artifact(blob: bytes) -> dict[str, Tensor]:
    """Dequantized tensors (original names, shapes, dtypes) from artifact bytes; raises ArtifactError."""
    return dequantize_state_dict(parse(unframe(blob)))
