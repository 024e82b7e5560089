"""Route every tensor of a state dict to a storage scheme by its parameter's role (DESIGN principle 5).

Resolution for one tensor (the baseline's keep-float logic generalised, spec §1.8/§2.21/§6):
  1. not floating point → ``raw`` (stored as is);
  2. the first rule of ``base_rules + rules`` (:mod:`golf.rules`) whose role expression selects the
     tensor's parameter → that rule's scheme;
  3. a tensor of at most ``passthrough_max_numel`` elements is never quantized: an int scheme chosen
     for it becomes ``fp16`` (a float scheme stays as chosen), unless the scheme sets
     ``quantize_small`` (#1855's int8 per-row attention gates).
With ``passthrough_order=size_first`` step 3 comes before step 2 and takes every small float tensor to
``fp16``, whatever a rule would choose (#1573's ``mixed_quantize_int6``: no small tensor stays fp32),
except where its first rule chooses a ``quantize_small`` scheme.
A float tensor that no rule selects (and, size first, that is not small) is an error naming it and its
roles. Routing needs only roles, names, shapes and dtypes, so it also runs on ``meta`` tensors (the
estimator, config validation).

The run kernel (:mod:`golf.kernel.artifact`) takes the result as plain tables: :func:`schemes_table`
(name → the scheme name the artifact records: ``raw`` for non-float tensors, ``fp16`` for small ones,
defined as ``quant.schemes[name]`` otherwise), :func:`prune_table` (the names magnitude-pruned
before quantization, from ``quant.prune.select``) and :func:`pergroup_table` (the matrices of each
stream of the per-group container, from ``quant.pergroup.groups``). ``raw`` is therefore no scheme name, and a scheme
named ``fp16`` must store fp16.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

from golf.config.errors import ConfigError
from golf.model.roles import Role
from golf.quant.config import PassthroughOrder, QuantConfig, SchemeConfig, SchemeKind
from golf.rules import first_match, selected

if TYPE_CHECKING:
    from golf.quant.config import PruneConfig

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
    if RAW in cfg.schemes:
        raise ConfigError(f"{prefix}.schemes.{RAW}", RAW, "is reserved for the non-float tensors stored as they are")
    fp16 = cfg.schemes.get("fp16")
    if fp16 is not None and fp16.kind is not SchemeKind.fp16:
        raise ConfigError(f"{prefix}.schemes.fp16.kind", fp16.kind.value,
                          "the fp16 scheme is where small tensors pass through: it must be kind fp16")
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
    if size_first:  # a small tensor keeps a scheme that quantizes small tensors, if its first rule chooses one
        kept = {n: roles[n] for n, t in state_dict.items() if t.is_floating_point() and n not in floats}
        matches |= {n: m for n, m in first_match(table, kept | floats, f"{prefix}.rules", require_all=False).items()
                    if n in kept and cfg.schemes[m.rule.scheme].quantize_small}
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
        if scheme.kind is SchemeKind.int and t.numel() <= cfg.passthrough_max_numel and not scheme.quantize_small:
            scheme_name, scheme, reason = "fp16", _FP16, small
        routes[name] = Route(scheme_name, scheme, reason)
    if fp16 is None and any(r.scheme is _FP16 for r in routes.values()):
        raise ConfigError(f"{prefix}.schemes.fp16", None, "small tensors pass through the fp16 scheme: define it "
                          "(kind: fp16)")
    return routes


def uses_gptq(route: Route) -> bool:
    return route.scheme is not None and route.scheme.kind is SchemeKind.int and route.scheme.gptq is not None


def schemes_table(source, cfg: QuantConfig, roles: Mapping[str, Role] | None = None) -> dict[str, str]:
    """The kernel's scheme table (name → scheme name) of a model (its own roles) or a state dict."""
    state = source.state_dict() if hasattr(source, "state_dict") else source
    roles = source.param_roles if roles is None else roles
    return {name: r.scheme_name for name, r in route_state_dict(state, cfg, roles).items()}


def prune_targets(cfg: PruneConfig, roles: Mapping[str, Role], prefix: str = "quant.prune") -> set[str]:
    """The parameters ``cfg.select`` chooses (a bad expression is a ConfigError naming ``<prefix>.select``)."""
    return selected(cfg.select, roles, f"{prefix}.select")


def prune_table(source, cfg: QuantConfig, roles: Mapping[str, Role] | None = None) -> list[str]:
    """The kernel's pruning table: the float tensors ``quant.prune`` selects, in state-dict order (empty
    without pruning)."""
    if cfg.prune is None:
        return []
    state = source.state_dict() if hasattr(source, "state_dict") else source
    targets = prune_targets(cfg.prune, source.param_roles if roles is None else roles)
    return [name for name, t in state.items() if name in targets and t.is_floating_point()]


MAX_SORTED_ROWS = 1 << 16  # a sorted matrix's row order is stored as uint16


def pergroup_table(source, cfg: QuantConfig, roles: Mapping[str, Role] | None = None,
                   prefix: str = "quant.pergroup") -> dict[str, int]:
    """The kernel's per-group table (:mod:`golf.kernel.pergroup`): name → the index of its group in
    ``quant.pergroup.groups``, in state-dict order, for every matrix stored with integer codes (after the
    passthrough) that a group's ``select`` chooses (the first such group; empty without the container)."""
    if cfg.pergroup is None:
        return {}
    state = source.state_dict() if hasattr(source, "state_dict") else source
    roles = source.param_roles if roles is None else roles
    routes = route_state_dict(state, cfg, roles)
    chosen = [selected(g.select, roles, f"{prefix}.groups[{i}].select") for i, g in enumerate(cfg.pergroup.groups)]
    out = {}
    for n, t in state.items():
        i = next((i for i, c in enumerate(chosen) if n in c), None)
        if i is None or t.ndim != 2 or routes[n].scheme is None or routes[n].scheme.kind is not SchemeKind.int:
            continue
        if cfg.pergroup.groups[i].sort and t.shape[0] > MAX_SORTED_ROWS:
            raise ConfigError(f"{prefix}.groups[{i}].sort", True, f"{n} has {t.shape[0]} rows: a sorted matrix's "
                              f"row order is stored as uint16 (at most {MAX_SORTED_ROWS} rows)")
        out[n] = i
    return out
