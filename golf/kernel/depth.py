"""The depth schedule: which block runs at each step, and the depth loop's controller.

The GPT runs a flat list of steps ``(layer, merge, push, tap, renorm, mod, inputs)``: before the block,
``renorm`` RMSNorms the stream (a new encoder pass), ``mod`` applies recycle modulation ``mod``, ``merge``
pops a U-Net skip into the stream with skip row ``merge``, ``inputs`` adds the per-layer inputs; after it,
``push`` pushes its output for a later merge and ``tap`` records it for backout. Shapes (spec §1.5, §2.15):

* U-Net: encoder applications 0..E-1, then the decoder; with S skip rows, decoder slot j < S merges row j
  with the (j+1)-th most recent encoder output (decoder i receives encoder E-1-i; the first decoder's
  skip is the encoder's last output). Backout's tap is the last encoder output (#507) or the first
  decoder output, after its merge (#295).
* encoder recurrence (#187): the encoder runs ``passes`` times with ``x <- RMSNorm(x)`` between passes, x0
  unchanged, skips and taps from the last pass (L=10, E=5, 2 passes: 15 applications, no parameters).
* recycled core (#1573): after the encoder the listed layers are replayed ``repeats`` times, each
  application preceded by its own ``x <- x * scale + bias`` (:class:`RecycleModulation`, init 1 and 0),
  without per-layer inputs (L=12, E=6, layers 3,4: 14 applications).
* depth loop (PR #1493, from #1394/#1413; frontier spec §3.6-3.7, §4.6): two topologies, the plain U-Net
  of the blocks and the looped sequence ``0..s-1 + (1 + extra) x [s..e] + e+1..L-1`` split in half
  (3,4,5 x3 of 11: enc [0,1,2,3,4,5,3,4], dec [5,3,4,5,6,7,8,9,10]). The skip rows are sized once for
  the looped sequence, S = min(|enc|, |dec|) = 8; at the switch they keep their index and change meaning
  (spec §3.7's table; trap 4).

A model with a loop runs topology ``m.topology`` (0 plain, 1 looped; built looped, as exported and
evaluated). The training loop never sets it: it asks the controller of :func:`build_switch` once per
step, which switches at the first step whose agreed clock reaches ``switch_at`` of the budget (measured
before the step, so every rank switches at the same step) and runs the compile warm-up once per
topology; ``torch.compile`` guards on the integer, so each topology is its own cached graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from golf.kernel.arch import encoder_layers, layer_ids

if TYPE_CHECKING:
    from golf.model.config import ArchConfig


class RecycleModulation(nn.Module):
    PARAM_ROLES = {"scale": ("control", "recycle", "middle"), "bias": ("control", "recycle", "middle")}

    def __init__(self, d: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d, dtype=torch.float32))
        self.bias = nn.Parameter(torch.zeros(d, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale.to(x.dtype) + self.bias.to(x.dtype)


def _unet(seq, E: int, S: int, tap) -> list[tuple]:
    """Steps of the block sequence ``seq`` whose first ``E`` applications are the encoder; ``tap``: the
    step (relative to E) whose output backout reads, or None."""
    n = min(S, E, len(seq) - E)
    return [(i, k - E if E <= k < E + n else None, E - n <= k < E, tap is not None and k == E + tap,
             False, None, True) for k, i in enumerate(seq)]


def depth_steps(cfg: ArchConfig) -> tuple[list[list[tuple]], int]:
    """The step lists of the model's topologies (one; plain and looped with a depth loop) and the
    number of U-Net skip rows."""
    d = cfg.depth
    r = cfg.depth.encoder_recurrence
    L = cfg.num_layers
    P = 1 if r is None else r.passes
    # the step (relative to the encoder's end) whose output backout reads: the last encoder application
    # or the first decoder one
    tap = None if cfg.backout is None else -1 if cfg.backout.source == "encoder_output" else 0
    if d.loop is not None:
        lp = layer_ids(d.loop.layers, L)
        seq = [*range(lp[0]), *lp * (1 + d.loop.extra_passes), *range(lp[-1] + 1, L)]
        S = len(seq) // 2 if cfg.skips is not None else 0  # min(|enc|, |dec|) of the looped sequence
        topologies = [_unet(range(L), L // 2, S, tap), _unet(seq, len(seq) // 2, S, tap)]
    else:
        E = encoder_layers(cfg)
        S = min(E, L - E) if cfg.skips is not None else 0
        steps = _unet(range(L) if r is None else [*range(E)] * P + [*range(E, L)], E * P, S, tap)
        if r is not None:  # skips and taps from the last pass; a norm before each later pass
            for k in range(E, E * P, E):
                steps[k] = (*steps[k][:4], True, None, True)
        if d.recycle is not None:
            at = len(steps) - (L - E)
            steps[at:at] = [(i, None, False, False, False, j, False)
                            for j, i in enumerate(layer_ids(d.recycle.layers, L) * d.recycle.repeats)]
        topologies = [steps]
    return topologies, S


def build_switch(model: nn.Module, cfg: ArchConfig):
    """The training loop's controller of ``model``'s topology (``model``: the bare GPT); without a depth
    loop it does nothing."""
    lp = cfg.depth.loop

    class Switch:
        switch_step = None

        def warmup_phases(self):
            """Compile warm-up: the steps run once per topology the run will use (spec §4.6)."""
            if lp is None:
                yield "static"
            else:
                if lp.switch_at > 0:
                    model.set_topology(0)
                    yield "plain"
                model.set_topology(1)
                yield "looped"

        def begin(self):
            """The topology of step 0."""
            if lp is not None:
                model.set_topology(1 if lp.switch_at == 0 else 0)
                self.switch_step = 0 if lp.switch_at == 0 else None

        def update(self, step: int, clock: float, cap: float | None, iterations: int) -> bool:
            """Called before every step with the clock all ranks agreed on; True at the switching step
            (the clock's fraction of the cap, or the step's of the iterations, reaches ``switch_at``)."""
            if lp is not None and not model.topology and (clock / cap if cap else step / iterations) >= lp.switch_at:
                model.set_topology(1)
                self.switch_step = step
                return True
            return False

        def finish(self):
            """After training the model stays looped: export, calibration and every eval use the loop."""
            if lp is not None:
                model.set_topology(1)

        def state_dict(self) -> dict:
            return {"switch_step": self.switch_step}

        def load_state_dict(self, state: dict | None) -> None:
            self.switch_step = (state or {}).get("switch_step")
            if lp is not None:
                model.set_topology(0 if self.switch_step is None else 1)

    return Switch()
