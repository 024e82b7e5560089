"""What counts as code in ``artifact_bytes``.

The challenge counts the bytes of the single training script next to the compressed model. A
framework spreads that script over modules, so golf counts what a submission would have to ship:

* ``bundle`` (default): the size of ``submission.py``, a single runnable file written next to the
  artifact. It holds every ``golf`` module the run had imported by the time the artifact was written
  (docstrings and comments stripped) and the run's resolved configuration, lzma-compressed and base85
  encoded behind a short loader — the self-extracting form that record submissions also use.
  ``python submission.py [key=value ...]`` extracts the modules to a temporary directory and runs the
  same configuration again, without Hydra (``run_dir=...`` picks the output directory; by default a
  new ``./golf_run-<date>-<time>``). The modules are extracted once into
  ``<tmp>/golf-bundle-<hash of the payload>``, which spawned workers (re-running the file as their
  main module) find again by the same hash; the folder is kept as a cache.
* ``imported``: the plain source files of those modules.
* ``stripped``: the same files with docstrings and comments removed (``ast`` round trip).
* ``package``: every ``.py`` file of the package (an upper bound, independent of the configuration).

Technique modules that a configuration does not use are counted only if something imported them.
"""

from __future__ import annotations

import ast
import base64
import json
import lzma
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


MODES = ("bundle", "imported", "package", "stripped")
BUNDLE_NAME = "submission.py"


def code_files(mode: str = "imported") -> list[Path]:
    if mode == "package":
        return sorted(PACKAGE_DIR.rglob("*.py"))
    if mode not in MODES:
        raise ValueError(f"code_bytes mode must be one of {', '.join(MODES)}, got {mode!r}")
    files = set()
    for module in list(sys.modules.values()):  # by file, so ``python -m golf.train``'s __main__ counts too
        path = getattr(module, "__file__", None)
        if not path or Path(path).suffix != ".py":
            continue
        path = Path(path).resolve()
        if path.is_relative_to(PACKAGE_DIR):
            files.add(path)
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


_LOADER = """\
# golf submission: python submission.py [key=value ...]  (output in run_dir=..., default ./golf_run-<time>)
# Below: the golf modules of the run (docstrings and comments stripped) and its resolved config,
# lzma + base85. They are extracted once to a folder named by their hash and run from there.
import base64,hashlib,json,lzma,os,shutil,sys,tempfile
P=b"{payload}"
D=os.path.join(tempfile.gettempdir(),"golf-bundle-"+hashlib.sha256(P).hexdigest()[:16])
if not os.path.isdir(D):
    T=tempfile.mkdtemp(prefix="golf-bundle-tmp-");B=json.loads(lzma.decompress(base64.b85decode(P)))
    for n,s in B["files"].items():
        f=os.path.join(T,n);os.makedirs(os.path.dirname(f),exist_ok=True);open(f,"w",encoding="utf-8").write(s)
    open(os.path.join(T,"config.yaml"),"w",encoding="utf-8").write(B["config"])
    try:os.rename(T,D)
    except OSError:shutil.rmtree(T,True)
sys.path.insert(0,D)
if __name__=="__main__":
    import golf.train as t
    if not t.__file__.startswith(D):sys.exit("golf bundle: an installed golf shadows the bundled one: "+t.__file__)
    t.run_bundled(open(os.path.join(D,"config.yaml"),encoding="utf-8").read(),sys.argv[1:])
"""


def bundle_source(config_yaml: str, files: list[Path] | None = None) -> str:
    """The text of ``submission.py``: ``files`` (default: the imported golf modules), stripped, and the
    resolved config, compressed behind the loader above. Deterministic for the same inputs."""
    files = code_files("imported") if files is None else files
    payload = {
        "files": {str(p.relative_to(PACKAGE_DIR.parent)): strip_source(p.read_text(encoding="utf-8"))
                  for p in sorted(files)},
        "config": config_yaml,
    }
    raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    packed = base64.b85encode(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)).decode("ascii")
    return _LOADER.format(payload=packed)


def count_code_bytes(mode: str = "bundle", config_yaml: str = "") -> tuple[int, list[str]]:
    """(total bytes, the package-relative files counted). ``config_yaml`` is the resolved config that
    a bundle carries (see :func:`bundle_config`)."""
    files = code_files(mode)
    names = [str(p.relative_to(PACKAGE_DIR.parent)) for p in files]
    if mode == "bundle":
        return len(bundle_source(config_yaml, files).encode("utf-8")), names
    total = 0
    for p in files:
        source = p.read_text(encoding="utf-8")
        total += len((strip_source(source) if mode == "stripped" else source).encode("utf-8"))
    return total, names


def code_bytes_bound(config_yaml: str = "") -> int:
    """A cheap upper bound of :func:`count_code_bytes` in every mode: all of the package's source and
    the config, at most 6 bytes each once JSON-escaped (``\\u00XX``), lzma's framing and base85's 5/4,
    and the loader. Used to skip the exact count when even this fits a budget."""
    raw = sum(p.stat().st_size for p in code_files("package")) + len(config_yaml.encode("utf-8"))
    return (6 * raw + 4096) * 5 // 4 + len(_LOADER) + 64


def bundle_config(cfg) -> str:
    """The resolved config of a run as a bundle carries it (no run directory: a rerun picks its own)."""
    from omegaconf import OmegaConf

    container = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    container["run_dir"] = None
    if cfg.run_name == f"{cfg.arch.name}-{cfg.quant.name}-s{cfg.seed}":  # the default name follows seed=...
        container["run_name"] = "${arch.name}-${quant.name}-s${seed}"
    return OmegaConf.to_yaml(container)
