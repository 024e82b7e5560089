"""Pre-enrichment (#187; spec §2.16): a GELU bottleneck on the embedding before the input norm.

``x <- down(GELU(up(x)))`` with ``up`` d->768 and ``down`` 768->d, bias-free, PyTorch default init, no
residual around it; it follows the token + bigram embedding and SmearGate A, and its output is
normalized into x0. 786,432 parameters at d=512 (both matrices Muon / int6 in #187).

PARAMS: ``pre_enrich.up.weight`` [h, d], ``pre_enrich.down.weight`` [d, h].
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.roles import Label
from golf.model.smear_gate import PRE_NORM


class PreEnrich(nn.Module):
    PARAM_ROLES = {"up.weight": Label("matrix", "pre_enrich", "input"),
                   "down.weight": Label("matrix", "pre_enrich", "input")}

    placement = PRE_NORM

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))
