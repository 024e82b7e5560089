"""The points of an ablation: the full recipe, each technique switched off in turn, and optionally the path
from a base recipe to the target adding one technique at a time; each as Hydra overrides.

A point is "the target with a set of techniques off" (:func:`._techniques.removal` settles it), so a
path step equal to a leave-one-out point is one run serving both. Overrides are the difference between
the target's composed config and the settled one completed by the schema (:func:`with_defaults`,
:func:`diff_overrides`): a schema field is always set, to its off form or its default
(``arch.attention.xsa=null``, ``arch.mlp.activation='relu2'``, ``averaging.export='ema'``, a routing table
without the rule that selected nothing); only an entry of a free dict is deleted (``~quant.schemes.int6``),
because Hydra cannot delete a field of a typed config. Each override is parsed back by Hydra's own parser
and must give the intended value, so quoting can never change a config silently.
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ._techniques import Check, Removal, Settled, Technique, find_techniques, removal, settle

FULL = "full"


# ----------------------------------------------------------------------------- overrides


def render(value: Any) -> str:
    """A value in Hydra's override grammar (strings always quoted)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write the non-finite value {value!r} as an override")
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\'", "\\\\'").replace("'", "\\'") + "'"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(render(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as a Hydra override value")


_PARSER = OverridesParser.create()


def override(key: str, value: Any) -> str:
    """``key=value``, checked to parse back to ``value``."""
    text = f"{key}={render(value)}"
    parsed = _PARSER.parse_override(text).value()
    if json.dumps(parsed, sort_keys=True) != json.dumps(value, sort_keys=True):
        raise ValueError(f"override {text!r} would parse as {parsed!r}, not {value!r}")
    return text


def with_defaults(container: dict) -> dict:
    """A composed config (plain data) with every schema field present: a key an off edit removed
    (:data:`._techniques.DELETE`) comes back with its schema default; enums as their names."""
    from golf.config.schema import GolfConfig

    merged = OmegaConf.merge(OmegaConf.structured(GolfConfig), container)
    return OmegaConf.to_container(merged, resolve=False, enum_to_str=True)


def diff_overrides(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Overrides that turn the composed config ``old`` into ``new``: deleted keys as ``~key`` (entries of
    free dicts, once ``new`` is :func:`with_defaults`), lists and changed values set whole."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in old:
            key = f"{prefix}{k}"
            if k not in new:
                out.append(f"~{key}")
            elif old[k] != new[k]:
                out += diff_overrides(old[k], new[k], key + ".")
        for k in new:
            if k not in old:
                out.append("+" + override(f"{prefix}{k}", new[k]))
        return out
    return [override(prefix.rstrip("."), new)]


# ----------------------------------------------------------------------------- the plan


@dataclass
class Point:
    """One recipe of the ablation (before seeds): the techniques switched off and what else changed."""

    off: list[str]  # labels switched off (empty: the full recipe)
    overrides: list[str]  # Hydra overrides on top of the target's own
    roles: list[str] = field(default_factory=list)  # "full", "drop:<label>", "path:<step>:<label>", "base"
    repairs: list[str] = field(default_factory=list)
    base: bool = False  # composed from the base recipe's overrides instead of the target's

    @property
    def name(self) -> str:
        """A short name for run names: full, no-xsa, no-ema+swa, path3, base."""
        if self.base:
            return "base"
        if not self.off:
            return FULL
        drops = [r.split(":", 1)[1] for r in self.roles if r.startswith("drop:")]
        if drops:
            return "no-" + drops[0]
        return "path" + next(r.split(":")[1] for r in self.roles if r.startswith("path:"))


@dataclass
class Plan:
    techniques: list[str]  # labels found in the target, schema order
    points: list[Point]
    groups: dict[str, str] = field(default_factory=dict)  # row label -> why its techniques go together
    skipped: dict[str, str] = field(default_factory=dict)  # label -> why it cannot be switched off
    path: list[str] = field(default_factory=list)  # labels added along the base -> target path
    base_techniques: list[str] = field(default_factory=list)


class Planner:
    """Plans the points of one target recipe; ``check`` validates a composed config, ``candidates(key)``
    lists preset values of a connecting field (see :func:`._techniques.settle`)."""

    def __init__(self, target: dict, target_cfg: Any, check: Check, candidates: Callable[[str], list[Any]]):
        self.target = target
        self.techniques: list[Technique] = find_techniques(target_cfg)
        self.check = check
        self.candidates = candidates
        self._points: dict[frozenset[str], Point] = {}
        self._settled: dict[frozenset[str], Any] = {}

    def _settle(self, off: list[Technique]):
        key = frozenset(t.label for t in off)
        if key not in self._settled:
            self._settled[key] = settle(self.target, off, self.techniques, self.check, self.candidates)
        return self._settled[key]

    def _point(self, off: list[Technique], settled: Settled) -> Point:
        key = frozenset(t.label for t in off)
        if key not in self._points:
            labels = [t.label for t in self.techniques if t.label in key]
            self._points[key] = Point(labels, diff_overrides(self.target, with_defaults(settled.container)),
                                      repairs=list(settled.repairs))
        return self._points[key]

    def plan(self, *, leave_one_out: bool = True, only: list[str] | None = None, skip: list[str] | None = None,
             base_cfg: Any = None, order: list[str] | None = None) -> Plan:
        labels = [t.label for t in self.techniques]
        for name in (only or []) + (skip or []) + (order or []):
            if name not in labels:
                raise ValueError(f"technique {name!r} is not in this recipe; it has: {', '.join(labels)}")
        chosen = [t for t in self.techniques if (not only or t.label in only) and t.label not in (skip or [])]
        out = Plan(labels, [])
        full = Point([], [], roles=[FULL])
        self._points[frozenset()] = full
        if leave_one_out:
            for t in chosen:
                r: Removal = removal(self.target, t, self.techniques, self.check, self.candidates)
                if r.settled is None:
                    out.skipped[t.label] = r.note
                    continue
                point = self._point(r.techniques, r.settled)
                role = f"drop:{r.label}"
                if role not in point.roles:
                    point.roles.append(role)
                if len(r.techniques) > 1:
                    out.groups[r.label] = r.note
        if base_cfg is not None:
            self._path(out, base_cfg, chosen, order or [])
        out.points = list(self._points.values())
        return out

    def _path(self, out: Plan, base_cfg: Any, chosen: list[Technique], order: list[str]) -> None:
        """Base recipe, then the target with the techniques the base lacks off, then one added per step."""
        out.base_techniques = [t.label for t in find_techniques(base_cfg)]
        missing = [t for t in self.techniques if t.label not in out.base_techniques]
        missing.sort(key=lambda t: order.index(t.label) if t.label in order else len(order))
        off = list(missing)
        step = 0
        while True:
            res = self._settle(off)
            if not isinstance(res, Settled):
                reason = res.reason if hasattr(res, "reason") else f"needs {res.other.label} off too ({res.error})"
                raise ValueError(f"the path from the base cannot start: {reason}")
            point = self._point(off, res)
            point.roles.append(f"path:{step}:{out.path[-1] if out.path else 'start'}")
            if not off:
                return
            for t in off:  # the first technique (in order) whose addition still settles
                rest = [u for u in off if u is not t]
                if isinstance(self._settle(rest), Settled):
                    out.path.append(t.label)
                    off = rest
                    break
            else:
                out.path.append("+".join(t.label for t in off))
                off = []
            step += 1
