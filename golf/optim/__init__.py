"""Optimizers and the learning-rate schedule: Muon + AdamW groups routed by parameter-name rules."""

from golf.optim.builder import OptimizerSet, build_optimizer
from golf.optim.config import OptimizerConfig, validate_optimizer
from golf.optim.groups import Route, assign_groups, group_table
from golf.optim.schedule import lr_multiplier

__all__ = [
    "OptimizerConfig",
    "OptimizerSet",
    "Route",
    "assign_groups",
    "build_optimizer",
    "group_table",
    "lr_multiplier",
    "validate_optimizer",
]
