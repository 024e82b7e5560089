"""Rule tables over parameter roles: the one mechanism behind optimizer groups, quantization and QAT.

A policy is an ordered list of rules, each with a ``select`` role expression and a setting (an optimizer
group, a storage scheme, a QAT scheme). Every parameter takes the setting of the **first rule whose
expression selects it**. Expressions are parsed when the config is validated, and evaluated once, on the
roles the model gives its parameters (:mod:`golf.model.roles`), before data or weights are touched; a
parameter that no rule selects is a :class:`ConfigError` naming the parameter and its roles. A rule that
selects nothing is allowed: a preset covers techniques that a given architecture may not have.

Grammar of a role expression (whitespace is free)::

    expr    := and ( "|" and )*
    and     := unary ( "&" unary )*
    unary   := "!" unary | "(" expr ")" | "*" | test
    test    := FIELD ( "=" | "!=" ) values          a role field is (is not) one of the values
             | NUMERIC ( "<" | "<=" | ">" | ">=" ) INT
             | "name" "~" QUOTED                     escape hatch: re.search on the parameter name
    FIELD   := kind | place | part | family | layer | ndim | numel
    NUMERIC := layer | ndim | numel
    values  := value ( "," value )*
    value   := a word of the field's vocabulary (golf.model.roles: KINDS, PLACES, PARTS, FAMILIES);
               for layer also "last:N", "first:N", "from:I" (counted in the model's layers), "none"

``&`` binds tighter than ``|``; ``*`` selects everything. Examples: ``kind=matrix & place=decoder``
(#507's doubled lr), ``kind=embedding,table``, ``family=bigram & kind=table``, ``layer=last:2 & part=attn
& name~'c_k'`` (#295's fp16 late-K), ``kind=control | numel<=65536``. A parameter outside blocks has no
layer: ``layer=...`` and layer comparisons never select it, except ``layer=none``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from golf.config.errors import ConfigError
from golf.model.roles import FAMILIES, KINDS, PARTS, PLACES, Role

VOCABULARY = {"kind": KINDS, "place": PLACES, "part": PARTS, "family": FAMILIES}
NUMERIC = ("layer", "ndim", "numel")
_TOKEN = re.compile(r"""\s*(?:(?P<regex>name\s*~\s*(?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"))|(?P<op><=|>=|!=|[=<>&|!()*])"""
                    r"""|(?P<word>[A-Za-z0-9_:,.\-]+))""")
Predicate = Callable[[Role, int], bool]  # (role, number of layers) -> selected


class ExpressionError(ValueError):
    """A role expression that does not parse; the message says where."""


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExpressionError(f"cannot read {text[pos:].strip()!r}")
        if m.group("regex") is not None:
            pattern = m.group("sq") if m.group("sq") is not None else m.group("dq")
            try:
                re.compile(pattern)
            except re.error as err:
                raise ExpressionError(f"name~'{pattern}' is not a regular expression ({err})") from None
            out.append(("regex", pattern))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            out.append(("word", m.group("word")))
        pos = m.end()
    return out


def _layer_set(value: str, num_layers: int) -> set[int]:
    kind, _, arg = value.partition(":")
    n = int(arg)
    if kind == "last":
        return set(range(max(num_layers - n, 0), num_layers))
    if kind == "first":
        return set(range(min(n, num_layers)))
    return set(range(n, num_layers))  # from:I


def _test(field: str, op: str, raw: str) -> Predicate:
    if field not in VOCABULARY and field not in NUMERIC:
        raise ExpressionError(f"unknown field {field!r}; fields: {', '.join([*VOCABULARY, *NUMERIC])}, name~'regex'")
    if op in ("<", "<=", ">", ">="):
        if field not in NUMERIC:
            raise ExpressionError(f"{field} is not numeric; compare it with = or !=")
        try:
            bound = int(raw)
        except ValueError:
            raise ExpressionError(f"{field}{op}{raw}: {raw!r} is not an integer") from None
        cmp = {"<": int.__lt__, "<=": int.__le__, ">": int.__gt__, ">=": int.__ge__}[op]
        return lambda role, n: getattr(role, field) is not None and cmp(getattr(role, field), bound)
    values = [v.strip() for v in raw.split(",")]
    if field in VOCABULARY:
        for v in values:
            if v not in VOCABULARY[field]:
                raise ExpressionError(f"{field}={v}: unknown {field}; one of {', '.join(VOCABULARY[field])}")
        wanted = set(values)
        hit: Predicate = lambda role, n: getattr(role, field) in wanted  # noqa: E731
    elif field == "layer":
        fixed, relative, none = set(), [], False
        for v in values:
            if v == "none":
                none = True
            elif re.fullmatch(r"(last|first|from):\d+", v):
                relative.append(v)
            elif v.isdigit():
                fixed.add(int(v))
            else:
                raise ExpressionError(f"layer={v}: use an index, last:N, first:N, from:I or none")

        def hit(role: Role, n: int) -> bool:
            if role.layer is None:
                return none
            return role.layer in fixed or any(role.layer in _layer_set(v, n) for v in relative)
    else:
        try:
            numbers = {int(v) for v in values}
        except ValueError:
            raise ExpressionError(f"{field}={raw}: not integers") from None
        hit = lambda role, n: getattr(role, field) in numbers  # noqa: E731
    return hit if op == "=" else (lambda role, n: not hit(role, n))


class _Parser:
    def __init__(self, text: str):
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ExpressionError("ends too early")
        self.i += 1
        return tok

    def expr(self) -> Predicate:
        parts = [self.conj()]
        while self.peek() == ("op", "|"):
            self.take()
            parts.append(self.conj())
        return parts[0] if len(parts) == 1 else (lambda role, n: any(p(role, n) for p in parts))

    def conj(self) -> Predicate:
        parts = [self.unary()]
        while self.peek() == ("op", "&"):
            self.take()
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda role, n: all(p(role, n) for p in parts))

    def unary(self) -> Predicate:
        kind, value = self.take()
        if (kind, value) == ("op", "!"):
            inner = self.unary()
            return lambda role, n: not inner(role, n)
        if (kind, value) == ("op", "("):
            inner = self.expr()
            if self.peek() != ("op", ")"):  # the text ended, or a test follows without & or |
                raise ExpressionError("a '(' is not closed")
            self.take()
            return inner
        if (kind, value) == ("op", "*"):
            return lambda role, n: True
        if kind == "regex":
            rx = re.compile(value)
            return lambda role, n: rx.search(role.name) is not None
        if kind != "word":
            raise ExpressionError(f"unexpected {value!r}")
        op_kind, op = self.take()
        if op_kind != "op" or op not in ("=", "!=", "<", "<=", ">", ">="):
            raise ExpressionError(f"{value} must be followed by =, !=, <, <=, > or >=")
        val_kind, raw = self.take() if self.peek() is not None else ("end", "")
        if val_kind != "word":
            raise ExpressionError(f"{value}{op} needs a value")
        return _test(value, op, raw)


def compile_expression(text: str) -> Predicate:
    """Parse a role expression (grammar: module docstring) into a predicate ``(role, num_layers) -> bool``."""
    if not str(text).strip():
        raise ExpressionError("is empty (use * to select everything)")
    parser = _Parser(str(text))
    predicate = parser.expr()
    if parser.peek() is not None:
        raise ExpressionError(f"unexpected {parser.peek()[1]!r} after a complete expression")
    return predicate


def check_rules(rules: Sequence, prefix: str) -> list[Predicate]:
    """Compile every rule's ``select``; :class:`ConfigError` names ``<prefix>[i].select`` on a bad one."""
    if len(rules) == 0:
        raise ConfigError(prefix, [], "needs at least one rule")
    return [check_expression(rule.select, f"{prefix}[{i}].select") for i, rule in enumerate(rules)]


@dataclass(frozen=True)
class Match:
    """The rule (by index) that selected a parameter, and that rule."""

    index: int
    rule: object


def first_match(rules: Sequence, roles: Mapping[str, Role], prefix: str, require_all: bool = True) -> dict[str, Match]:
    """Name → the first rule of ``rules`` selecting it, for every role in ``roles`` (in their order).

    A parameter no rule selects is a :class:`ConfigError` (naming it and its roles) when
    ``require_all``; otherwise it is left out of the result.
    """
    compiled = check_rules(rules, prefix)
    num_layers = num_layers_of(roles)
    out: dict[str, Match] = {}
    for name, role in roles.items():
        hit = next((i for i, p in enumerate(compiled) if p(role, num_layers)), None)
        if hit is None:
            if require_all:
                raise ConfigError(prefix, name, f"this parameter ({role.describe()}) is selected by no rule; "
                                                f"add a rule that selects it")
            continue
        out[name] = Match(hit, rules[hit])
    return out


def check_expression(select: str, key: str) -> Predicate:
    """Compile one role expression; :class:`ConfigError` names ``key`` on a bad one."""
    try:
        return compile_expression(select)
    except ExpressionError as err:
        raise ConfigError(key, select, str(err)) from None


def selected(select: str, roles: Mapping[str, Role], key: str) -> set[str]:
    """The names whose roles the expression ``select`` selects (a policy that is one set of parameters,
    such as pruning's targets); a bad expression is a :class:`ConfigError` naming ``key``."""
    predicate = check_expression(select, key)
    num_layers = num_layers_of(roles)
    return {name for name, role in roles.items() if predicate(role, num_layers)}


def num_layers_of(roles: Mapping[str, Role]) -> int:
    """The number of blocks, read from the roles (the largest layer index + 1)."""
    return 1 + max((r.layer for r in roles.values() if r.layer is not None), default=-1)
