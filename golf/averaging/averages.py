"""The two weight averages: an exponential moving average and a uniform average of snapshots.

EMA (spec §2.18; records 03-20 XSA4 onward, #344, #187 at 0.997, #507 at 0.9985):
``ema <- d*ema + (1-d)*w`` over every floating-point ``state_dict`` entry, in fp32 on the weights' device.
SWA (spec §2.19; #295 tau 0.4, #1573 tau 0.2, every 50 steps): a running fp32 sum of snapshots and its
count; the average is ``sum / count``. Both work on plain dicts of tensors; ``golf.averaging.averager``
decides when they update and which one is exported.
"""

from __future__ import annotations

import torch
from torch import Tensor


def float_entries(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The floating-point entries of a state dict (integer buffers are never averaged)."""
    return {k: v for k, v in state.items() if v.is_floating_point()}


class Ema:
    def __init__(self, decay: float, weights: dict[str, Tensor]):
        self.decay = decay
        self.avg = {k: v.detach().float().clone() for k, v in weights.items()}

    @torch.no_grad()
    def update(self, weights: dict[str, Tensor]) -> None:
        names = list(self.avg)
        avgs = [self.avg[k] for k in names]
        torch._foreach_mul_(avgs, self.decay)
        torch._foreach_add_(avgs, [weights[k].float() for k in names], alpha=1.0 - self.decay)


class SnapshotMean:
    def __init__(self, like: dict[str, Tensor]):
        self.total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in like.items()}
        self.count = 0

    @torch.no_grad()
    def add(self, weights: dict[str, Tensor]) -> None:
        names = list(self.total)
        torch._foreach_add_([self.total[k] for k in names], [weights[k].float() for k in names])
        self.count += 1

    def mean(self) -> dict[str, Tensor]:
        return {k: v / self.count for k, v in self.total.items()}
