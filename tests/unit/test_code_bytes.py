"""What counts as code in artifact_bytes."""

from __future__ import annotations

import ast
import base64
import json
import lzma
import re
import sys
import types

from golf.code_bytes import PACKAGE_DIR, bundle_source, code_files, count_code_bytes, strip_source


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
    bundle, bundled = count_code_bytes("bundle", "seed: 1\n")
    assert "golf/trainer.py" in files and set(files) <= set(all_files) and bundled == files
    assert bundle < stripped < imported <= package
    assert package == sum(len(p.read_bytes()) for p in PACKAGE_DIR.rglob("*.py"))
    for name in files:  # every stripped module is still valid Python
        ast.parse(strip_source((PACKAGE_DIR.parent / name).read_text()))


def unpack(bundle: str) -> dict:
    (payload,) = re.findall(r'^P=b"([^"]*)"$', bundle, flags=re.M)
    return json.loads(lzma.decompress(base64.b85decode(payload)))


def test_bundle_carries_the_stripped_modules_and_the_config(tmp_path):
    import golf.trainer  # noqa: F401

    files = code_files("imported")
    text = bundle_source("seed: 7\nrun_dir: null\n", files)
    assert text == bundle_source("seed: 7\nrun_dir: null\n", files)  # deterministic
    assert text.isascii() and len(text.encode()) == count_code_bytes("bundle", "seed: 7\nrun_dir: null\n")[0]
    content = unpack(text)
    assert content["config"] == "seed: 7\nrun_dir: null\n"
    assert sorted(content["files"]) == [str(p.relative_to(PACKAGE_DIR.parent)) for p in files]
    trainer = (PACKAGE_DIR / "trainer.py").read_text()
    assert content["files"]["golf/trainer.py"] == strip_source(trainer)
    ast.parse(text)  # the loader itself is valid Python


def test_a_module_run_as_main_counts(monkeypatch):
    """``python -m golf.train`` leaves golf/train.py in sys.modules only as __main__."""
    monkeypatch.delitem(sys.modules, "golf.report", raising=False)
    assert PACKAGE_DIR / "report.py" not in code_files("imported")
    monkeypatch.setitem(sys.modules, "__fake_main__", types.SimpleNamespace(__file__=str(PACKAGE_DIR / "report.py")))
    assert PACKAGE_DIR / "report.py" in code_files("imported")
