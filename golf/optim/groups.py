"""Which optimizer group each parameter joins: a rule table over parameter roles (:mod:`golf.rules`).

DESIGN principle 5, after modded-nanogpt's parameter table. Each rule is ``{select, group, lr_mul,
wd_mul}``; a parameter takes the first rule whose role expression selects it, and a parameter that no
rule selects is an error naming it and its roles. Seeds differ here, e.g. the bigram projection goes to
Muon in #295/#344 and to the scalar AdamW group in #1573, and #507 doubles the lr of the decoder's
parameters for both Muon and scalar Adam (``place=decoder``, whatever the depth; spec §2.2, §2.17).

The routes resolve into the plain table the kernel's optimizer set takes (:func:`groups_table`,
:func:`golf.kernel.optim.build_optimizer`); :func:`build_optimizer` does both for the lab's callers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

from torch import Tensor, nn

from golf.config.errors import ConfigError
from golf.kernel.optim import build_optimizer as build_optimizer_set
from golf.model.roles import Role
from golf.optim.config import MUON_GROUP, OptimizerConfig, ParamRule
from golf.rules import first_match


@dataclass(frozen=True)
class Route:
    """Where one parameter goes: its group and the multipliers of the rule (index ``rule``) that sent it."""

    name: str
    group: str
    lr_mul: float
    wd_mul: float
    rule: int

    @property
    def label(self) -> str:
        """The group name, qualified by the multipliers when they are not 1 (``muon[lr*2]``)."""
        extra = [f"lr*{self.lr_mul:g}"] if self.lr_mul != 1.0 else []
        extra += [f"wd*{self.wd_mul:g}"] if self.wd_mul != 1.0 else []
        return f"{self.group}[{','.join(extra)}]" if extra else self.group


def assign_groups(
    params: Mapping[str, Tensor], roles: Mapping[str, Role], rules: Sequence[ParamRule], prefix: str = "optimizer.rules"
) -> list[Route]:
    """One :class:`Route` per parameter of ``params`` (name → tensor), in its order. Raises :class:`ConfigError`."""
    matches = first_match(rules, {name: roles[name] for name in params}, prefix)
    routes = []
    for name, param in params.items():
        i, rule = matches[name].index, matches[name].rule
        if rule.group == MUON_GROUP and param.ndim < 2:
            raise ConfigError(f"{prefix}[{i}].group", rule.group,
                              f"sends {name} (shape {tuple(param.shape)}) to Muon, which needs matrices")
        routes.append(Route(name, rule.group, float(rule.lr_mul), float(rule.wd_mul), i))
    return routes


def group_table(routes: Sequence[Route], numels: dict[str, int]) -> list[tuple[str, list[str], int]]:
    """(group label, parameter names, total numel) per group, in order of first appearance."""
    table: dict[str, tuple[list[str], int]] = {}
    for r in routes:
        names, total = table.get(r.label, ([], 0))
        names.append(r.name)
        table[r.label] = (names, total + numels[r.name])
    return [(label, names, total) for label, (names, total) in table.items()]


def groups_table(model: nn.Module, cfg: OptimizerConfig) -> dict[str, list]:
    """Parameter name -> ``[group, lr_mul, wd_mul]`` for every parameter of ``model`` (in its order): the
    table :func:`golf.kernel.optim.build_optimizer` takes. Raises :class:`ConfigError`."""
    return _table(assign_groups(dict(model.named_parameters()), model.param_roles, cfg.rules))


def _table(routes: Sequence[Route]) -> dict[str, list]:
    return {r.name: [r.group, r.lr_mul, r.wd_mul] for r in routes}


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, world_size: int = 1, rank: int = 0):
    """Route ``model``'s parameters by ``cfg.rules`` over their roles and build the kernel's optimizer
    set over them; the set also carries ``routes`` and ``group_table()`` (for the dry run).

    ``model`` is the bare module (not the DDP or compiled wrapper), so parameter names match the rules.
    Raises :class:`golf.config.errors.ConfigError` when the rules and the model's parameters disagree.
    """
    named = dict(model.named_parameters())
    routes = assign_groups(named, model.param_roles, cfg.rules)
    opt = build_optimizer_set(model, cfg, _table(routes), world_size, rank)
    opt.routes = routes
    opt.group_table = partial(group_table, routes, {name: p.numel() for name, p in named.items()})
    return opt
