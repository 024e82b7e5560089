"""Which optimizer group each parameter joins: a rule table over parameter roles (:mod:`golf.rules`).

DESIGN principle 5, after modded-nanogpt's parameter table. Each rule is ``{select, group, lr_mul,
wd_mul}``; a parameter takes the first rule whose role expression selects it, and a parameter that no
rule selects is an error naming it and its roles. Seeds differ here, e.g. the bigram projection goes to
Muon in #295/#344 and to the scalar AdamW group in #1573, and #507 doubles the lr of the decoder's
parameters for both Muon and scalar Adam (``place=decoder``, whatever the depth; spec §2.2, §2.17).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from torch import Tensor

from golf.config.errors import ConfigError
from golf.model.roles import Role
from golf.optim.config import MUON_GROUP, ParamRule
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
