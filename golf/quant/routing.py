"""Route every tensor of a state dict to a storage scheme by its parameter's role (DESIGN principle 5).

Resolution for one tensor (the baseline's keep-float logic generalised, spec §1.8/§2.21/§6):
  1. not floating point → ``raw`` (stored as is);
  2. the first rule of ``base_rules + rules`` (:mod:`golf.rules`) whose role expression selects the
     tensor's parameter → that rule's scheme;
  3. a tensor of at most ``passthrough_max_numel`` elements is never quantized: an int scheme chosen
     for it becomes ``fp16`` (a float scheme stays as chosen).
With ``passthrough_order=size_first`` step 3 comes before step 2 and takes every small float tensor to
``fp16``, whatever a rule would choose (#1573's ``mixed_quantize_int6``: no small tensor stays fp32).
A float tensor that no rule selects (and, size first, that is not small) is an error naming it and its
roles. Routing needs only roles, names, shapes and dtypes, so it also runs on ``meta`` tensors (the
estimator, config validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from golf.config.errors import ConfigError
from golf.model.roles import Role
from golf.quant.config import PassthroughOrder, QuantConfig, SchemeConfig, SchemeKind
from golf.rules import first_match

RAW = "raw"
_FP16 = SchemeConfig(kind=SchemeKind.fp16)


@dataclass(frozen=True)
class Route:
    """Where one tensor goes: scheme name (``raw`` for non-float), its definition, and why."""

    scheme_name: str
    scheme: SchemeConfig | None  # None for raw
    reason: str


def route_state_dict(state_dict: Mapping[str, Tensor], cfg: QuantConfig, roles: Mapping[str, Role],
                     prefix: str = "quant") -> dict[str, Route]:
    """The route of every tensor; raises :class:`ConfigError` naming the tensor or rule at fault."""
    size_first = cfg.passthrough_order is PassthroughOrder.size_first
    small = f"numel <= {cfg.passthrough_max_numel}"
    floats = {}
    for name, t in state_dict.items():
        if t.is_floating_point():
            if name not in roles:
                raise ConfigError(f"{prefix}.rules", name, "this tensor has no parameter role; its model labels none")
            if not (size_first and t.numel() <= cfg.passthrough_max_numel):
                floats[name] = roles[name]
    table = [*cfg.base_rules, *cfg.rules]
    matches = first_match(table, floats, f"{prefix}.rules")
    nbase = len(cfg.base_rules)
    routes: dict[str, Route] = {}
    for name, t in state_dict.items():
        if name not in matches:
            routes[name] = Route("fp16", _FP16, small) if t.is_floating_point() else Route(RAW, None, "not floating point")
            continue
        i = matches[name].index
        reason = f"base_rules[{i}]" if i < nbase else f"rules[{i - nbase}]"
        scheme_name = matches[name].rule.scheme
        scheme = cfg.schemes[scheme_name]
        if scheme.kind is SchemeKind.int and t.numel() <= cfg.passthrough_max_numel:
            scheme_name, scheme, reason = "fp16", _FP16, small
        routes[name] = Route(scheme_name, scheme, reason)
    return routes
