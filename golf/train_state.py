"""A run's mutable state as one object, saved and loaded whole (DESIGN 6c; lingua's ``TrainState``).

Everything a training step changes lives here: the model's weights, the optimizer's state, the
averager's running averages, the training loader's position, the QAT switch, the depth-loop topology
switch, the RNG and the clock (``step``, ``train_time`` seconds of training, ``stop_at``: the step the
wall-clock cap settled on, or None). The training loop reads and advances the clock on this object;
a checkpoint is :meth:`TrainState.state_dict`, a resume is :meth:`TrainState.load_state_dict`, and the
compile warm-up is rolled back with the same pair. A component added to the run is added here once,
in :data:`COMPONENTS`, and every checkpoint carries it.

A checkpoint holding a component this state lacks, or lacking one it has, is refused with one
:class:`golf.checkpoint.CheckpointError` naming the component: a silently half-restored run would
continue under a state no uninterrupted run ever had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from golf.checkpoint import CheckpointError

# every component of the state, as the keys of its state dict (a checkpoint's rank file)
COMPONENTS = ("step", "train_time", "stop_at", "model", "optimizer", "averaging", "loader", "qat", "topology",
              "rng")


@dataclass
class TrainState:
    """The model and its training companions (each with ``state_dict``/``load_state_dict``) and the clock."""

    model: torch.nn.Module
    optimizer: Any
    averager: Any
    loader: Any
    qat: Any
    topology: Any
    step: int = 0
    train_time: float = 0.0
    stop_at: int | None = None

    def state_dict(self) -> dict:
        """Every component, keyed as :data:`COMPONENTS` (tensors and plain containers only)."""
        return {
            "step": self.step, "train_time": self.train_time, "stop_at": self.stop_at,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "averaging": self.averager.state_dict(), "loader": self.loader.state_dict(),
            "qat": self.qat.state_dict(), "topology": self.topology.state_dict(), "rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore every component; a missing or unknown one is a :class:`CheckpointError` naming it."""
        missing = [k for k in COMPONENTS if k not in state]
        extra = sorted(k for k in state if k not in COMPONENTS)
        if missing or extra:
            what = (f"lacks the component {missing[0]!r}" if missing else f"has an unknown component {extra[0]!r}")
            others = [*missing[1:], *extra[1:]] if missing else extra[1:]
            also = f" (also: {', '.join(map(repr, others))})" if others else ""
            raise CheckpointError(f"the train state {what}{also}; it holds {', '.join(COMPONENTS)}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.averager.load_state_dict(state["averaging"])
        self.loader.load_state_dict(state["loader"])
        self.qat.load_state_dict(state["qat"])
        self.topology.load_state_dict(state["topology"])
        torch.set_rng_state(state["rng"])
        self.step, self.train_time, self.stop_at = int(state["step"]), float(state["train_time"]), state["stop_at"]

    def snapshot(self) -> dict:
        """A copy of :meth:`state_dict` that training does not change (to roll back to with
        :meth:`load_state_dict`, as the compile warm-up does)."""
        return clone_state(self.state_dict())


def clone_state(obj):
    """A copy of a state dict: tensors cloned, containers copied, other leaves shared (immutable)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj
