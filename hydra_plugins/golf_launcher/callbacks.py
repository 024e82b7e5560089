"""Checks Hydra runs before it creates anything: the entry points' own Hydra callback.

Hydra makes the job's output directory, its ``.hydra/`` and log file before the task function runs,
so a problem there (a read-only directory, a missing mandatory key it needs for the directory's name)
would end in Hydra's traceback. :class:`EntryChecks` (``hydra.callbacks.entry_checks`` in
``conf/train.yaml`` and ``conf/evaluate.yaml``) runs first and ends such a command with one line and
exit status 2:

* a mandatory key left unset (``golf.evaluate`` without ``run=``): named, with what to give;
* an output directory (a run's, or a sweep's) that cannot be written: named with the system's reason
  and the option that writes elsewhere (``hydra.run.dir=``, ``golf.evaluate``'s ``out=``);
* a ``-m`` sweep on a launcher that does not check its points before running them (Hydra's own
  ``basic``, ``submitit_*``): a bad point would fail only after the points before it ran. golf's
  launchers (``local``, ``slurm_*``) check every point first.

The top-most folder made for an output directory is noted (:func:`golf.files.note_new_dir`), so that
a run refused later leaves no empty ``runs/<date>/`` behind. With ``HYDRA_FULL_ERROR=1`` the errors
are raised instead (their tracebacks shown).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from golf.config.errors import ConfigError
from golf.config.store import full_error
from golf.files import note_new_dir

GOLF_LAUNCHERS = "hydra_plugins.golf_launcher."  # the launchers that check every point first


class EntryChecks(Callback):
    """``prog``: the command's name in its messages; ``required``: keys that must be set, each with what
    to give; ``output``: what the job's output directory is called; ``elsewhere``: how to write the
    output somewhere else (shown when the directory is not writable)."""

    def __init__(self, prog: str = "golf", required: dict[str, str] | None = None, output: str = "run directory",
                 elsewhere: str = "") -> None:
        self.prog, self.required, self.output, self.elsewhere = prog, dict(required or {}), output, elsewhere

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        for key, give in self.required.items():
            if OmegaConf.is_missing(config, key):
                self._refuse(ConfigError(key, "???", "is not set"), f"invalid configuration: {key} is not set: {give}")
        self._writable(Path(str(config.hydra.run.dir)), self.output)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        target = str(OmegaConf.select(config, "hydra.launcher._target_", default=""))
        if not target.startswith(GOLF_LAUNCHERS):
            choice = OmegaConf.select(config, "hydra.runtime.choices", default={}).get("hydra/launcher", target)
            err = ConfigError("hydra/launcher", choice, "runs the points of a sweep without checking them first (a "
                              "bad point would fail only after the points before it ran); use hydra/launcher=local "
                              "on this machine, or slurm_8xh100 / slurm_ci")
            self._refuse(err, f"invalid configuration: {err}")
        self._writable(Path(str(config.hydra.sweep.dir)), "sweep directory")

    def _writable(self, out: Path, what: str) -> None:
        """Make ``out`` (its parents too) and write a file in it, then remove what was made (whoever runs
        next makes it again, or a refusal leaves nothing); refuse with the reason when that fails."""
        out = Path(os.path.abspath(out))
        top = note_new_dir(out)
        probe = out / f".golf-write-test-{os.getpid()}"
        failed: OSError | None = None
        try:
            out.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            failed = err
        if top is not None:
            _remove_empty(out, top)
        if failed is not None:
            advice = f"; {self.elsewhere}" if self.elsewhere else ""
            self._refuse(failed, f"cannot write the {what} {out}: {failed.strerror or failed}{advice}")

    def _refuse(self, err: Exception, line: str) -> None:
        """End the command with ``line`` (exit status 2), or raise ``err`` under HYDRA_FULL_ERROR=1."""
        if full_error():
            raise err
        print(f"{self.prog}: {line}", file=sys.stderr)
        raise SystemExit(2)


def _remove_empty(out: Path, top: Path) -> None:
    """Remove the empty folders from ``out`` up to ``top`` (those this check made)."""
    for d in (out, *out.parents):
        if d.exists():
            try:
                d.rmdir()
            except OSError:
                return
        if d == top:
            return
