"""What counts as code in ``artifact_bytes``.

The challenge counts the UTF-8 bytes of the single training script next to the compressed model. A
framework spreads that script over modules, so golf counts the source files of the ``golf`` package
that a submission would have to ship:

* ``imported`` (default): every ``golf`` module the run has imported by the time the artifact is
  written — the training loop, the model parts of the chosen techniques, the quantizer, the evaluator.
  Technique modules that the configuration does not use are not imported and do not count.
* ``package``: every ``.py`` file of the package (an upper bound, independent of the configuration).

Configuration files are not counted: the resolved configuration of a run is data, a few kilobytes,
and a submission would inline it as constants.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def code_files(mode: str = "imported") -> list[Path]:
    if mode == "package":
        return sorted(PACKAGE_DIR.rglob("*.py"))
    if mode != "imported":
        raise ValueError(f"code_bytes mode must be 'imported' or 'package', got {mode!r}")
    files = set()
    for name, module in list(sys.modules.items()):
        if name != "golf" and not name.startswith("golf."):
            continue
        path = getattr(module, "__file__", None)
        if path and Path(path).suffix == ".py":
            files.add(Path(path).resolve())
    return sorted(files)


def count_code_bytes(mode: str = "imported") -> tuple[int, list[str]]:
    """(total bytes, the package-relative files counted)."""
    files = code_files(mode)
    total = sum(len(p.read_text(encoding="utf-8").encode("utf-8")) for p in files)
    return total, [str(p.relative_to(PACKAGE_DIR.parent)) for p in files]
