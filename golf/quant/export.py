"""The lab's side of the post-training chain (DESIGN principle 6): validate the quant config, route every
tensor by its parameter's role into the kernel's plain tables, check the calibration Hessians, run the
kernel's stages with progress, and report what they made.

    export:  prune → route → quantize (store) → (LQER) → serialize (pack) → (byte shuffle) → compress/frame
             (or the per-group container: groups sorted, transposed and compressed each) → bytes
    load:    unframe/decompress (strict) → (unshuffle) → check the header → decode/dequantize → state dict

The stages themselves are :mod:`golf.kernel.artifact` (and :mod:`golf.kernel.quantize`,
:mod:`golf.kernel.gptq`): one source of truth for golf's runs and the generated submission. Schemes
with ``gptq`` settings need the Hessian of each such tensor (``hessians``, name → H, from
:mod:`golf.quant.calibrate`). ``load_artifact`` needs nothing but the bytes (the container is
self-describing) and returns tensors with the original names, shapes and dtypes; given the model's
tensors it also bounds the body by that model's size and refuses an artifact of another shape. The
reported val_bpb must come from the loaded state dict, never the live model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import Tensor

from golf.kernel.artifact import decode_body, frame_body, quantize_state_dict, serialize
from golf.kernel.pergroup import pack_groups
from golf.model.roles import Role
from golf.quant.config import LQERConfig, Packing, QuantConfig, validate_quant
from golf.quant.report import QuantReport, stream_bytes, tensor_report
from golf.quant.routing import Route, pergroup_table, prune_table, route_state_dict, uses_gptq
from golf.quant.validate_artifact import (
    FRAME_BYTES,
    ArtifactError,
    body_bound,
    body_limit,
    check_body,
    check_fits,
    unframe,
)

EXPORT_STAGES = ("quantize", "pack", "compress")


class GPTQError(ValueError):
    """GPTQ cannot run on a matrix: its Hessian does not fit it, or stays singular after damping."""


def gptq_hessians(state_dict: Mapping[str, Tensor], routes: Mapping[str, Route],
                  hessians: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    """The Hessians of the tensors routed to GPTQ (others are ignored); a missing one, or one that is
    not [cols, cols] for its matrix, is an error raised before any tensor is quantized."""
    hessians = hessians or {}
    missing = [n for n, r in routes.items() if uses_gptq(r) and n not in hessians]
    if missing:
        raise ValueError(f"no calibration Hessian for {missing} (routed to GPTQ schemes): the export needs "
                         "quant.calibration and a model whose layers feed these weights")
    out = {}
    for name, route in routes.items():
        t = state_dict[name]
        if uses_gptq(route) and t.ndim == 2:
            h = hessians[name]
            if tuple(h.shape) != (t.shape[1], t.shape[1]):
                raise GPTQError(f"{name}: weight {list(t.shape)} and Hessian {list(h.shape)} do not fit "
                                "(GPTQ needs a matrix and a [cols, cols] Hessian)")
            out[name] = h
    return out


def check_hessians(state_dict: Mapping[str, Tensor], routes: Mapping[str, Route],
                   hessians: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
    """The GPTQ Hessians (:func:`gptq_hessians`), each checked to give GPTQ a Cholesky factor once damped
    (GPTQ steps 1-2): a NaN/inf Hessian or one still singular is a :class:`GPTQError` naming the tensor
    and what to change, raised before any tensor is quantized."""
    hs = gptq_hessians(state_dict, routes, hessians)
    for name, h in hs.items():
        h = h.detach().to(dtype=torch.float32).clone()
        if not bool(torch.isfinite(h).all()):
            raise GPTQError(f"{name}: its calibration Hessian holds NaN or inf values (the calibration forward "
                            "was not finite: check the trained weights' prequant score or the calibration "
                            "batches; this is not a conditioning problem)")
        dead = torch.diagonal(h) == 0
        h[dead, dead] = 1.0
        torch.diagonal(h).add_(routes[name].scheme.gptq.damp * torch.diagonal(h).mean())
        info = int(torch.linalg.cholesky_ex(h)[1])
        if info:
            raise GPTQError(f"{name}: the damped Hessian is not positive definite (leading minor {info}); "
                            f"raise quant.schemes.{routes[name].scheme_name}.gptq.damp")
    return hs


def export_state_dict(state_dict: dict[str, Tensor], cfg: QuantConfig, roles: Mapping[str, Role],
                      hessians: dict[str, Tensor] | None = None,
                      on_stage: Callable[..., None] | None = None) -> tuple[bytes, QuantReport]:
    """The artifact's model bytes for a state dict (routed by its parameters' ``roles``), and the report of
    how they were made.

    ``on_stage(name, **fields)`` is called after each of :data:`EXPORT_STAGES` (progress display)."""
    validate_quant(cfg)
    done = on_stage or (lambda stage, **fields: None)
    t0 = time.perf_counter()
    routes = route_state_dict(state_dict, cfg, roles)
    hs = check_hessians(state_dict, routes, hessians)
    table = {name: r.scheme_name for name, r in routes.items()}
    stored = quantize_state_dict(state_dict, cfg, table, hs, set(prune_table(state_dict, cfg, roles)))
    done("quantize", tensors=len(stored))
    t1 = time.perf_counter()
    body = serialize(stored, cfg)
    done("pack", bytes=len(body))
    blob = frame_body(body, cfg) if cfg.pergroup is None else pack_groups(body, cfg, pergroup_table(state_dict, cfg, roles))
    done("compress", bytes=len(blob), codec=f"{cfg.compressor.value}-{int(cfg.level)}")
    rows = [tensor_report(name, state_dict[name], stored[name], routes[name].reason, cfg.packing) for name in stored]
    report = QuantReport(rows, len(blob), len(body), cfg.compressor.value, int(cfg.level), cfg.packing.value,
                         shuffle=cfg.byte_shuffle, quantize_s=round(t1 - t0, 3),
                         compress_s=round(time.perf_counter() - t1, 3), streams=stream_bytes(blob))
    return blob, report


# decode_body reads bit-packed codes and LQER corrections where the header has them
_ANY_PACKING = QuantConfig(packing=Packing.bits, lqer=LQERConfig())


def load_artifact(blob: bytes, expect: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Dequantized tensors (original names, shapes, dtypes) from artifact bytes, validated first; raises
    :class:`~golf.quant.validate_artifact.ArtifactError`. ``expect``: the tensors of the model the artifact
    is for (its state dict, meta tensors will do): its tensors must then be the model's, of the same
    shapes (checked on the header, before anything is dequantized), and the body may be as large as an
    artifact of that model can be when that is above the default limit."""
    body = unframe(blob, None if expect is None else body_bound(expect))
    shapes = check_body(body)
    if expect is not None:
        check_fits(shapes, expect)
    return decode_body(body, _ANY_PACKING)


def read_artifact(path, expect: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """:func:`load_artifact` of the file ``path`` for the model whose tensors are ``expect``; a file larger
    than the limit on its body (:func:`~golf.quant.validate_artifact.body_limit`) is refused unread."""
    size = Path(path).stat().st_size
    bound = FRAME_BYTES + body_limit(0, body_bound(expect)) * 1025 // 1024 + 4096  # compressors add < 0.1%
    if size > bound:
        raise ArtifactError(f"{path}: {size} bytes, more than the {bound} bytes a golf artifact of this model can be")
    return load_artifact(Path(path).read_bytes(), expect)
