"""Shared pieces of the TTT tests: a TTT eval config on tiny windows and an evaluator factory."""

from __future__ import annotations

import contextlib

import torch

from golf.dist import DistInfo
from golf.eval import EvalConfig, TTTConfig
from golf.kernel.evaluator import build_evaluator
from golf.kernel.ttt import ScoreLedger


def ttt_config(seq_len=32, stride=8, chunk=64, batch_windows=4, seq_len_ttt=16, **ttt) -> EvalConfig:
    settings = dict(chunk_tokens=chunk, epochs=2, lr=0.05, seq_len=seq_len_ttt, batch_seqs=2, sliding_first=False)
    settings.update(ttt)
    return EvalConfig(name="ttt", kind="ttt", seq_len=seq_len, stride=stride, batch_windows=batch_windows,
                      ttt=TTTConfig(**settings))


def evaluator(cfg: EvalConfig, tokens, nbytes, *, rank=0, world=1, on_event=None):
    """The evaluator of ``cfg``; with ``on_event``, a callable that runs it watching its ledger."""
    dist = DistInfo(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
    ev = build_evaluator(cfg, tokens=tokens, nbytes=nbytes, seq_len=cfg.seq_len, dist=dist)
    if on_event is None:
        return ev

    def watched(model):
        with watch_ledger(on_event):
            return ev(model)

    return watched


@contextlib.contextmanager
def watch_ledger(on_event):
    """Inside, every call of :class:`golf.kernel.ttt.ScoreLedger` is also reported to ``on_event`` as
    ``(kind, chunk, lo, hi)``, in order: ``("score", c, lo, hi)`` for each span this rank scored in chunk
    ``c`` (one ``scored`` call per chunk, counted from 0), ``("train", c, lo, hi)`` before each update that
    uses the targets of ``[lo, hi)``. The ledger's own checks run as usual."""
    scored, trained = ScoreLedger.scored, ScoreLedger.trained
    chunk = [-1]

    def watched_scored(self, lo, hi, spans):
        chunk[0] += 1
        for a, b in spans:
            on_event("score", chunk[0], a, b)
        scored(self, lo, hi, spans)

    def watched_trained(self, lo, hi):
        on_event("train", chunk[0], lo, hi)
        trained(self, lo, hi)

    ScoreLedger.scored, ScoreLedger.trained = watched_scored, watched_trained
    try:
        yield
    finally:
        ScoreLedger.scored, ScoreLedger.trained = scored, trained


class EventLog:
    """Records every (kind, chunk, lo, hi) event of a :class:`golf.kernel.ttt.ScoreLedger`, in order."""

    def __init__(self):
        self.events: list[tuple[str, int, int, int]] = []

    def __call__(self, kind, chunk, lo, hi):
        self.events.append((kind, chunk, lo, hi))


def check_score_first(events: list[tuple[str, int, int, int]], num_targets: int, chunk_tokens: int) -> None:
    """Every target scored exactly once, and each training event only uses targets scored earlier.

    ``events`` are in the order they happened (ranks merged chunk by chunk: within one chunk every
    rank scores before any rank trains, which the ledger's collective enforces).
    """
    scored_at = [None] * num_targets  # event index of the scoring of each position
    last_chunk = -(-num_targets // chunk_tokens) - 1
    for i, (kind, chunk, lo, hi) in enumerate(events):
        if kind == "score":
            for p in range(lo, hi):
                assert scored_at[p] is None, f"position {p} scored twice"
                scored_at[p] = i
        else:
            assert chunk != last_chunk, "the last chunk must not train"
            assert chunk * chunk_tokens <= lo < hi <= (chunk + 1) * chunk_tokens, "trains outside its chunk"
            for p in range(lo, hi):
                assert scored_at[p] is not None and scored_at[p] < i, f"position {p} trained before scored"
    assert all(s is not None for s in scored_at), "a position was never scored"


def merge_by_chunk(per_rank: list[list[tuple[str, int, int, int]]]) -> list[tuple[str, int, int, int]]:
    """Interleave ranks' events as the collectives order them: per chunk, all scoring, then all training."""
    merged = []
    chunks = sorted({e[1] for events in per_rank for e in events})
    for c in chunks:
        for kind in ("score", "train"):
            for events in per_rank:
                merged.extend(e for e in events if e[1] == c and e[0] == kind)
    return merged
