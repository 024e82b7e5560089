"""Config reads folded into the kernel's code: what :mod:`golf.specialise` knows of a resolved config.

:func:`config_types` maps each config class to what is known of it (its value where it occurs once, the
fields all its instances agree on otherwise; a class may name its ``live_fields()``); :class:`Folder`
folds one definition against that: annotated parameters and locals assigned once become known, attribute
chains over them literals, and comparisons, ``not``/``and``/``or``, conditional expressions and ``if``
statements they decide are decided.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import operator
from collections import defaultdict

# ----------------------------------------------------------------------------- config values


class Node(dict):
    """A config dataclass as plain data: its fields by name (a dict field stays a plain dict)."""


def plain(value):
    """A config value as plain data: dataclasses become :class:`Node` (of their ``live_fields()`` where
    they define it), enums their values, tuples lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        live = value.live_fields() if hasattr(value, "live_fields") else None
        return Node({f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                     if live is None or f.name in live})
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def config_types(cfg) -> dict[str, Node]:
    """Each config class in ``cfg``'s tree → its value as plain data where it occurs once, else the
    fields on which all its instances (those where the field is live) agree."""
    seen: dict[str, list] = defaultdict(list)

    def walk(value):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            seen[type(value).__name__].append(value)
            for f in dataclasses.fields(value):
                walk(getattr(value, f.name))
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(cfg)
    out = {}
    for name, values in seen.items():
        nodes = [plain(v) for v in values]
        if len(nodes) == 1:
            out[name] = nodes[0]
            continue
        agreed = Node()
        for f in dict.fromkeys(k for n in nodes for k in n):
            held = [n[f] for n in nodes if f in n]
            if all(v == held[0] and type(v) is type(held[0]) for v in held):
                agreed[f] = held[0]
        out[name] = agreed
    return out


# ----------------------------------------------------------------------------- folding

_UNKNOWN = object()
_LITERAL_LEAVES = (type(None), bool, int, float, str)
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
            ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b}


def _is_literal(value) -> bool:
    if isinstance(value, (list, tuple)) and not isinstance(value, Node):
        return all(_is_literal(v) for v in value)
    return isinstance(value, _LITERAL_LEAVES) and not isinstance(value, Node)


def _literal(value) -> ast.expr:
    if isinstance(value, list):
        return ast.List([_literal(v) for v in value], ast.Load())
    if isinstance(value, tuple):
        return ast.Tuple([_literal(v) for v in value], ast.Load())
    return ast.Constant(value)


def _annotation_types(node: ast.expr | None) -> list[str]:
    """The class names an annotation mentions (``ArchConfig``, ``'ArchConfig | None'``, ``x.ArchConfig``)."""
    if node is None:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return []
    return [n.id if isinstance(n, ast.Name) else n.attr for n in ast.walk(node)
            if isinstance(n, (ast.Name, ast.Attribute))]


