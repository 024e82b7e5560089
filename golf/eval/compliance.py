"""Run-time proof that a score-first evaluation is legal.

The challenge accepts test-time training only if every target is scored exactly once and strictly
before any update whose loss used it. :class:`ScoreLedger` keeps, for every target position ``p``
(the prediction of ``tokens[p + 1]``), how many times it has been scored on any rank so far:

* after each chunk's scoring the ranks' counts over that chunk's span are all-reduced and added, and a
  position counted twice fails at once;
* before an update, every position whose target enters the loss must already count exactly once;
* at the end every position must count exactly once.

A violation raises :class:`ComplianceError`, so an illegal schedule can never report a score. An
optional ``on_event(kind, chunk, lo, hi)`` callback sees every scored window span and every trained
sequence (``kind`` is ``"score"`` or ``"train"``), which the tests use to check the order of events.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from golf.dist import all_reduce_

Event = Callable[[str, int, int, int], None]


class ComplianceError(AssertionError):
    """A target scored twice, never, or trained on before it was scored."""


class ScoreLedger:
    def __init__(self, num_targets: int, device: torch.device, on_event: Event | None = None):
        self.counts = torch.zeros(num_targets, dtype=torch.uint8)  # over all ranks, closed chunks only
        self.device = device
        self.on_event = on_event
        self._pending: list[tuple[int, int]] = []  # this rank's spans of the chunk being scored

    def scored(self, chunk: int, spans: list[tuple[int, int]]) -> None:
        """This rank scored the positions ``[lo, hi)`` of each span while scoring ``chunk``."""
        for lo, hi in spans:
            if self.on_event is not None:
                self.on_event("score", chunk, lo, hi)
            self._pending.append((lo, hi))

    def close_chunk(self, chunk: int, lo: int, hi: int) -> None:
        """Every rank has scored ``chunk``, whose windows score positions within ``[lo, hi)``.

        Collective: all ranks call it with the same span.
        """
        local = torch.zeros(max(hi - lo, 0), dtype=torch.int32)
        for a, b in self._pending:
            if a < lo or b > hi:
                raise ComplianceError(f"chunk {chunk}: scored positions [{a}, {b}) outside its span [{lo}, {hi})")
            local[a - lo : b - lo] += 1
        self._pending.clear()
        total = all_reduce_(local.to(self.device)).cpu()
        merged = self.counts[lo:hi].to(torch.int32) + total
        if bool((merged > 1).any()):
            p = lo + int((merged > 1).nonzero()[0])
            raise ComplianceError(f"chunk {chunk}: target position {p} scored {int(merged[p - lo])} times")
        self.counts[lo:hi] = merged.to(torch.uint8)

    def trained(self, chunk: int, lo: int, hi: int) -> None:
        """An update of ``chunk`` is about to use the targets of positions ``[lo, hi)``."""
        if self.on_event is not None:
            self.on_event("train", chunk, lo, hi)
        if lo < 0 or hi > self.counts.numel():
            raise ComplianceError(f"chunk {chunk}: training positions [{lo}, {hi}) outside the stream")
        unscored = (self.counts[lo:hi] != 1).nonzero()
        if unscored.numel():
            raise ComplianceError(f"chunk {chunk}: training on target position {lo + int(unscored[0])} "
                                  "before it was scored")

    def finish(self) -> None:
        """Every position scored exactly once."""
        if self._pending:
            raise ComplianceError("scored spans were never closed into a chunk")
        if not bool((self.counts == 1).all()):
            p = int((self.counts != 1).nonzero()[0])
            raise ComplianceError(f"target position {p} scored {int(self.counts[p])} times (expected once)")
