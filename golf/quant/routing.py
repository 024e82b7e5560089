"""Route every tensor of a state dict to a storage scheme by parameter name (DESIGN principle 5).

Resolution order for one tensor (the baseline's keep-float logic generalised, spec §1.8/§2.21):
  1. not floating point             → ``raw`` (stored as is);
  2. numel ≤ passthrough_max_numel  → ``fp32`` if a control pattern matches, else ``fp16``;
  3. a control pattern matches      → ``fp32``;
  4. the first rule whose regex matches the name (``re.search``) → that rule's scheme.
A tensor that reaches step 4 and matches no rule is an error, and so is a rule whose pattern matches
no name of the state dict (a typo would otherwise silently leave a tensor in the wrong scheme).
Routing needs only names, shapes and dtypes, so it also runs on ``meta`` tensors (the estimator).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor

from golf.config.errors import ConfigError
from golf.quant.config import QuantConfig, SchemeConfig, SchemeKind

RAW = "raw"
_FP16 = SchemeConfig(kind=SchemeKind.fp16)
_FP32 = SchemeConfig(kind=SchemeKind.fp32)


@dataclass(frozen=True)
class Route:
    """Where one tensor goes: scheme name (``raw`` for non-float), its definition, and why."""

    scheme_name: str
    scheme: SchemeConfig | None  # None for raw
    reason: str


def _search_any(patterns, name: str) -> bool:
    return any(re.search(p, name) for p in patterns)


def route_state_dict(state_dict: Mapping[str, Tensor], cfg: QuantConfig, prefix: str = "quant") -> dict[str, Route]:
    """The route of every tensor; raises :class:`ConfigError` naming the rule or tensor at fault."""
    routes: dict[str, Route] = {}
    for name, t in state_dict.items():
        control = _search_any(cfg.control_patterns, name)
        if not t.is_floating_point():
            routes[name] = Route(RAW, None, "not floating point")
        elif t.numel() <= cfg.passthrough_max_numel:
            scheme_name, scheme = ("fp32", _FP32) if control else ("fp16", _FP16)
            routes[name] = Route(scheme_name, scheme, f"numel <= {cfg.passthrough_max_numel}")
        elif control:
            routes[name] = Route("fp32", _FP32, "control pattern")
        else:
            for i, rule in enumerate(cfg.rules):
                if re.search(rule.pattern, name):
                    routes[name] = Route(rule.scheme, cfg.schemes[rule.scheme], f"rules[{i}]")
                    break
            else:
                raise ConfigError(f"{prefix}.rules", [r.pattern for r in cfg.rules],
                                  f"tensor {name!r} (shape {list(t.shape)}) matches no rule; "
                                  "every tensor above the passthrough size must be routed")
    for i, rule in enumerate(cfg.rules):
        if not any(re.search(rule.pattern, name) for name in state_dict):
            raise ConfigError(f"{prefix}.rules[{i}].pattern", rule.pattern,
                              "matches no tensor name of the state dict")
    return routes
