"""Backout (spec §2.14): subtract a learned fraction of a middle activation before the final norm.

``x_final <- x_final - backout_lambda * h_mid``; hosted on the GPT as an exit step. ``h_mid`` is a tap
of the depth plan (:mod:`golf.model.depth`):

* #507: lambda init 0, h_mid = the output of the last encoder block (block 4 of 11);
* #295: lambda init 0.2, h_mid = the output of block L//2, i.e. the first decoder block (after its skip
  merge; block 5 of 10).

PARAMS: ``backout_lambda`` [1] (control scalar: scalar Adam, fp32 passthrough).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golf.model.config import BackoutConfig
from golf.model.roles import Label


class Backout:
    HOST_ROLES = {"backout_lambda": Label("control", "backout", "exit")}

    def __init__(self, cfg: BackoutConfig):
        self.source, self.lambda_init = cfg.source.value, cfg.lambda_init

    def host_parameters(self) -> dict[str, nn.Parameter]:
        return {"backout_lambda": nn.Parameter(torch.full((1,), self.lambda_init, dtype=torch.float32))}

    def apply(self, host: nn.Module, x: Tensor, taps: dict[str, Tensor]) -> Tensor:
        return x - host.backout_lambda.to(x.dtype) * taps[self.source]


def build_exits(cfg: BackoutConfig | None) -> tuple[Backout, ...]:
    return () if cfg is None else (Backout(cfg),)
