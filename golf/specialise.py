"""Source specialisation: the kernel's modules, folded against one resolved config, as one program.

:func:`specialise` reads every module of :mod:`golf.kernel` (``ast``), and

1. **folds config reads**: inside a function, a parameter annotated with a config class that occurs
   exactly once in the resolved config (``cfg: ArchConfig``), and a local assigned once from such a
   value (``a = cfg.attention``), are known; for a class that occurs several times (``s: SchemeConfig``)
   the fields on which every instance agrees are known. A config class may name the fields an instance's
   behaviour depends on (``live_fields()``, e.g. a float scheme has no clipping): the others are left out
   of the script's config and of that agreement. An attribute chain over them whose value is a literal
   (number, string, bool, None, a tuple or list of those) becomes that literal, ``x is None`` of a known
   ``x`` becomes ``True``/``False``, and constant comparisons, ``not``/``and``/``or``, conditional
   expressions and ``if`` statements are decided — so the branches of techniques that are off vanish;
2. **drops what is unreachable**: starting from the entry names, only the top-level definitions that
   kept code names survive (external imports likewise), and a kept class keeps only the methods whose
   names kept code mentions (plus special methods and the framework hooks torch calls by name);
3. **strips lab metadata**: docstrings, annotations' imports under ``TYPE_CHECKING``, ``from __future__``
   and the ``PARAM_ROLES`` / ``HOST_ROLES`` role labels.

It returns the program's source (definitions in module dependency order, imports first). Nothing here
knows a technique: what is folded is whatever the config says.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import operator
from collections import defaultdict
from pathlib import Path

from golf.kernel_source import (
    KERNEL_DIR,
    KERNEL_PACKAGE,
    Kernel,
    SpecialiseError,
    _strip,
    load_kernel,
)

__all__ = ["KERNEL_DIR", "Node", "SpecialiseError", "config_types", "load_kernel", "plain", "reachable", "specialise"]

# methods torch (or Python) calls by name, kept in a kept class although kernel code never names them
FRAMEWORK_METHODS = frozenset({"forward", "train", "eval", "extra_repr", "reset_parameters", "_apply", "step",
                               "state_dict", "load_state_dict", "zero_grad", "_load_from_state_dict"})



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


class _Folder(ast.NodeTransformer):
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
        inner = _Folder(self.types, env)
        fn.args = inner.visit(fn.args)
        fn.decorator_list = [self.visit(d) for d in fn.decorator_list]
        fn.body = inner.fold_body(fn.body, stores)
        return fn

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        names = {a.arg for a in _params(node)}
        inner = _Folder(self.types, {k: v for k, v in self.env.items() if k not in names})
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
                    and _pure(s.value))]


def _pure(node: ast.expr) -> bool:
    """A name, attribute chain, subscript or literal: dropping it drops no side effect."""
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_pure(e) for e in node.elts)
    return isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Constant))


# ----------------------------------------------------------------------------- reachability


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _mentions(node: ast.AST) -> set[str]:
    """Attribute names and string constants: what could name a method."""
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.add(n.value)
        elif isinstance(n, ast.keyword) and n.arg:
            out.add(n.arg)
    return out


def _prune_methods(cls: ast.ClassDef, mentioned: set[str]) -> ast.ClassDef:
    def keep(s):
        if not isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return True
        n = s.name
        return (n.startswith("__") and n.endswith("__")) or n in FRAMEWORK_METHODS or n in mentioned
    cls.body = [s for s in cls.body if keep(s)] or [ast.Pass()]
    return cls


def reachable(kernel: Kernel, folded: dict[str, ast.stmt], roots: set[str]) -> tuple[list[ast.stmt], set[str]]:
    """The kept definitions (in kernel order) from ``roots``, and the imports' bound names they use."""
    import copy

    roots = set(roots)
    for _, stmt in kernel.other:
        roots |= _loads(stmt)
    while True:
        kept, seen, todo = {}, set(), list(roots)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in kernel.defs:
                kept[name] = folded[name]
                todo.extend(_loads(folded[name]))
        mentioned = set().union(*(_mentions(n) for n in kept.values()), *(_mentions(s) for _, s in kernel.other))
        changed = False
        for name, node in kept.items():
            if isinstance(node, ast.ClassDef):
                before = len(node.body)
                pruned = _prune_methods(copy.copy(node), mentioned)  # a new body list; methods shared
                if len(pruned.body) != before:
                    folded[name] = pruned
                    changed = True
        if not changed:
            break
    order = {m: i for i, m in enumerate(kernel.order)}
    nodes, done = [], set()
    stmts = sorted((order[kernel.defs[n].module], _line(kernel.defs[n].node), n) for n in kept)
    for _, _, n in stmts:
        node = kept[n]
        if id(node) in done:  # one assignment binding several names
            continue
        done.add(id(node))
        nodes.append(node)
    for _, stmt in kernel.other:
        nodes.append(stmt)
    used = seen & set(kernel.imports)
    return nodes, used


