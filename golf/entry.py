"""How the entry points (``golf.train``, a ``submission.py`` bundle, ``golf.evaluate``) end on a failure.

* A refusal before anything ran (:class:`~golf.config.errors.ConfigError`, a busy run directory, a
  checkpoint the run cannot continue from): one line naming what is wrong and exit status 2. After a
  config error the run directory the entry had opened is removed when nothing but its own bookkeeping
  is in it (:func:`golf.files.discard_if_unused`, with the empty folders made for it).
* An expected failure (:data:`EXPECTED`: bad shards, a corrupt artifact, a non-finite loss or score, an
  over-budget artifact, a GPTQ matrix that cannot be solved, a stop signal, a full disk): one line
  ``<prog>: <Error>: <message>`` and exit status 1; the full traceback is kept in the run directory's
  ``error.txt``.
* Ctrl-C outside training (where it is a stop request, :mod:`golf.preempt`): one line, exit status 130.
* Anything else is a bug: its traceback is shown as usual.

With ``HYDRA_FULL_ERROR=1`` nothing is caught: every error shows its traceback. Inside a sweep (``-m``)
only config errors are caught here: the launcher records each point and reports them all.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from golf.checkpoint import CheckpointError
from golf.config.errors import ConfigError
from golf.data.shards import ShardError
from golf.files import RunDirBusy, discard_if_unused
from golf.preempt import Preempted
from golf.quant.export import GPTQError
from golf.quant.report import BudgetExceededError
from golf.quant.validate_artifact import ArtifactError

REFUSED = (ConfigError, RunDirBusy, CheckpointError)
EXPECTED = (ShardError, ArtifactError, FloatingPointError, BudgetExceededError, GPTQError, Preempted, OSError)
_REFUSAL_WORDS = {ConfigError: "invalid configuration", RunDirBusy: "refused"}


def full_errors() -> bool:
    """Tracebacks wanted (``HYDRA_FULL_ERROR=1``, as Hydra reads it): errors are not turned into one line."""
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


@contextlib.contextmanager
def entry_errors(prog: str, run_dirs: Callable[[], list[Path | None]], *, in_sweep: bool = False):
    """Turn refusals and expected failures raised in the block into one line and an exit status.

    ``run_dirs``: the directories this entry created or writes to (asked only on failure; entries may
    be None while they are not known yet)."""
    try:
        yield
    except REFUSED as err:
        if full_errors() or (in_sweep and not isinstance(err, ConfigError)):
            raise
        if isinstance(err, ConfigError):  # a busy directory or a checkpoint belongs to the run there
            for d in _known(run_dirs):
                discard_if_unused(d)
        what = next((w for cls, w in _REFUSAL_WORDS.items() if isinstance(err, cls)), type(err).__name__)
        print(f"{prog}: {what}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except EXPECTED as err:
        if in_sweep or full_errors():
            raise
        kept = None if isinstance(err, Preempted) else _keep_traceback(_known(run_dirs))
        where = f" (traceback in {kept})" if kept else ""
        print(f"{prog}: {type(err).__name__}: {_first_line(err)}{where}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        if in_sweep or full_errors():
            raise
        print(f"{prog}: interrupted (Ctrl-C)", file=sys.stderr)
        raise SystemExit(130) from None


def _known(run_dirs: Callable[[], list[Path | None]]) -> list[Path]:
    try:
        return [Path(d) for d in run_dirs() if d is not None]
    except Exception:  # no Hydra context (yet): nothing to tidy
        return []


def _keep_traceback(dirs: list[Path]) -> Path | None:
    """The ``error.txt`` holding the traceback: the run's own when it wrote one, else written here."""
    for d in dirs:
        if (d / "error.txt").is_file() and (d / "error.txt").stat().st_size:
            return d / "error.txt"
    for d in dirs:
        if d.is_dir():
            try:
                (d / "error.txt").write_text(traceback.format_exc())
                return d / "error.txt"
            except OSError:  # the disk may be the problem
                return None
    return None
