"""What counts as code in artifact_bytes."""

from __future__ import annotations

import ast

from golf.code_bytes import PACKAGE_DIR, count_code_bytes, strip_source


def test_stripping_keeps_the_program_and_drops_docs():
    src = 'def f(x):\n    """Add one."""\n    # a comment\n    return x + 1\n\nclass C:\n    """Doc."""\n'
    out = strip_source(src)
    assert "Add one" not in out and "comment" not in out and "Doc." not in out
    ns: dict = {}
    exec(out, ns)
    assert ns["f"](41) == 42 and isinstance(ns["C"], type)


def test_modes_are_ordered_and_count_real_files():
    import golf.trainer  # noqa: F401  (the training loop and what it imports)

    imported, files = count_code_bytes("imported")
    stripped, _ = count_code_bytes("stripped")
    package, all_files = count_code_bytes("package")
    assert "golf/trainer.py" in files and set(files) <= set(all_files)
    assert stripped < imported <= package
    assert package == sum(len(p.read_bytes()) for p in PACKAGE_DIR.rglob("*.py"))
    for name in files:  # every stripped module is still valid Python
        ast.parse(strip_source((PACKAGE_DIR.parent / name).read_text()))
