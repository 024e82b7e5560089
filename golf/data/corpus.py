"""Text sources for the demo corpus: documents as lists of strings, plus a fingerprint for caching.

``python-docs`` is English prose that exists on any Python installation with no network: the language
reference topics of ``pydoc_data.topics`` (what ``help("if")`` shows) and the docstrings of the
standard library's modules, classes and functions, read with :mod:`ast` (no module is imported).
About 2 MB of text in roughly 5,000 documents on CPython 3.11. User files are ``.txt`` (one document
per blank-line-separated paragraph) or ``.jsonl`` (one ``{"text": ...}`` document per line). Used by
:mod:`golf.data.demo`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import sys
import sysconfig
from pathlib import Path

from golf.data.config import PYTHON_DOCS

MIN_DOCSTRING_CHARS = 40
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "turtledemo"}
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_DOC_NODES = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


class CorpusError(ValueError):
    """A text source is missing or malformed."""


def python_docs() -> list[str]:
    """The language reference topics followed by stdlib docstrings of at least 40 characters."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        topics = {}
    docs = [topics[name] for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        for name in sorted(files):
            if name.endswith(".py"):
                docs.extend(_docstrings(Path(root) / name))
    if not docs:
        raise CorpusError(f"no Python documentation found (pydoc_data.topics and {stdlib} are both empty)")
    return docs


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return []  # a few stdlib files are deliberately unparsable (e.g. lib2to3 fixtures)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, _DOC_NODES):
            doc = ast.get_docstring(node)
            if doc and len(doc) >= MIN_DOCSTRING_CHARS:
                out.append(doc)
    return out


def read_documents(path: str | os.PathLike) -> list[str]:
    """Documents of a ``.txt`` (paragraphs) or ``.jsonl`` (``{"text": ...}`` per line) file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CorpusError(f"text source not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text ({e})") from e
    if path.suffix == ".txt":
        return [p.strip() for p in _PARAGRAPH_BREAK.split(text) if p.strip()]
    if path.suffix == ".jsonl":
        return _jsonl_documents(path, text)
    raise CorpusError(f"{path}: unsupported source type {path.suffix!r} (use .txt or .jsonl)")


def _jsonl_documents(path: Path, text: str) -> list[str]:
    docs = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise CorpusError(f'{path}:{lineno}: expected an object with a string "text" field')
        docs.append(record["text"])
    return docs


def load_source(source: str) -> list[str]:
    """The documents of one source: ``python-docs`` or a file path."""
    return python_docs() if source == PYTHON_DOCS else read_documents(source)


def source_fingerprint(source: str) -> str:
    """What identifies a source's content: the Python version for ``python-docs``, else the file's sha256."""
    if source == PYTHON_DOCS:
        return f"{PYTHON_DOCS}:{sys.version}:{sysconfig.get_paths()['stdlib']}"
    path = Path(source).expanduser()
    if not path.is_file():
        raise CorpusError(f"text source not found: {path}")
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"
