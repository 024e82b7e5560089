"""The policy tables checked against the model they will act on, at validation time (DESIGN 5, 7).

The model is built on the meta device (no memory, no init, no data): its parameter roles are resolved
against the optimizer's groups, the export's routing, QAT's targets and pruning's targets, so a
parameter that no rule selects fails here, naming the parameter and its roles, before data is prepared
or weights exist.
"""

from __future__ import annotations

import torch

from golf.model import build_model
from golf.optim.groups import groups_table
from golf.quant.qat import qat_table
from golf.quant.routing import prune_targets, route_state_dict


def check_policies(cfg) -> None:
    """Resolve every rule table of ``cfg`` (a :class:`GolfConfig`) on a meta model; ConfigError if one fails."""
    with torch.device("meta"):
        model = build_model(cfg.arch)
        groups_table(model, cfg.optimizer)
        route_state_dict(model.state_dict(), cfg.quant, model.param_roles)
        qat_table(model, cfg.quant)
        if cfg.quant.prune is not None:
            prune_targets(cfg.quant.prune, model.param_roles)
