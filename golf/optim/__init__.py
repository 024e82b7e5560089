"""Optimizer settings and routing: the role rules that send each parameter to Muon or an AdamW group.

The optimizer set, Muon and the lr schedule run in the kernel (:mod:`golf.kernel.optim`); the lab
validates their settings and resolves the routing table they take.
"""

from golf.optim.config import OptimizerConfig, validate_optimizer
from golf.optim.groups import Route, assign_groups, build_optimizer, group_table, groups_table

__all__ = [
    "OptimizerConfig",
    "Route",
    "assign_groups",
    "build_optimizer",
    "group_table",
    "groups_table",
    "validate_optimizer",
]
