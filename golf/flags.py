"""The per-step decisions every rank must take alike (training clock, stop request, checkpoint due, a
non-finite loss seen), agreed without draining the device queue every step.

Each step the host values and the device-side divergence flag go into one small float64 tensor,
MAX-reduced over ranks. How it is read depends on the device:

* CUDA: the reduced tensor is copied to pinned host memory without blocking and read one step later,
  once the device has finished that step, so the host keeps queueing kernels while the device works.
  Decisions lag one step, identically on every rank; the wall-clock cap is checked against the clock
  one step ahead (the last agreed clock plus the last agreed step time), so a run still stops at the
  first step whose end reaches the cap.
* CPU: there is no queue to keep full; the values are read at once (no lag).

Extra host values ride along: every value is MAX-reduced; the device flag is the last one returned.
"""

from __future__ import annotations

import torch

from golf.dist import DistInfo, all_reduce_


class StepFlags:
    def __init__(self, dist: DistInfo):
        self.device = dist.device
        self.lag = 1 if dist.device.type == "cuda" else 0
        self._pending: tuple[torch.Tensor, torch.cuda.Event] | None = None
        self._clocks: list[float] = []

    def exchange(self, *values: float, device_flag: torch.Tensor | None = None) -> list[float] | None:
        """This step's values (and device flag) in; the agreed ``[*values, flag]`` out, or None while
        nothing is agreed yet (the first step on CUDA)."""
        sent = torch.tensor([*values, 0.0], dtype=torch.float64)
        if self.lag:  # a plain torch.tensor(..., device="cuda") would wait for the device queue to drain
            sent = sent.pin_memory().to(self.device, non_blocking=True)
        if device_flag is not None:
            sent[-1] = device_flag  # stays on the device
        all_reduce_(sent, op="max")  # identity in one process; on NCCL the host does not wait
        if not self.lag:
            agreed = sent.tolist()
        else:
            host = torch.empty(sent.shape, dtype=sent.dtype, pin_memory=True)
            host.copy_(sent, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            agreed = self._take()
            self._pending = (host, done)
            if agreed is None:
                return None
        self._clocks = [*self._clocks[-1:], agreed[0]]
        return agreed

    def projected_clock(self) -> float:
        """The agreed clock at the end of the step being run (the first value is the clock)."""
        if not self._clocks:
            return 0.0
        if len(self._clocks) < 2 or not self.lag:
            return self._clocks[-1]
        return self._clocks[-1] + self.lag * (self._clocks[-1] - self._clocks[-2])

    def _take(self) -> list[float] | None:
        if self._pending is None:
            return None
        host, done = self._pending
        self._pending = None
        done.synchronize()
        return host.tolist()

    def flush(self) -> list[float] | None:
        """The values still in flight (every rank calls this at the same point), or None."""
        return self._take()
