"""A run's mutable state as one object, and the per-step decisions every rank takes alike.

:class:`TrainState` (DESIGN 6c; lingua's ``TrainState``) holds everything a training step changes:
the model's weights, the optimizer's state, the averager's running averages, the training loader's
position, the QAT switch, the depth-loop topology, the CPU RNG and the clock (``step``, ``train_time``
seconds of training, ``stop_at``: the step the wall-clock cap settled on). ``state_dict`` /
``load_state_dict`` are a checkpoint and its resume (:mod:`golf.checkpoint` checks the components
before loading); the compile warm-up rolls back with :meth:`TrainState.snapshot`.

:class:`StepFlags` agrees the training clock, the lab's requests (stop, checkpoint due) and a
device-side divergence flag over ranks without draining the device queue every step: the values go
into one float64 tensor, MAX-reduced. On CUDA the result is copied to pinned memory without blocking
and read one step later (decisions lag one step, identically on every rank; the wall-clock cap is
checked against the clock one step ahead); on CPU it is read at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from golf.kernel.dist import all_reduce_

STATE_COMPONENTS = ("step", "train_time", "stop_at", "model", "optimizer", "averaging", "loader", "qat",
                    "topology", "rng")


@dataclass
class TrainState:
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
        """Every component, keyed as :data:`STATE_COMPONENTS` (tensors and plain containers)."""
        return {"step": self.step, "train_time": self.train_time, "stop_at": self.stop_at,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "averaging": self.averager.state_dict(), "loader": self.loader.state_dict(),
                "qat": self.qat.state_dict(), "topology": self.topology.state_dict(), "rng": torch.get_rng_state()}

    def load_state_dict(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        self.averager.load_state_dict(s["averaging"])
        self.loader.load_state_dict(s["loader"])
        self.qat.load_state_dict(s["qat"])
        self.topology.load_state_dict(s["topology"])
        torch.set_rng_state(s["rng"])
        self.step, self.train_time, self.stop_at = int(s["step"]), float(s["train_time"]), s["stop_at"]

    def snapshot(self) -> dict:
        """A copy of :meth:`state_dict` that training does not change."""
        return clone_state(self.state_dict())


def clone_state(obj):
    """A state dict's copy: tensors cloned, containers copied, other leaves shared (immutable)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return {k: clone_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(clone_state(v) for v in obj)
    return obj


class StepFlags:
    def __init__(self, device: torch.device):
        self.device, self.lag = device, int(device.type == "cuda")
        self.pending, self.clocks = None, []

    def exchange(self, *values: float, device_flag: torch.Tensor) -> list[float] | None:
        """This step's values and device flag in; the agreed ``[*values, flag]`` out, or None while
        nothing is agreed yet (the first step on CUDA)."""
        sent = torch.tensor([*values, 0.0], dtype=torch.float64)
        if self.lag:  # a plain torch.tensor(..., device="cuda") would wait for the device queue
            sent = sent.pin_memory().to(self.device, non_blocking=True)
        sent[-1] = device_flag
        all_reduce_(sent, "max")
        if self.lag:
            host = torch.empty(sent.shape, dtype=sent.dtype, pin_memory=True)
            host.copy_(sent, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            agreed, self.pending = self.flush(), (host, done)
            if agreed is None:
                return None
        else:
            agreed = sent.tolist()
        self.clocks = [*self.clocks[-1:], agreed[0]]
        return agreed

    def projected_clock(self) -> float:
        """The agreed clock at the end of the step being run (the first value is the clock)."""
        c = self.clocks
        return c[-1] + self.lag * (c[-1] - c[-2]) if len(c) > 1 else c[-1] if c else 0.0

    def flush(self) -> list[float] | None:
        """The values still in flight (every rank calls this at the same point), or None."""
        if self.pending is None:
            return None
        host, done = self.pending
        self.pending = None
        done.synchronize()
        return host.tolist()
