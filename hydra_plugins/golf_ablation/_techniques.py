"""The techniques a recipe uses and the absent form of each, read from golf's typed config schema.

A *technique* is a place in the schema where "off" is the schema's own neutral form (DESIGN principle 3:
off is absent). Walking the validated config of a recipe through the groups that choose techniques
(:data:`GROUPS`), the field types decide:

* an optional sub-config (``XSAConfig | None``) or optional enum that is set: on; off = ``None``;
* an enum that differs from its schema default (``mlp.activation: swiglu``): on; off = the default,
  the family's neutral option (``relu2``);
* a bool whose schema default is ``False`` (``residual.ln_scale``): on; off = ``False``;
* a plain value listed in :data:`SWITCHES` (``rope.dims``, ``grad_clip_norm``, ``eval.kind``...) that
  differs from its default: on; off = the default (plus the listed keys reset with it); a value that
  builds on another (:data:`STACKED`: ``eval.kind: ttt`` on sliding windows) is a technique of its own
  whose off form is the value underneath;
* the table fields of :data:`TABLES` (quant schemes, rules, passthrough size and order, calibration) when they differ from the
  schema default (the baseline's int8 export): one technique, off = the default tables.

Variants inside a technique (``xsa.value``, ``smear.variant``, ``skips.kind``) belong to it and are not
techniques of their own. A new optional sub-config, enum or off-by-default bool added to the schema is
found without any change here; :data:`LABELS` only gives some of them a shorter name.

Removing a technique can leave the rest of the config inconsistent. :func:`settle` repairs what is not
a technique: an entry of a routing table that then selects nothing (``optimizer.rules[3]``, the error
says so) is dropped, a connecting field (``averaging.export``) goes to its default or to a value one of the
family's presets uses. When the field at fault belongs to another technique (SWA of the EMA needs the
EMA), the two cannot be removed apart: :func:`removal` groups them and says why.
"""

import copy
import dataclasses
import enum
import fnmatch
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from golf.config.errors import ConfigError

# config groups whose fields choose techniques (data, train, logger and the top level hold settings)
GROUPS = ("arch", "optimizer", "quant", "averaging", "eval")

# technique labels for schema paths (fnmatch patterns, list and dict entries as ``*``); a path not
# listed is labelled by its field name (optional sub-configs, bools) or by its value (enums)
LABELS = {
    "arch.attention.rope.dims": "partial_rope",
    "arch.attention.rope.ntk_reference_len": "ntk_rope",
    "arch.attention.gate": "attn_gate",
    "arch.skips": "unet_skips",
    "arch.input.bigram": "bigram_hash",
    "arch.input.trigram": "trigram_hash",
    "arch.input.smear": "smear_gate",
    "arch.residual.mix_init": "phase_resid_mix",
    "arch.residual.parallel": "parallel_residuals",
    "arch.residual.two_lane": "two_lane_decoder",
    "arch.depth.recycle": "recycled_core",
    "arch.depth.loop": "depth_loop",
    "arch.init.orthogonal": "ortho_init",
    "arch.init.embed": "overtone_init",
    "optimizer.muon.weight_decay": "muon_wd",
    "optimizer.muon.row_normalize": "muoneq_r",
    "optimizer.adam_groups.*.weight_decay": "adam_wd",
    "optimizer.rules.*.lr_mul": "lr_mul",
    "optimizer.rules.*.wd_mul": "wd_mul",
    "optimizer.grad_clip_norm": "grad_clip",
    "optimizer.grad_clip_scope": "per_rank_clip",
    "optimizer.muon.ns_coefficients_per_step": "polar_express",
    "quant.packing": "bit_packing",
    "quant.prune": "pruning",
    "eval.kind": "sliding_eval",
}

# plain values that switch a technique: path pattern -> keys reset to their defaults with it
SWITCHES: dict[str, tuple[str, ...]] = {
    "arch.attention.rope.dims": (),
    "arch.attention.rope.ntk_reference_len": (),
    "optimizer.muon.weight_decay": (),
    "optimizer.adam_groups.*.weight_decay": (),
    "optimizer.rules.*.lr_mul": (),
    "optimizer.rules.*.wd_mul": (),
    "optimizer.grad_clip_norm": (),
    "optimizer.grad_clip_scope": (),
    "optimizer.muon.ns_coefficients_per_step": (),
    "eval.kind": ("eval.seq_len", "eval.stride"),  # the standard evaluator of the training length
}

# values that build on another value of the same field: path -> {value: (label, the value it builds on)};
# the field's own switch (above) then stands for the value underneath (TTT scores with sliding windows)
# (phased per-document TTT stands on the standard scorer: switched off, nothing of sliding is left)
STACKED = {"eval.kind": {"ttt": ("ttt", "sliding"), "phased": ("phased", "standard")}}