_EXITS = (ast.Return, ast.Raise, ast.Continue, ast.Break)


def _drop_after_exits(tree: ast.AST) -> None:
    """Statements after a ``return``/``raise``/``continue``/``break`` in the same block never run (folding
    leaves them, e.g. after a decided ``if`` whose branch returns): dropped."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                cut = next((i for i, s in enumerate(block) if isinstance(s, _EXITS)), None)
                if cut is not None:
                    del block[cut + 1:]


def _drop_calls_of_empty_functions(defs: dict[str, ast.stmt]) -> None:
    """A call statement ``f(a, b)`` of a top-level function whose folded body is empty (``pass``), with
    arguments that are names or literals, does nothing: dropped (then ``f`` itself, if nothing else
    names it)."""
    empty = {n for n, d in defs.items() if isinstance(d, ast.FunctionDef) and not d.decorator_list
             and all(isinstance(s, ast.Pass) for s in d.body)}
    if not empty:
        return

    def idle(stmt: ast.stmt) -> bool:
        return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
                and isinstance(stmt.value.func, ast.Name) and stmt.value.func.id in empty
                and all(_pure(a) for a in stmt.value.args) and all(_pure(k.value) for k in stmt.value.keywords))

    for d in defs.values():
        for node in ast.walk(d):
            for name in ("body", "orelse", "finalbody"):
                block = getattr(node, name, None)
                if isinstance(block, list) and block and isinstance(block[0], ast.stmt) and any(map(idle, block)):
                    kept = [s for s in block if not idle(s)]
                    block[:] = kept or ([] if name != "body" else [ast.Pass()])


def _line(node: ast.AST) -> int:
    return getattr(node, "lineno", 0)


def specialise(cfg, roots: set[str], root: Path = KERNEL_DIR, package: str = KERNEL_PACKAGE) -> str:
    """The kernel folded against ``cfg`` and reduced to what ``roots`` reach, as one module's source."""

    kernel, _ = load_kernel(root, package)
    types = config_types(cfg) if cfg is not None else {}
    # the trees are this call's own parse, folded in place (no deepcopy: python-minifier leaves attributes
    # on the interpreter's shared ast.Load/ast.Store nodes, and copying them would copy its whole tree)
    folded, done = {}, {}
    for name, d in kernel.defs.items():
        if id(d.node) not in done:  # one assignment may bind several names
            node = d.node
            _strip(node)
            node = _Folder(types).visit(node)
            _drop_after_exits(node)
            done[id(d.node)] = node
        folded[name] = done[id(d.node)]
    _drop_calls_of_empty_functions(folded)
    nodes, used = reachable(kernel, folded, roots)
    imports = [kernel.imports[b] for b in sorted(used, key=lambda b: ast.unparse(kernel.imports[b]))]
    return ast.unparse(ast.Module(body=[*_merge_imports(imports), *nodes], type_ignores=[]))


def _merge_imports(imports: list[ast.stmt]) -> list[ast.stmt]:
    """``from m import a`` and ``from m import b`` as ``from m import a, b``; plain imports as they are."""
    plain, froms = [], defaultdict(list)
    for stmt in imports:
        if isinstance(stmt, ast.ImportFrom):
            froms[stmt.module].extend(stmt.names)
        else:
            plain.append(stmt)
    return [*plain, *(ast.ImportFrom(m, names, 0) for m, names in sorted(froms.items()))]
