"""The submission a recipe compiles to: one script, as small as a hand-written record.

The challenge counts the bytes of the code beside the compressed model. A recipe's submission is
generated from the run kernel (:mod:`golf.kernel`) alone and specialised to the resolved config
(:mod:`golf.specialise`): config reads folded into literals, the branches of techniques that are off
dropped, the per-parameter decisions the lab resolved from roles written as literal tables, everything
unreachable from the kernel's ``main`` left out. Two files come out of it:

* ``train_gpt.py``: the readable program (``ast.unparse`` of the specialised kernel, the config and the
  tables as literals), for reviewers;
* ``submission.py``: the same program minified (python-minifier: locals and globals renamed,
  annotations and docstrings removed), compressed with LZMA (preset 9, extreme) and base85-encoded
  behind a one-line ``exec`` loader — the wrapping record submissions use. Its size is the run's
  ``code_bytes``, in the dry run, in the launchers' budget check and in the run alike.

Both run as a record does: ``torchrun --standalone --nproc_per_node=8 submission.py`` (data from
``DATA_DIR`` or ``train=/val=/tokenizer=`` arguments; see :func:`golf.kernel.run.main`), and need only
torch, numpy, sentencepiece and the recipe's codec package.
"""

from __future__ import annotations

import base64
import lzma
from dataclasses import dataclass
from pathlib import Path

import python_minifier

from golf.specialise import KERNEL_DIR, Node, plain, specialise

SCRIPT_NAME = "submission.py"
READABLE_NAME = "train_gpt.py"
ENTRY = "main"
# names the script binds besides the kernel's
_SCRIPT_NAMES = ("N", "C", "T")
_LOADER = 'import lzma,base64\nexec(lzma.decompress(base64.b85decode("{payload}")))\n'


@dataclass(frozen=True)
class Submission:
    readable: str  # train_gpt.py
    script: str  # submission.py

    @property
    def code_bytes(self) -> int:
        return len(self.script.encode("utf-8"))

    def write(self, folder: Path) -> None:
        from golf.files import write_atomic

        Path(folder).mkdir(parents=True, exist_ok=True)
        write_atomic(Path(folder) / READABLE_NAME, self.readable)
        write_atomic(Path(folder) / SCRIPT_NAME, self.script)


def generate(cfg, tables: dict, *, kernel_dir: Path = KERNEL_DIR, package: str = "golf.kernel",
             entry: str = ENTRY) -> Submission:
    """The submission of ``cfg`` (a validated :class:`golf.config.schema.GolfConfig`) with the lab's
    per-parameter ``tables`` (plain data, see :func:`golf.tables.run_tables`)."""
    program = specialise(cfg, {entry}, kernel_dir, package)
    mentioned = _mentioned(program)
    clash = [n for n in _SCRIPT_NAMES if f"\n{n} = " in program or f"def {n}(" in program]
    if clash:
        raise ValueError(f"the kernel defines {clash}, names the generated script binds itself")
    config = _source(_pruned(plain(cfg), mentioned))
    readable = (f"from types import SimpleNamespace as N\n{program}\n"
                f"C = {config}\nT = {_tables_source(tables)}\n"
                f"if __name__ == '__main__':\n    {entry}(C, T)\n")
    # the readable form keeps the kernel's annotations, which name lab classes: unevaluated there (the
    # minified one has none to evaluate, and is a byte smaller each for not saying so)
    return Submission("from __future__ import annotations\n" + readable, wrap(minify(readable)))


def minify(source: str, keep: tuple[str, ...] = ()) -> str:
    """``source`` minified; the global names in ``keep`` keep their names."""
    return python_minifier.minify(
        source, remove_annotations=True, remove_literal_statements=True, rename_locals=True,
        rename_globals=True, preserve_globals=list(keep), hoist_literals=False, remove_asserts=False,
        remove_debug=False)


def wrap(source: str) -> str:
    """``source`` behind the self-extracting loader: LZMA (preset 9e) + base85."""
    packed = lzma.compress(source.encode("utf-8"), preset=9 | lzma.PRESET_EXTREME)
    return _LOADER.format(payload=base64.b85encode(packed).decode("ascii"))


def unwrap(script: str) -> str:
    """The program inside a wrapped script (for tests and reviewers)."""
    payload = script.split('b85decode("', 1)[1].split('"', 1)[0]
    return lzma.decompress(base64.b85decode(payload)).decode("utf-8")


