"""The depth schedule: which physical block runs at each step, with skip, tap and modulation marks.

The GPT runs a flat tuple of :class:`Step` built here once. Three shapes (spec §1.5, §2.15):

* plain U-Net: encoder blocks 0..E-1, then decoder blocks E..L-1;
* encoder recurrence (#187): the encoder runs ``passes`` times with ``x <- RMSNorm(x)`` between passes;
  x0 is the same embedding in every pass and the U-Net skips are collected from the last pass only
  (L=10, E=5, 2 passes: 15 effective layers, no extra parameters);
* recycled core (#1573): after the encoder (skips collected), the listed layers are replayed ``repeats``
  times in order, each application preceded by its own modulation ``x <- x * scale + bias``
  (``RecycleModulation``, scale init 1, bias 0). Replayed applications get the value residual but no
  per-layer inputs (value embeddings, per-layer bigram). L=12, E=6, layers 3,4: 14 virtual layers.

Depth recurrence switched on mid-run (#1493, :mod:`golf.model.loop`) builds two step sequences, the
plain U-Net and the looped one, as ``steps`` and ``looped_steps``; the GPT runs the one its topology names.

Taps name activations the exits read (backout): ``encoder_output`` (after the encoder, before any
replay) and ``first_decoder_output``.

PARAMS: ``recycle_mods.{j}.scale``, ``recycle_mods.{j}.bias`` [d] (control tensors, scalar group).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from golf.model.config import ArchConfig, BackoutSource
from golf.model.loop import Topology, loop_topologies
from golf.model.plan import ArchPlan
from golf.model.roles import Label

ENCODER_OUTPUT = BackoutSource.encoder_output.value
FIRST_DECODER_OUTPUT = BackoutSource.first_decoder_output.value
MODULATIONS = "recycle_mods"


@dataclass(frozen=True)
class Step:
    layer: int
    # RMSNorm the stream first (a new encoder pass)
    renorm: bool = False
    # dotted path of a module applied to the stream first (a replayed pass's modulation)
    pre: str | None = None
    # pop a U-Net skip and merge it with skip weight index ``merge_skip``
    merge_skip: int | None = None
    # push the block's output on the skip stack
    push_skip: bool = False
    # per-layer inputs (value embeddings, per-layer hash embeddings) apply
    per_layer_inputs: bool = True
    # record the block's output under this name
    tap: str | None = None


class RecycleModulation(nn.Module):
    PARAM_ROLES = {"scale": Label("control", "recycle", "middle"), "bias": Label("control", "recycle", "middle")}

    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(dim, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype) + self.bias.to(x.dtype)


@dataclass(frozen=True)
class DepthPlan:
    steps: tuple[Step, ...]
    # modules the steps refer to, registered on the GPT under these names
    modules: dict[str, nn.Module]
    num_skips: int
    # the looped topology's steps (depth.loop); ``steps`` is then the plain one
    looped_steps: tuple[Step, ...] | None = None


def _topology_steps(t: Topology) -> tuple[Step, ...]:
    last = len(t.encoder) - 1
    enc = [Step(layer=layer, push_skip=t.pushes[i], tap=ENCODER_OUTPUT if i == last else None)
           for i, layer in enumerate(t.encoder)]
    dec = [Step(layer=layer, merge_skip=t.merges[j], tap=FIRST_DECODER_OUTPUT if j == 0 else None)
           for j, layer in enumerate(t.decoder)]
    return tuple(enc + dec)


def build_depth(cfg: ArchConfig, plan: ArchPlan, with_skips: bool) -> DepthPlan:
    if cfg.depth.loop is not None:
        (plain, looped), num_skips = loop_topologies(cfg, plan.loop_layers, with_skips)
        return DepthPlan(steps=_topology_steps(plain), modules={}, num_skips=num_skips,
                         looped_steps=_topology_steps(looped))
    L, E = cfg.num_layers, plan.encoder_layers
    num_skips = min(E, L - E) if with_skips else 0
    passes = cfg.depth.encoder_recurrence.passes if cfg.depth.encoder_recurrence is not None else 1
    steps: list[Step] = []
    for p in range(passes):
        last_pass = p == passes - 1
        for i in range(E):
            steps.append(Step(
                layer=i,
                renorm=p > 0 and i == 0,
                push_skip=last_pass and i >= E - num_skips,
                tap=ENCODER_OUTPUT if last_pass and i == E - 1 else None,
            ))
    modules: dict[str, nn.Module] = {}
    rc = cfg.depth.recycle
    if rc is not None:
        replays = [layer for _ in range(rc.repeats) for layer in plan.recycle_layers]
        modules[MODULATIONS] = nn.ModuleList(RecycleModulation(cfg.model_dim) for _ in replays)
        steps += [Step(layer=layer, pre=f"{MODULATIONS}.{j}", per_layer_inputs=False)
                  for j, layer in enumerate(replays)]
    for i in range(L - E):
        steps.append(Step(
            layer=E + i,
            merge_skip=i if i < num_skips else None,
            tap=FIRST_DECODER_OUTPUT if i == 0 else None,
        ))
    return DepthPlan(steps=tuple(steps), modules=modules, num_skips=num_skips)
