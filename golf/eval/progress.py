"""The progress display of an evaluation: the hook the kernel's evaluators call (:mod:`golf.kernel.evaluator`).

The kernel calls ``hook(kind, done, total, sums)`` after each batch of windows (``standard``,
``sliding``) or each TTT chunk (``ttt``), with this rank's running float64 sums [nll, targets, bytes].
The hook shows it as a :class:`golf.logging.progress.Progress` named ``eval <kind>`` on the main rank: a
line for the first two items, about every tenth of the work and the last one, with the running bpb of
the main rank's share (read only when a line is due). A bar starts at the first call, so the time left
is estimated from the second line on (from the second item's time: an early estimate for a long TTT).

:class:`EvalBudget` holds the run's final evaluation against ``eval.budget_s``: started when the artifact
is written (what counts: decompression, dequantization, any pass over validation data, scoring, TTT),
it projects the evaluation's time at the first batch of each scorer (the time so far plus that scorer's
first item times its count: after the sliding pass, TTT's projection is made at its first chunk), says
when a projection exceeds the budget, and gives the summary's ``eval_*`` fields.
"""

from __future__ import annotations

import logging
import math
import time

import torch

from golf.logging.progress import Progress

log = logging.getLogger("golf")
UNITS = {"ttt": "chunk", "phased": "batch", "warm-up": "pass"}  # what one step of each kind counts (default: window)


def running_bpb(sums: torch.Tensor) -> float:
    nll, _, nbytes = sums.tolist()
    return nll / (math.log(2.0) * nbytes) if nbytes else math.nan


class EvalBudget:
    """The final evaluation's clock against ``budget_s`` seconds (None: no budget), on the main rank."""

    def __init__(self, budget_s: float | None, clock=time.perf_counter):
        self.budget_s, self.clock = budget_s, clock
        self.t0 = self.mark = self.projected = None

    def start(self) -> None:
        """The final evaluation begins (the artifact is written; its load and scoring follow)."""
        self.t0 = self.mark = self.clock()

    def first_item(self, kind: str, done: int, total: int) -> None:
        """A scorer's first item is done: project the evaluation's seconds, say if over the budget."""
        if self.t0 is None:
            return
        now = self.clock()
        projected = (self.mark - self.t0) + (now - self.mark) * total / max(done, 1)
        self.projected = max(self.projected or 0.0, projected)
        if self.budget_s is None:
            log.info("eval %s: projected evaluation time %.1f s", kind, projected)
        elif projected > self.budget_s:
            log.warning("eval %s: projected evaluation time %.1f s exceeds eval.budget_s=%g (the challenge "
                        "gives the evaluation 600 s on 8xH100)", kind, projected, self.budget_s)
        else:
            log.info("eval %s: projected evaluation time %.1f s of eval.budget_s=%g", kind, projected,
                     self.budget_s)

    def closed(self) -> None:
        """A scorer finished: the next one's share starts now."""
        if self.t0 is not None:
            self.mark = self.clock()

    def fields(self, eval_s: float) -> dict:
        """The summary's budget fields for a final evaluation that took ``eval_s`` seconds."""
        return {"eval_s": eval_s, "eval_budget_s": self.budget_s, "eval_projected_s": self.projected,
                "eval_over_budget": self.budget_s is not None and eval_s > self.budget_s}


def eval_progress(dist, show: bool = True, budget: EvalBudget | None = None):
    """A progress hook for the evaluators of a run on ``dist`` (shown on the main rank only); ``budget``:
    the final evaluation's clock, told of each scorer's first item and end."""
    bars: dict[str, Progress] = {}

    def hook(kind: str, done: int, total: int, sums: torch.Tensor) -> None:
        bar = bars.get(kind)
        first = bar is None  # the bar starts at the first batch: its time is known from the second one on
        if first and budget is not None and dist.is_main:
            budget.first_item(kind, done, total)
        if first:
            bar = bars[kind] = Progress(f"eval {kind}", total=total, unit=UNITS.get(kind, "window"), start=done,
                                        every=max(1, math.ceil(total / 10)), first=1, enabled=show and dist.is_main)
        bar.update(done, running_bpb=lambda: running_bpb(sums), left="?" if first and done < total else None)
        if done >= total:
            bar.close()
            del bars[kind]
            if budget is not None and dist.is_main:
                budget.closed()

    return hook
