"""The per-layer plan: every layer selector of an :class:`ArchConfig` expanded once, at build time.

Blocks and attention modules are built from one :class:`LayerPlan` each, so no module holds literal
layer lists and no forward pass asks which layer it is in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from golf.model.config import ArchConfig, encoder_layers
from golf.model.layers import parse_layers


@dataclass(frozen=True)
class LayerPlan:
    index: int
    # factor on both norm outputs (1/sqrt(index + 1) with LN scale, else 1)
    ln_scale: float
    xsa: bool
    gate: bool
    # the layer owns a vr_lambda (value residual)
    value_residual: bool
    # attention and MLP read the same input (parallel residual)
    parallel: bool = False


@dataclass(frozen=True)
class ArchPlan:
    layers: tuple[LayerPlan, ...]
    encoder_layers: int
    # target layers of the value embedding, in the order of its per-layer scales
    value_embed_layers: tuple[int, ...]
    # layers replayed after the encoder (recycled core), in replay order
    recycle_layers: tuple[int, ...]
    # the looped range of depth.loop (empty without it)
    loop_layers: tuple[int, ...] = ()


def _selected(sub_cfg, key: str, num_layers: int, attr: str = "layers") -> tuple[int, ...]:
    return () if sub_cfg is None else parse_layers(getattr(sub_cfg, attr), num_layers, key)


def resolve_plan(cfg: ArchConfig, prefix: str = "arch") -> ArchPlan:
    L, a = cfg.num_layers, cfg.attention
    xsa = set(_selected(a.xsa, f"{prefix}.attention.xsa.layers", L))
    gate = set(_selected(a.gate, f"{prefix}.attention.gate.layers", L))
    vr = set(_selected(a.value_residual, f"{prefix}.attention.value_residual.layers", L))
    recycle = _selected(cfg.depth.recycle, f"{prefix}.depth.recycle.layers", L)
    parallel = set(_selected(cfg.residual.parallel, f"{prefix}.residual.parallel.layers", L))
    layers = tuple(
        LayerPlan(
            index=i,
            ln_scale=1.0 / math.sqrt(i + 1) if cfg.residual.ln_scale else 1.0,
            xsa=i in xsa,
            gate=i in gate,
            value_residual=i in vr,
            parallel=i in parallel,
        )
        for i in range(L)
    )
    return ArchPlan(
        layers=layers,
        encoder_layers=encoder_layers(cfg),
        value_embed_layers=_selected(a.value_embed, f"{prefix}.attention.value_embed.layers", L),
        recycle_layers=recycle,
        loop_layers=_selected(cfg.depth.loop, f"{prefix}.depth.loop.layers", L),
    )
