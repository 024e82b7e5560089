"""U-Net skip connections (spec §1.5, §2.7): encoder outputs merged into the decoder, hosted on the GPT.

With E encoder blocks, the outputs of the encoder blocks (of the last encoder pass) are pushed on a
stack; before decoder block i the stack is popped, so decoder i receives encoder block E-1-i and there
are min(E, L-E) skips. The first decoder block's skip is the last encoder output: with a plain encoder
that is its own input (doubled at init by the plain merge; the "mid" block of #507), while after a
recycled core (#1573) it is no longer equal to it. With L odd the last decoder block gets none.

* ``plain`` (baseline, #187, #295, #344, #1573): ``x <- x + skip_weights[i] * skip``, weights init 1.
* ``gated`` (#507): ``g = sigma(skip_gates[i])``, ``x <- g * x + (1 - g) * (skip_weights[i] * skip)``,
  gates init 0 so the merge is 0.5 x + 0.5 skip at init (no doubling).

PARAMS: ``skip_weights`` [n_skip, d]; gated adds ``skip_gates`` [n_skip, d] (control tensors, scalar Adam).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golf.model.config import SkipConfig, SkipKind
from golf.model.roles import Label


class PlainSkips:
    HOST_ROLES = {"skip_weights": Label("control", "unet", "middle"), "skip_gates": Label("control", "unet", "middle")}

    def __init__(self, num_skips: int, dim: int):
        self.num_skips, self.dim = num_skips, dim

    def host_parameters(self) -> dict[str, nn.Parameter]:
        return {"skip_weights": nn.Parameter(torch.ones(self.num_skips, self.dim, dtype=torch.float32))}

    def merge(self, host: nn.Module, x: Tensor, skip: Tensor, i: int) -> Tensor:
        return x + host.skip_weights[i].to(x.dtype) * skip


class GatedSkips(PlainSkips):
    def host_parameters(self) -> dict[str, nn.Parameter]:
        gates = nn.Parameter(torch.zeros(self.num_skips, self.dim, dtype=torch.float32))
        return {**super().host_parameters(), "skip_gates": gates}

    def merge(self, host: nn.Module, x: Tensor, skip: Tensor, i: int) -> Tensor:
        g = torch.sigmoid(host.skip_gates[i]).to(x.dtype)
        return g * x + (1.0 - g) * (host.skip_weights[i].to(x.dtype) * skip)


def build_skips(cfg: SkipConfig | None, num_skips: int, dim: int) -> PlainSkips | None:
    if cfg is None or num_skips == 0:
        return None
    return (GatedSkips if cfg.kind is SkipKind.gated else PlainSkips)(num_skips, dim)