def _mentioned(program: str) -> set[str]:
    import ast

    names = set()  # config fields are read as attributes (or by getattr/hasattr with a literal name)
    for n in ast.walk(ast.parse(program)):
        if isinstance(n, ast.Attribute):
            names.add(n.attr)
        elif isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in ("getattr", "hasattr"):
            names.update(a.value for a in n.args[1:2] if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def _pruned(value, mentioned: set[str]):
    """A config node without the fields no kernel code can read (their names appear nowhere in it)."""
    if isinstance(value, Node):
        return Node({k: _pruned(v, mentioned) for k, v in value.items() if k in mentioned})
    if isinstance(value, dict):
        return {k: _pruned(v, mentioned) for k, v in value.items()}
    if isinstance(value, list):
        return [_pruned(v, mentioned) for v in value]
    return value


def _tables_source(tables: dict) -> str:
    """The plan's tables as source, each per-parameter table with its per-block entries folded into a
    comprehension where every block agrees (``**{f'blocks.{i}.{k}': v for i in range(11) for k, v in
    (...)}``): the same dict, entries in the same order (checked), a fraction of the bytes."""
    return "{" + ",".join(f"{_source(k)}:{_per_block_source(v)}" for k, v in tables.items()) + "}"


def _per_block_source(table) -> str:
    import re

    plain_source = _source(table)
    if not isinstance(table, dict) or not all(isinstance(k, str) for k in table):
        return plain_source
    families: dict[str, dict] = {}  # prefix -> {suffix: {index: value}}
    order: list = []  # a plain key or a family's prefix, where it first appears
    for key, value in table.items():
        m = re.fullmatch(r"(.*?\.)(\d+)(\..*)", key)
        if m is None:
            order.append(("key", key))
            continue
        prefix, i, suffix = m.group(1), int(m.group(2)), m.group(3)
        if prefix not in families:
            families[prefix] = {}
            order.append(("family", prefix))
        families[prefix].setdefault(suffix, {})[i] = value
    parts = []
    for kind, name in order:
        if kind == "key":
            parts.append(f"{_source(name)}:{_source(table[name])}")
            continue
        suffixes = families[name]
        indices = sorted(next(iter(suffixes.values())))
        uniform = all(sorted(v) == indices and len({_source(x) for x in v.values()}) == 1 for v in suffixes.values())
        if not uniform or indices != list(range(indices[0], indices[-1] + 1)):
            parts.extend(f"{_source(f'{name}{i}{s}')}:{_source(v[i])}" for s, v in suffixes.items() for i in v)
            continue
        pairs = ",".join(f"({_source(s)},{_source(next(iter(v.values())))})" for s, v in suffixes.items())
        span = f"range({indices[-1] + 1})" if indices[0] == 0 else f"range({indices[0]},{indices[-1] + 1})"
        parts.append(f"**{{f{_source(name + '{i}{k}')}:v for i in {span} for k,v in ({pairs},)}}")
    folded = "{" + ",".join(parts) + "}"
    try:
        same = list(eval(folded, {}).items()) == list(table.items())  # noqa: S307 - our own literal source
    except Exception:
        same = False
    return folded if same and len(folded) < len(plain_source) else plain_source


def _source(value) -> str:
    """Python source of a plain value; config nodes as ``N(field=...)`` namespaces."""
    if isinstance(value, Node):
        return "N(" + ",".join(f"{k}={_source(v)}" for k, v in value.items()) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_source(k)}:{_source(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_source(v) for v in value) + "]"
    if isinstance(value, tuple):
        return "(" + ",".join(_source(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, float) and value != value:
        return "float('nan')"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f"float('{value}')"
    return repr(value)


def main(argv: list[str] | None = None) -> None:
    """``python -m golf.submission [--roots a,b] [--out DIR] [overrides...]``: generate a recipe's
    submission, print its bytes (``--roots``: only what those kernel names reach, with no tables: the
    size of one part of the kernel)."""
    import argparse

    from hydra import compose, initialize_config_dir

    from golf.config.store import register_schemas
    from golf.config.validate import load_config

    parser = argparse.ArgumentParser(prog="python -m golf.submission")
    parser.add_argument("--roots", default=None)
    parser.add_argument("--out", default=None)
    args, overrides = parser.parse_known_args(argv)
    conf = Path(__file__).resolve().parents[1] / "conf"
    register_schemas()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = load_config(compose("train", overrides=overrides))
    if args.roots:
        program = specialise(cfg, set(args.roots.split(",")))
        sub = Submission(program, wrap(minify(program)))
    else:
        from golf.plan import submission_of

        sub = submission_of(cfg)
    if args.out:
        sub.write(Path(args.out))
    print(f"readable {len(sub.readable.encode()):,} B, minified {len(unwrap(sub.script).encode()):,} B, "
          f"submission {sub.code_bytes:,} B")


if __name__ == "__main__":
    main()
