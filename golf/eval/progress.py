"""The progress display of an evaluation: the hook the kernel's evaluators call (:mod:`golf.kernel.evaluator`).

The kernel calls ``hook(kind, done, total, sums)`` after each batch of windows (``standard``,
``sliding``) or each TTT chunk (``ttt``), with this rank's running float64 sums [nll, targets, bytes].
The hook shows it as a :class:`golf.logging.progress.Progress` named ``eval <kind>`` on the main rank: a
line for the first two items, about every tenth of the work and the last one, with the running bpb of
the main rank's share (read only when a line is due). A bar starts at the first call, so the time left
is estimated from the second line on (from the second item's time: an early estimate for a long TTT).
"""

from __future__ import annotations

import math

import torch

from golf.logging.progress import Progress

UNITS = {"ttt": "chunk"}  # what one step of each kind counts (default: window)


def running_bpb(sums: torch.Tensor) -> float:
    nll, _, nbytes = sums.tolist()
    return nll / (math.log(2.0) * nbytes) if nbytes else math.nan


def eval_progress(dist, show: bool = True):
    """A progress hook for the evaluators of a run on ``dist`` (shown on the main rank only)."""
    bars: dict[str, Progress] = {}

    def hook(kind: str, done: int, total: int, sums: torch.Tensor) -> None:
        bar = bars.get(kind)
        first = bar is None  # the bar starts at the first batch: its time is known from the second one on
        if first:
            bar = bars[kind] = Progress(f"eval {kind}", total=total, unit=UNITS.get(kind, "window"), start=done,
                                        every=max(1, math.ceil(total / 10)), first=1, enabled=show and dist.is_main)
        bar.update(done, running_bpb=lambda: running_bpb(sums), left="?" if first and done < total else None)
        if done >= total:
            bar.close()
            del bars[kind]

    return hook