# tables: group -> (fields, label); one technique when any differs from the schema default
# (GPTQ's calibration belongs to the tables: a scheme with `gptq` needs it, the default int8 tables do not)
TABLES = {"quant": (("schemes", "rules", "passthrough_max_numel", "passthrough_order", "calibration"), "lowbit_quant")}

# enums that are policies, not techniques
POLICIES = frozenset({"quant.over_limit"})
_TABLE_PATHS = frozenset(f"{group}.{name}" for group, (names, _) in TABLES.items() for name in names)

# how golf's routing tables say that an entry selects nothing (so dropping it changes no routing)
_SELECTS_NOTHING = re.compile(r"\b(matches|selects|claims) no\b|already claim")
DELETE = object()  # an edit that removes a key from the composed config: the schema default applies
MAX_REPAIRS = 32


@dataclass
class Technique:
    """One technique of a recipe: its label, the config paths it owns and its off edits."""

    label: str
    paths: list[str] = field(default_factory=list)
    edits: dict[str, Any] = field(default_factory=dict)  # dotted path -> value, or DELETE (default)

    def owns(self, key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in self.paths)


# ----------------------------------------------------------------------------- discovery


def _optional_inner(hint) -> Any:
    """``X`` for ``X | None`` / ``Optional[X]``, else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _label(path: str, fallback: str) -> str:
    for pattern, label in LABELS.items():
        if fnmatch.fnmatchcase(path, pattern):
            return label
    return fallback


def _switch(path: str) -> tuple[str, ...] | None:
    for pattern, extra in SWITCHES.items():
        if fnmatch.fnmatchcase(path, pattern):
            return extra
    return None


def _is_struct(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _is_enum(tp) -> bool:
    return isinstance(tp, type) and issubclass(tp, enum.Enum)


def _walk(obj: Any, path: str, found: list[Technique]) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        key, value, hint, default = f"{path}.{f.name}", getattr(obj, f.name), hints[f.name], _default(f)
        inner = _optional_inner(hint)
        if key in _TABLE_PATHS:
            continue
        if inner is not None and (_is_struct(inner) or _is_enum(inner)):
            if value is not None:
                found.append(Technique(_label(key, f.name), [key], {key: None}))
        elif _is_struct(hint):
            _walk(value, key, found)
        elif _switch(key) is not None:
            if value != default:
                stacked = STACKED.get(key, {}).get(value) if key in STACKED else None
                if stacked is not None:
                    found.append(Technique(stacked[0], [key], {key: stacked[1]}))
                if stacked is None or stacked[1] != default:  # the value underneath is a technique too
                    edits = {key: DELETE, **{k: DELETE for k in _switch(key)}}
                    found.append(Technique(_label(key, f.name), [key], edits))
        elif _is_enum(hint) and key not in POLICIES:
            if value != default:
                found.append(Technique(_label(key, value.name), [key], {key: DELETE}))
        elif hint is bool and default is False:
            if value:
                found.append(Technique(_label(key, f.name), [key], {key: DELETE}))
        elif typing.get_origin(hint) in (dict, list):
            entries = value.items() if isinstance(value, dict) else enumerate(value)
            for k, item in entries:
                if _is_struct(type(item)):
                    _walk(item, f"{key}.{k}", found)


def _tables(cfg: Any, found: list[Technique]) -> None:
    for group, (names, label) in TABLES.items():
        obj = getattr(cfg, group, None)
        if obj is None:
            continue
        fields_ = {f.name: f for f in dataclasses.fields(obj)}
        keys = [n for n in names if n in fields_]
        if any(getattr(obj, n) != _default(fields_[n]) for n in keys):
            found.append(Technique(label, [f"{group}.{n}" for n in keys], {f"{group}.{n}": DELETE for n in keys}))


def find_techniques(cfg: Any) -> list[Technique]:
    """The techniques a validated :class:`~golf.config.schema.GolfConfig` uses, in schema order; entries
    with the same label (weight decay of several Adam groups) are one technique."""
    found: list[Technique] = []
    for group in GROUPS:
        obj = getattr(cfg, group, None)
        if obj is not None and dataclasses.is_dataclass(obj):
            _walk(obj, group, found)
    _tables(cfg, found)
    merged: dict[str, Technique] = {}
    for t in found:
        if t.label in merged:
            merged[t.label].paths += t.paths
            merged[t.label].edits.update(t.edits)
        else:
            merged[t.label] = t
    return list(merged.values())


# ----------------------------------------------------------------------------- editing a composed config


def _tokens(key: str) -> list[str]:
    """``optimizer.rules[3].pattern`` -> ["optimizer", "rules", "3", "pattern"]."""
    return [t for t in re.split(r"[.\[\]]+", key) if t]


def get_path(container: Any, key: str, default: Any = None) -> Any:
    node = container
    for tok in _tokens(key):
        if isinstance(node, dict) and tok in node:
            node = node[tok]
        elif isinstance(node, list) and tok.isdigit() and int(tok) < len(node):
            node = node[int(tok)]
        else:
            return default
    return node


def set_path(container: dict, key: str, value: Any) -> None:
    """Set (or, for :data:`DELETE`, remove) ``key`` in a plain container; a missing or null key stays as
    it is when deleted (the schema default applies, or is null too)."""
    *parents, last = _tokens(key)
    node = container
    for tok in parents:
        nxt = node[int(tok)] if isinstance(node, list) else node.get(tok)
        if nxt is None:
            if value is DELETE:
                return
            nxt = node[tok] = {}
        node = nxt
    if value is DELETE:
        # a null value stays (Hydra cannot delete a null key; where a composed key is null, so is its default)
        if isinstance(node, dict) and node.get(last) is not None:
            del node[last]
        return
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


# ----------------------------------------------------------------------------- settling a removal


@dataclass
class Settled:
    container: dict  # the composed config with the techniques off and the rest repaired
    repairs: list[str]


@dataclass
class NeedsAlso:
    other: Technique  # a technique whose field the removal breaks
    error: ConfigError


@dataclass
class Unremovable:
    reason: str


Check = Callable[[dict], None]  # raises ConfigError for a composed config that cannot run


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def settle(target: dict, drop: Iterable[Technique], techniques: list[Technique], check: Check,
           candidates: Callable[[str], list[Any]]) -> Settled | NeedsAlso | Unremovable:
    """Switch ``drop`` off in the composed ``target`` and repair what is not a technique, or say which
    other technique stands in the way (see the module doc). ``candidates(key)`` lists the values a
    connecting field may take besides its default (e.g. those the family's presets use)."""
    drop = list(drop)
    edits: dict[str, Any] = {}
    for t in drop:  # where two techniques set one key (ttt -> sliding, sliding -> standard) the neutral wins
        for key, value in t.edits.items():
            if edits.get(key) is not DELETE:
                edits[key] = value
    c = copy.deepcopy(target)
    for key, value in edits.items():
        set_path(c, key, value)
    repairs: list[str] = []
    pending: dict[str, list[Any]] = {}
    for _ in range(MAX_REPAIRS):
        try:
            check(c)
        except ConfigError as err:
            key = ".".join(_tokens(err.key))
            m = re.fullmatch(r"(.+)\.(\d+)(\..+)?", key)
            owner = next((t for t in techniques if t.owns(key)), None)
            if m and isinstance(get_path(c, m[1]), list) and _SELECTS_NOTHING.search(err.reason):
                del get_path(c, m[1])[int(m[2])]
                repairs.append(f"dropped {m[1]}[{m[2]}] ({_short(err.value)}: {err.reason})")
                continue
            if owner is not None and owner not in drop:
                return NeedsAlso(owner, err)
            if owner is not None:
                return Unremovable(f"{err}")
            if key not in pending:
                current = get_path(c, key)
                pending[key] = [DELETE] + [v for v in candidates(key) if v != current]
            if not pending[key]:
                return Unremovable(f"{err}")
            value = pending[key].pop(0)
            set_path(c, key, value)
            repairs.append(f"{key} -> {'default' if value is DELETE else _short(value)} ({err.reason})")
            continue
        return Settled(c, repairs)
    return Unremovable(f"no consistent config after {MAX_REPAIRS} repairs")


@dataclass
class Removal:
    """What switching one technique off takes: the techniques switched off together and the result."""

    techniques: list[Technique]
    settled: Settled | None
    note: str = ""  # why others came along, or why it cannot be removed

    @property
    def label(self) -> str:
        return "+".join(t.label for t in self.techniques)


def removal(target: dict, technique: Technique, techniques: list[Technique], check: Check,
            candidates: Callable[[str], list[Any]]) -> Removal:
    """Switch ``technique`` off, together with every technique it cannot be removed without."""
    drop, notes = [technique], []
    while True:
        res = settle(target, drop, techniques, check, candidates)
        if isinstance(res, Settled):
            return Removal(sorted(drop, key=techniques.index), res, "; ".join(notes))
        if isinstance(res, Unremovable):
            return Removal(drop, None, f"{technique.label} cannot be switched off: {res.reason}")
        notes.append(f"{technique.label} cannot be removed without {res.other.label} ({res.error})")
        drop.append(res.other)
