"""The routing table: which optimizer group each parameter joins, decided by ordered name rules.

DESIGN principle 5 (policies keyed by parameter name live outside the model), after modded-nanogpt's
parameter table. Each rule is ``{pattern, group, lr_mul, wd_mul}``; a parameter takes the first rule whose
pattern ``re.search``-matches its name. Both directions are checked: a parameter no rule claims and a
rule that claims no parameter (because nothing matches it, or earlier rules took everything it
matches) are errors naming the parameter or the rule. Seeds differ here, e.g. the bigram projection
goes to Muon in #295/#344 and to the scalar AdamW group in #1573, and #507 doubles the lr of decoder
blocks for both Muon and scalar Adam (spec §2.2, §2.17).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from torch import Tensor

from golf.config.errors import ConfigError
from golf.optim.config import MUON_GROUP, ParamRule


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
    named_params: Iterable[tuple[str, Tensor]], rules: Sequence[ParamRule], prefix: str = "optimizer.rules"
) -> list[Route]:
    """One :class:`Route` per parameter, in parameter order. Raises :class:`ConfigError` on any mismatch."""
    compiled = [re.compile(rule.pattern) for rule in rules]
    matched_any = [False] * len(rules)
    claimed = [False] * len(rules)
    routes = []
    for name, param in named_params:
        hits = [i for i, rx in enumerate(compiled) if rx.search(name)]
        if not hits:
            raise ConfigError(prefix, name, "this parameter is matched by no rule; add a rule for it")
        for i in hits:
            matched_any[i] = True
        first = hits[0]
        claimed[first] = True
        rule = rules[first]
        if rule.group == MUON_GROUP and param.ndim < 2:
            raise ConfigError(f"{prefix}[{first}].group", rule.group,
                              f"sends {name} (shape {tuple(param.shape)}) to Muon, which needs matrices")
        routes.append(Route(name, rule.group, float(rule.lr_mul), float(rule.wd_mul), first))
    for i, rule in enumerate(rules):
        if not claimed[i]:
            why = ("only matches parameters that earlier rules already claim" if matched_any[i]
                   else "matches no parameter of the model")
            raise ConfigError(f"{prefix}[{i}].pattern", rule.pattern, why)
    return routes


def group_table(routes: Sequence[Route], numels: dict[str, int]) -> list[tuple[str, list[str], int]]:
    """(group label, parameter names, total numel) per group, in order of first appearance."""
    table: dict[str, tuple[list[str], int]] = {}
    for r in routes:
        names, total = table.get(r.label, ([], 0))
        names.append(r.name)
        table[r.label] = (names, total + numels[r.name])
    return [(label, names, total) for label, (names, total) in table.items()]