def _stores(fn: ast.AST) -> dict[str, int]:
    """How often each name is bound anywhere inside ``fn`` (its parameters excluded)."""
    count: dict[str, int] = defaultdict(int)
    for n in ast.walk(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            count[n.id] += 1
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n is not fn:
            count[n.name] += 1
        elif isinstance(n, ast.arg) and n not in _params(fn):
            count[n.arg] += 1
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            for name in n.names:
                count[name] += 2
    return count


def _params(fn: ast.AST) -> list[ast.arg]:
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return []
    a = fn.args
    return [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs,
            *([a.kwarg] if a.kwarg else [])]


class Folder(ast.NodeTransformer):
    """Folds one function body (nested functions inherit the known names they do not rebind)."""

    def __init__(self, types: dict[str, Node], env: dict | None = None):
        self.types = types
        self.env = dict(env or {})

    # -- values
    def value(self, node: ast.expr):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            return self.env.get(node.id, _UNKNOWN)
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            base = self.value(node.value)
            if isinstance(base, Node) and node.attr in base:
                return base[node.attr]
            return _UNKNOWN
        if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
            base, key = self.value(node.value), self.value(node.slice)
            if isinstance(base, dict) and not isinstance(base, Node) and key is not _UNKNOWN:
                try:
                    return base[key]
                except (KeyError, TypeError):
                    return _UNKNOWN
            if isinstance(base, list) and isinstance(key, int) and not isinstance(key, bool):
                return base[key] if -len(base) <= key < len(base) else _UNKNOWN
        if isinstance(node, (ast.Tuple, ast.List)) and isinstance(node.ctx, ast.Load):
            values = [self.value(e) for e in node.elts]
            if all(v is not _UNKNOWN for v in values):
                return list(values) if isinstance(node, ast.List) else tuple(values)
        return _UNKNOWN

    # -- functions: a new scope
    def visit_FunctionDef(self, fn):
        stores = _stores(fn)
        env = {k: v for k, v in self.env.items() if not stores.get(k) and k not in {a.arg for a in _params(fn)}}
        for arg in _params(fn):
            if stores.get(arg.arg):
                continue
            for name in _annotation_types(arg.annotation):
                if name in self.types:
                    env[arg.arg] = self.types[name]
                    break
        inner = Folder(self.types, env)
        fn.args = inner.visit(fn.args)
        fn.decorator_list = [self.visit(d) for d in fn.decorator_list]
        fn.body = inner.fold_body(fn.body, stores)
        return fn

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        names = {a.arg for a in _params(node)}
        inner = Folder(self.types, {k: v for k, v in self.env.items() if k not in names})
        node.body = inner.visit(node.body)
        return node

    def fold_body(self, body: list[ast.stmt], stores: dict[str, int]) -> list[ast.stmt]:
        """Fold a function body; a name assigned once (here, at the top level of the body) from a known
        config node or an immutable literal becomes known from that statement on."""
        out = []
        for stmt in body:
            folded = self.visit(stmt)
            for s in folded if isinstance(folded, list) else [folded]:
                if (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                        and stores.get(s.targets[0].id) == 1 and not isinstance(s.value, ast.List)):
                    # a list display makes a new object the code may change (``flag = [False]``; ``flag[0] = 1``)
                    v = self.value(s.value)
                    if v is not _UNKNOWN:
                        self.env[s.targets[0].id] = v
                out.append(s)
        return _drop_dead_locals(out, self.env) or [ast.Pass()]

    # -- expressions
    def _fold(self, node: ast.expr) -> ast.expr:
        v = self.value(node)
        if v is not _UNKNOWN and _is_literal(v) and not isinstance(node, ast.Constant):
            return ast.copy_location(_literal(v), node)
        return node

    def visit_Name(self, node):
        return self._fold(node)

    def visit_Attribute(self, node):
        if isinstance(node.ctx, ast.Load) and self.value(node) is not _UNKNOWN:
            return self._fold(node)
        node.value = self.visit(node.value)
        return node

    def visit_Subscript(self, node):
        if isinstance(node.ctx, ast.Load) and self.value(node) is not _UNKNOWN:
            return self._fold(node)
        self.generic_visit(node)
        return node

    def visit_Compare(self, node):
        # `known is None` decides even when `known` is a whole config node
        left = self.value(node.left)
        if (len(node.ops) == 1 and isinstance(node.ops[0], (ast.Is, ast.IsNot)) and left is not _UNKNOWN
                and isinstance(node.comparators[0], ast.Constant) and node.comparators[0].value is None):
            return ast.copy_location(ast.Constant(_COMPARE[type(node.ops[0])](left, None)), node)
        self.generic_visit(node)
        values = [self.value(n) for n in (node.left, *node.comparators)]
        if any(v is _UNKNOWN for v in values) or not all(_is_literal(v) for v in values):
            return node
        try:
            result = all(_COMPARE[type(op)](a, b) for op, a, b in zip(node.ops, values, values[1:]))
        except (TypeError, KeyError):
            return node
        return ast.copy_location(ast.Constant(result), node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            v = self.truth(node.operand)
            if v is not _UNKNOWN:
                return ast.copy_location(ast.Constant(not v), node)
        return node

    def truth(self, node: ast.expr):
        v = self.value(node)
        if v is _UNKNOWN:
            return _UNKNOWN
        return bool(v)

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        is_and = isinstance(node.op, ast.And)
        kept = []
        for i, operand in enumerate(node.values):
            t = self.truth(operand) if isinstance(operand, ast.Constant) else _UNKNOWN
            last = i == len(node.values) - 1
            if t is _UNKNOWN or last:
                kept.append(operand)
            elif t != is_and:  # a falsy operand of `and` / a truthy one of `or` decides the result
                kept.append(operand)
                break
        if len(kept) == 1:
            return kept[0]
        node.values = kept
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        t = self.truth(node.test) if isinstance(node.test, ast.Constant) else _UNKNOWN
        if t is _UNKNOWN:
            return node
        return node.body if t else node.orelse

    # -- statements
    def visit_If(self, node):
        node.test = self.visit(node.test)
        t = self.truth(node.test) if isinstance(node.test, ast.Constant) else _UNKNOWN
        if t is _UNKNOWN:
            node.body = self._block(node.body) or [ast.Pass()]
            node.orelse = self._block(node.orelse)
            return node
        return self._block(node.body if t else node.orelse)

    def visit_While(self, node):
        node.test = self.visit(node.test)
        if isinstance(node.test, ast.Constant) and not node.test.value:
            return self._block(node.orelse)
        node.body = self._block(node.body) or [ast.Pass()]
        node.orelse = self._block(node.orelse)
        return node

    def _block(self, stmts: list[ast.stmt]) -> list[ast.stmt]:
        out = []
        for s in stmts:
            r = self.visit(s)
            out.extend(r if isinstance(r, list) else [r] if r is not None else [])
        return out


def _drop_dead_locals(body: list[ast.stmt], env: dict) -> list[ast.stmt]:
    """Drop ``name = <known config node>`` statements whose name nothing reads any more."""
    loads = {n.id for s in body for n in ast.walk(s) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return [s for s in body
            if not (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                    and s.targets[0].id in env and s.targets[0].id not in loads
                    and pure(s.value))]


def pure(node: ast.expr) -> bool:
    """A name, attribute chain, subscript or literal: dropping it drops no side effect."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(pure(e) for e in node.elts)
    return isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Constant))
