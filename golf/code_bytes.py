"""What counts as code in ``artifact_bytes``.

The challenge counts the UTF-8 bytes of the single training script next to the compressed model. A
framework spreads that script over modules, so golf counts the source files of the ``golf`` package
that a submission would have to ship:

* ``imported`` (default): every ``golf`` module the run has imported by the time the artifact is
  written — the training loop, the model parts of the chosen techniques, the quantizer, the evaluator.
  Technique modules that the configuration does not use are not imported and do not count.
* ``package``: every ``.py`` file of the package (an upper bound, independent of the configuration).
* ``stripped``: the ``imported`` files with docstrings and comments removed (``ast`` round trip) —
  the size of an equivalent single-purpose script, as submissions that minify their code report it.

Configuration files are not counted: the resolved configuration of a run is data, a few kilobytes,
and a submission would inline it as constants.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


MODES = ("imported", "package", "stripped")


def code_files(mode: str = "imported") -> list[Path]:
    if mode == "package":
        return sorted(PACKAGE_DIR.rglob("*.py"))
    if mode not in MODES:
        raise ValueError(f"code_bytes mode must be one of {', '.join(MODES)}, got {mode!r}")
    files = set()
    for name, module in list(sys.modules.items()):
        if name != "golf" and not name.startswith("golf."):
            continue
        path = getattr(module, "__file__", None)
        if path and Path(path).suffix == ".py":
            files.add(Path(path).resolve())
    return sorted(files)


def strip_source(source: str) -> str:
    """The same program without docstrings and comments."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def count_code_bytes(mode: str = "imported") -> tuple[int, list[str]]:
    """(total bytes, the package-relative files counted)."""
    files = code_files(mode)
    total = 0
    for p in files:
        source = p.read_text(encoding="utf-8")
        total += len((strip_source(source) if mode == "stripped" else source).encode("utf-8"))
    return total, [str(p.relative_to(PACKAGE_DIR.parent)) for p in files]
