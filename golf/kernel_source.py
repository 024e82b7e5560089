"""The run kernel's source as the generator reads it: its modules parsed, its contract checked.

:func:`load_kernel` parses every module of :mod:`golf.kernel`, strips what is lab metadata (docstrings,
``TYPE_CHECKING`` imports, role labels) and checks the contract of ``golf/kernel/__init__.py``: unique
top-level names, kernel modules imported as ``from golf.kernel.x import name``, lab modules only for
annotations, no import cycle, no name-blind builtin. :mod:`golf.specialise` folds and prunes what it returns.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parent / "kernel"
KERNEL_PACKAGE = "golf.kernel"
LAB_ATTRIBUTES = ("PARAM_ROLES", "HOST_ROLES")

# builtins that read names at run time: python-minifier renames nothing in a module that uses one
NAME_BLIND_BUILTINS = frozenset({"vars", "locals", "globals", "dir", "eval", "exec"})


class SpecialiseError(ValueError):
    """The kernel breaks its contract (golf/kernel/__init__.py): a name defined twice, a forbidden import."""


# ----------------------------------------------------------------------------- the kernel's modules


@dataclasses.dataclass
class _Def:
    name: str
    module: str
    node: ast.stmt


@dataclasses.dataclass
class Kernel:
    """The kernel's top-level definitions by name, its external imports and module order."""

    defs: dict[str, _Def]
    imports: dict[str, ast.stmt]  # bound name -> the import statement binding it (one name each)
    order: list[str]  # module names, each after the kernel modules it imports
    other: list[tuple[str, ast.stmt]]  # top-level statements that are neither definitions nor imports


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "golf." + ".".join(parts)


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def _strip(tree: ast.AST) -> None:
    """Docstrings and role labels out (in place)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            node.body = _strip_docstring(node.body) or [ast.Pass()]
        if isinstance(node, ast.ClassDef):
            node.body = [s for s in node.body if not (
                isinstance(s, (ast.Assign, ast.AnnAssign))
                and any(isinstance(t, ast.Name) and t.id in LAB_ATTRIBUTES
                        for t in (s.targets if isinstance(s, ast.Assign) else [s.target])))] or [ast.Pass()]


def _is_type_checking(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and isinstance(stmt.test, (ast.Name, ast.Attribute)) and \
        (getattr(stmt.test, "id", None) or getattr(stmt.test, "attr", None)) == "TYPE_CHECKING"


def load_kernel(root: Path = KERNEL_DIR, package: str = KERNEL_PACKAGE) -> tuple[Kernel, dict[str, ast.Module]]:
    """Parse the kernel; raise :class:`SpecialiseError` where it breaks the contract."""
    trees = {}
    for path in sorted(root.rglob("*.py")):
        name = _module_name(path, root) if package == KERNEL_PACKAGE else \
            package + "." + ".".join(path.relative_to(root).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        trees[name] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    defs: dict[str, _Def] = {}
    imports: dict[str, ast.stmt] = {}
    deps: dict[str, set[str]] = {m: set() for m in trees}
    other = []
    for mod, tree in trees.items():
        for stmt in tree.body:
            if _is_type_checking(stmt) or isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
                continue
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                continue  # docstring
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                _collect_import(stmt, mod, package, trees, imports, deps[mod])
                continue
            names = _defined_names(stmt)
            if not names:
                other.append((mod, stmt))
                continue
            for n in names:
                if n in defs or n in imports:
                    where = defs[n].module if n in defs else "an import"
                    raise SpecialiseError(f"{mod}: the top-level name {n!r} is also defined in {where} "
                                          "(kernel names must be unique: the submission is one namespace)")
                defs[n] = _Def(n, mod, stmt)
    for n in defs:
        if n in imports:
            raise SpecialiseError(f"{defs[n].module}: {n!r} is both defined and imported in the kernel")
    for mod, tree in trees.items():
        for n in ast.walk(tree):
            if isinstance(n, ast.Name) and n.id in NAME_BLIND_BUILTINS:
                raise SpecialiseError(f"{mod}, line {n.lineno}: {n.id}() makes the minifier keep every name of "
                                      "the script as written; the kernel does not use it")
    return Kernel(defs, imports, _topological(deps), other), trees


def _defined_names(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


def _collect_import(stmt, mod, package, trees, imports, deps) -> None:
    if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith(package):
        if stmt.module not in trees:
            raise SpecialiseError(f"{mod}: imports {stmt.module}, which is not a kernel module")
        for alias in stmt.names:
            if alias.asname and alias.asname != alias.name:
                raise SpecialiseError(f"{mod}: 'from {stmt.module} import {alias.name} as {alias.asname}': "
                                      "kernel names are imported under their own name")
        deps.add(stmt.module)
        return
    if isinstance(stmt, ast.Import) and any(a.name.startswith(package) for a in stmt.names) or \
            isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("golf"):
        raise SpecialiseError(f"{mod}: {ast.unparse(stmt)!r}: the kernel imports kernel modules by "
                              f"'from {package}.x import name' and lab modules only under TYPE_CHECKING")
    for alias in stmt.names:
        bound = alias.asname or alias.name.split(".")[0]
        one = (ast.Import([alias]) if isinstance(stmt, ast.Import)
               else ast.ImportFrom(stmt.module, [alias], stmt.level))
        if bound in imports and ast.unparse(imports[bound]) != ast.unparse(one):
            raise SpecialiseError(f"{mod}: {ast.unparse(one)!r} binds {bound!r}, which another kernel module "
                                  f"binds by {ast.unparse(imports[bound])!r}")
        imports[bound] = one


def _topological(deps: dict[str, set[str]]) -> list[str]:
    order, state = [], {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        if state.get(m) == "active":
            raise SpecialiseError(f"kernel modules import each other in a cycle: {' -> '.join([*path, m])}")
        state[m] = "active"
        for d in sorted(deps[m]):
            visit(d, [*path, m])
        state[m] = "done"
        order.append(m)

    for m in sorted(deps):
        visit(m, [])
    return order
