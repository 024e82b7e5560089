"""Progress of a long stage (training, evaluation, export, calibration) as the researcher sees it.

One small interface for every stage::

    bar = Progress("train", total=cfg.train.iterations, unit="step", every=cfg.logger.console_every,
                   enabled=dist.is_main)
    for step in ...:
        bar.update(step, loss=lambda: loss.item(), tok_s=...)   # callables run only when a line is due
    bar.close()

* On a terminal (stderr is a tty) a ``tqdm`` bar advances on every :meth:`Progress.update`, and its
  postfix shows the fields of the last line that was due.
* At the cadence, a plain line ``train 50/200 | loss 4.1234 | ...`` is logged through the ``golf``
  logger, so it reaches the run's log file and, without a terminal, the console (Slurm logs, CI); with
  a bar, the console copy is written above it.
* The cadence is: the first update and the first ``first`` positions after ``start``, every multiple of ``every`` (reached or passed by an
  update; 0 = none) and the last position (``total``). :meth:`due` tells a caller ahead of time
  whether a line is due (the same answer on every rank).

Field values that are callables are evaluated only when a line is due: reading a GPU loss for display
(``loss.item()``) is then a host synchronisation at the console cadence, never on every step.
Disabled instances (``enabled=False``: non-main ranks) do nothing at all.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("golf")


def _fmt_value(value: Any) -> str:
    """One format for every number, whatever its size: thousands separated, at most 4 decimals and no
    trailing zeros (``ms/step 929.4``, ``ms/step 1,575.3``, ``loss 4.1235``, ``tok/s 52,428``); a float
    below 0.001 in 3 significant digits (``lr 1.5e-05``)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and abs(value) < 1e-3:
            return f"{value:.3g}"
        text = f"{value:,.4f}".rstrip("0").rstrip(".")
        return "0" if text == "-0" else text
    return str(value)


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


_QUIET = [0]  # > 0 inside quiet(): new progress displays are disabled


@contextlib.contextmanager
def quiet():
    """Progress displays created inside are silent (e.g. a periodic evaluation whose result is one line)."""
    _QUIET[0] += 1
    try:
        yield
    finally:
        _QUIET[0] -= 1


class Progress:
    """The progress of one stage: positions ``1..total`` (see the module doc).

    name: shown at the start of every line (``train``, ``eval sliding``, ``export``).
    total: the last position, or None when unknown (no bar length, no ETA, no "last" line).
    unit: what a position counts (``step``, ``batch``, ``window``, ``chunk``, ``stage``).
    every: a line every this many positions (0 = only the first ones and the last).
    first: the first positions that always get a line.
    enabled: False on non-main ranks (nothing is drawn or logged).
    tty: draw a tqdm bar; None = when stderr is a terminal.
    eta: add the estimated time left (from the rate so far) when ``total`` is known and the caller
         does not pass its own ``left`` field.
    start: the position already reached (a resumed run).
    """

    def __init__(self, name: str, total: int | None = None, *, unit: str = "it", every: int = 0, first: int = 1,
                 enabled: bool = True, tty: bool | None = None, eta: bool = True, start: int = 0):
        self.name, self.total, self.unit = name, total, unit
        self.every, self.first, self.eta = max(0, int(every)), max(0, int(first)), eta
        self.enabled = enabled and not _QUIET[0]
        self.n = self.start = start
        self.t0 = time.perf_counter()
        self.last_fields: dict[str, str] = {}
        self._bar = None
        self._redirect = None
        if not enabled:
            return
        if tty is None:
            tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
        if tty:
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            self._redirect = logging_redirect_tqdm(loggers=[logging.getLogger()])
            self._redirect.__enter__()
            self._bar = tqdm(total=total, initial=start, desc=name, unit=unit, file=sys.stderr,
                             dynamic_ncols=True, leave=True)

    # ---- cadence ----
    def due(self, n: int) -> bool:
        """Whether :meth:`update` to position ``n`` (from the current one) falls on the cadence: the first
        update or one of the first positions, a multiple of ``every`` reached or passed, or the last position reached. The
        answer does not depend on ``enabled``, so every rank can take the same decision from it."""
        prev = self.n
        return (n - self.start <= self.first or prev == self.start or (self.every > 0 and n // self.every > prev // self.every)
                or (self.total is not None and n >= self.total > prev))

    # ---- updates ----
    def update(self, n: int, **fields: Any) -> bool:
        """Move to position ``n`` (absolute); log a line with ``fields`` if one is due. Returns whether it did."""
        due = self.due(n)
        self.n = n
        if not self.enabled:
            return False
        if self._bar is not None and n > self._bar.n:
            self._bar.update(n - self._bar.n)
        if due:
            self.line(**fields)
        return due

    def line(self, **fields: Any) -> None:
        """Log a line now (at the current position), whatever the cadence."""
        if not self.enabled:
            return
        shown = {k: _fmt_value(v() if callable(v) else v) for k, v in fields.items() if v is not None}
        elapsed = time.perf_counter() - self.t0
        if self.eta and "left" not in shown and self.total and 0 < self.n < self.total:
            done = max(self.n - self.start, 1)
            shown["left"] = format_seconds(elapsed / done * (self.total - self.n))
        self.last_fields = shown
        if self._bar is not None:
            self._bar.set_postfix_str(" ".join(f"{k} {v}" for k, v in shown.items()), refresh=True)
        where = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        plural = self.unit + ("es" if self.unit.endswith(("s", "sh", "ch", "x")) else "s")
        parts = [f"{self.name} {where} {plural}"] + [f"{k} {v}" for k, v in shown.items()]
        log.info(" | ".join(parts))

    def close(self) -> None:
        """Finish the bar (no-op without one); safe to call twice."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.__exit__(None, None, None)
            self._redirect = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stage_progress(name: str, stages: list[str], *, enabled: bool = True, tty: bool | None = None
                   ) -> Callable[[str], None]:
    """A progress over named stages that each take one call: ``done = stage_progress("export", [...])``,
    then ``done("quantize", tensors=30)`` after each stage logs ``export 1/3 stages | quantize done | ...``.
    The bar closes after the last stage."""
    bar = Progress(name, total=len(stages), unit="stage", first=len(stages), enabled=enabled, tty=tty, eta=False)
    t_last = [time.perf_counter()]

    def done(stage: str, **fields: Any) -> None:
        now = time.perf_counter()
        bar.update(stages.index(stage) + 1, stage=f"{stage} done", time=f"{now - t_last[0]:.2f}s", **fields)
        t_last[0] = now
        if bar.n >= len(stages):
            bar.close()

    return done


def final_line(run_dir: Path | str, summary: dict) -> str:
    """The one line that ends every run: its directory and its score (or why it has none)."""
    status = summary.get("status", "completed")
    bpb = summary.get("val_bpb")
    if isinstance(bpb, (int, float)) and status == "completed":
        size = summary.get("artifact_bytes")
        size_text = f", artifact {size:,} bytes" if isinstance(size, int) else ""
        return f"golf: run completed: val_bpb {bpb:.6f}{size_text}; run dir {run_dir}"
    if "estimated_artifact_bytes" in summary:  # a dry run writes nothing
        return f"golf: dry run: estimated artifact {summary['estimated_artifact_bytes']:,} bytes; no run dir written"
    error = summary.get("error")
    return f"golf: run {status}{': ' + str(error) if error else ''}; run dir {run_dir}"
