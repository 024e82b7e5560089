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
from collections import defaultdict
from pathlib import Path

from golf.config_fold import Folder, Node, config_types, plain, pure  # noqa: F401 (Node, plain: re-exported)
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
                and all(pure(a) for a in stmt.value.args) and all(pure(k.value) for k in stmt.value.keywords))

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
            node = Folder(types).visit(node)
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
