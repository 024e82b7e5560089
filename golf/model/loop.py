"""Depth recurrence switched on during training (PR #1493; from #1394/#1413; frontier spec §3.6-3.7, §4.6).

A contiguous block range ``[s..e]`` is replayed ``extra_passes`` more times once the loop is on. Both
topologies are plain U-Nets over a sequence of block applications, split in half:

    plain   = 0 .. L-1                                           (11 blocks: enc 0..4, dec 5..10)
    looped  = 0..s-1 + (1 + extra) x [s..e] + e+1..L-1           (3,4,5 x3: 17 applications)
              enc [0,1,2,3,4,5,3,4]   dec [5,3,4,5,6,7,8,9,10]

The U-Net skip parameters are sized once for the looped sequence: S = min(|enc|, |dec|) (8 here).
Decoder slot j merges skip parameter row j with the (j+1)-th most recent encoder output, when j < S and
the encoder has that many outputs. At the switch the rows keep their index but change meaning: before
it rows 1..4 feed blocks 6..9, after it rows 4..7 do (spec §3.7's table; trap 4).

The GPT holds both step sequences and runs the one its ``topology`` index names (``0`` plain, ``1``
looped); a freshly built model is looped, the architecture as exported and evaluated. The training
loop never sets that index itself: it asks a :class:`LoopSwitch` once per step, which switches the
model at the first step whose agreed training clock reaches ``switch_at`` of the budget (measured
before the step, so every rank switches at the same step), and compiles both graphs in the warm-up.
``torch.compile`` guards on the integer index, so each topology is its own cached graph.
Without ``arch.depth.loop`` the switch is :class:`NoSwitch`, which does nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from golf.model.config import ArchConfig, LoopConfig

PLAIN, LOOPED = 0, 1


def looped_sequence(num_layers: int, loop_layers: tuple[int, ...], extra_passes: int) -> list[int]:
    """The block applications of the looped topology, in order."""
    s, e = loop_layers[0], loop_layers[-1]
    return [*range(s), *(list(loop_layers) * (1 + extra_passes)), *range(e + 1, num_layers)]


def split(sequence: list[int]) -> tuple[list[int], list[int]]:
    """(encoder, decoder) applications: the first ``len // 2`` and the rest."""
    half = len(sequence) // 2
    return sequence[:half], sequence[half:]


@dataclass(frozen=True)
class Topology:
    """One block sequence as encoder/decoder halves and the skip rows the decoder slots use."""

    encoder: tuple[int, ...]
    decoder: tuple[int, ...]
    # skip row merged before decoder slot j (None = no skip)
    merges: tuple[int | None, ...]
    # encoder slots whose output is pushed for a later merge
    pushes: tuple[bool, ...]


def topology(sequence: list[int], num_skips: int) -> Topology:
    enc, dec = split(sequence)
    used = min(num_skips, len(enc), len(dec))
    return Topology(
        encoder=tuple(enc), decoder=tuple(dec),
        merges=tuple(j if j < used else None for j in range(len(dec))),
        pushes=tuple(i >= len(enc) - used for i in range(len(enc))),
    )


def loop_topologies(cfg: ArchConfig, loop_layers: tuple[int, ...], with_skips: bool) -> tuple[tuple[Topology, Topology], int]:
    """(plain, looped) topologies and the number of skip rows (sized for the looped sequence)."""
    looped = looped_sequence(cfg.num_layers, loop_layers, cfg.depth.loop.extra_passes)
    enc, dec = split(looped)
    num_skips = min(len(enc), len(dec)) if with_skips else 0
    return (topology(list(range(cfg.num_layers)), num_skips), topology(looped, num_skips)), num_skips


# ----------------------------------------------------------------------------- the training-loop controller


class NoSwitch:
    """The model has one topology: nothing to switch (``arch.depth.loop`` off)."""

    switch_step: int | None = None

    def warmup_phases(self) -> Iterator[str]:
        yield "static"

    def begin(self) -> None:
        pass

    def update(self, step: int, clock_s: float, cap_s: float | None, iterations: int) -> bool:
        return False

    def finish(self) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict | None) -> None:
        pass


class LoopSwitch(NoSwitch):
    """Starts training on the plain topology and switches the model to the looped one, once."""

    def __init__(self, model: nn.Module, cfg: LoopConfig):
        self.model, self.cfg = model, cfg
        self.switch_step: int | None = None

    @property
    def looping(self) -> bool:
        return self.model.topology == LOOPED

    def warmup_phases(self) -> Iterator[str]:
        """Compile warm-up: the same steps run once per topology the run will use (spec §4.6)."""
        if self.cfg.switch_at > 0:
            self.model.set_topology(PLAIN)
            yield "plain"
        self.model.set_topology(LOOPED)
        yield "looped"

    def begin(self) -> None:
        """The topology of step 0."""
        self.model.set_topology(LOOPED if self.cfg.switch_at == 0 else PLAIN)
        self.switch_step = 0 if self.cfg.switch_at == 0 else None

    def due(self, step: int, clock_s: float, cap_s: float | None, iterations: int) -> bool:
        """Whether training has reached ``switch_at``: of the wall-clock cap, or of the iterations."""
        frac = clock_s / cap_s if cap_s else step / iterations
        return frac >= self.cfg.switch_at

    def update(self, step: int, clock_s: float, cap_s: float | None, iterations: int) -> bool:
        """Called before every step with the clock all ranks agreed on; True at the switching step."""
        if self.looping or not self.due(step, clock_s, cap_s, iterations):
            return False
        self.model.set_topology(LOOPED)
        self.switch_step = step
        return True

    def finish(self) -> None:
        """After training the model stays looped: export, calibration and every eval use the loop."""
        self.model.set_topology(LOOPED)

    def state_dict(self) -> dict:
        return {"switch_step": self.switch_step}

    def load_state_dict(self, state: dict | None) -> None:
        self.switch_step = (state or {}).get("switch_step")
        self.model.set_topology(PLAIN if self.switch_step is None else LOOPED)


def build_switch(model: nn.Module, cfg: ArchConfig) -> NoSwitch:
    """The training loop's controller of ``model``'s topology (``model`` is the bare GPT)."""
    return NoSwitch() if cfg.depth.loop is None else LoopSwitch(model, cfg.depth.loop)
