"""Standard and sliding-window evaluation over a validation token stream.

Both evaluators score next-token predictions of ``tokens[1:]`` given ``tokens[:-1]`` and accumulate
:class:`golf.eval.bpb.BPBAccumulator` sums, so their ``val_bpb`` uses identical byte accounting.

* Standard (official baseline ``eval_val``): non-overlapping windows of ``W`` tokens, split contiguously
  across ranks, ``batch_tokens`` tokens per forward over all ranks.
* Sliding (records since ``2026-03-19_SlidingWindowEval``, stride 64 in every seed): windows of ``W``
  tokens start every ``S`` tokens; the first window scores all its ``W`` targets, each later window only
  its last ``S``. The records re-scored the last targets several times at the tail; here the tail gets one
  extra window ending exactly at the last target that scores only what is still unscored, so every target
  is counted exactly once with at least ``W - S`` tokens of context.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import torch

from golf.dist import DistInfo
from golf.eval.bpb import BPBAccumulator, EvalResult
from golf.logging.progress import Progress

Forward = Callable[[torch.Tensor], torch.Tensor]  # ids [B, T] -> logits [B, T, V]


def sliding_windows(num_targets: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows of a sliding evaluation as ``(start, length, first_scored_offset)``.

    Window ``(s, n, o)`` feeds ``tokens[s : s+n]`` and scores the targets ``tokens[s+o+1 : s+n+1]``
    (positions ``o..n-1`` of its output). Targets are ``tokens[1 : num_targets+1]``; each is scored once.
    """
    if num_targets <= window:
        return [(0, num_targets, 0)]
    out = [(0, window, 0)]
    start = stride
    while start + window <= num_targets:
        out.append((start, window, window - stride))
        start += stride
    scored_to = out[-1][0] + window  # targets 1..scored_to are done
    if scored_to < num_targets:
        last = num_targets - window
        out.append((last, window, scored_to - last))
    return out


def split_range(n: int, rank: int, world: int) -> tuple[int, int]:
    return n * rank // world, n * (rank + 1) // world


def eval_progress(name: str, total: int, unit: str, dist: DistInfo, show: bool = True) -> Progress:
    """The progress of an evaluation on the main rank: a line for the first item, about every tenth of
    the work and the last item (shared by every evaluator; the running bpb is the main rank's share)."""
    return Progress(name, total=total, unit=unit, every=max(1, math.ceil(total / 10)), first=1,
                    enabled=show and dist.is_main)


@torch.no_grad()
def evaluate_standard(forward: Forward, tokens: torch.Tensor, luts, *, seq_len: int, batch_tokens: int,
                      dist: DistInfo, autocast=contextlib.nullcontext, progress: bool = True) -> EvalResult:
    """Non-overlapping ``seq_len`` windows over ``tokens`` (``len(tokens) - 1`` targets)."""
    device = dist.device
    total_seqs = (tokens.numel() - 1) // seq_len
    first, last = split_range(total_seqs, dist.rank, dist.world_size)
    per_batch = max(1, batch_tokens // (dist.world_size * seq_len))
    acc = BPBAccumulator(device)
    with eval_progress("eval standard", last - first, "window", dist, progress) as bar:
        for s in range(first, last, per_batch):
            e = min(s + per_batch, last)
            chunk = tokens[s * seq_len : e * seq_len + 1].to(device=device, dtype=torch.int64)
            x = chunk[:-1].view(-1, seq_len)  # [B, T]
            y = chunk[1:].view(-1, seq_len)
            with autocast():
                logits = forward(x)
            acc.add(logits.reshape(-1, logits.size(-1)), y.reshape(-1), x.reshape(-1), luts)
            bar.update(e - first, running_bpb=acc.running_bpb)
    return acc.result()


@torch.no_grad()
def score_windows(forward: Forward, tokens: torch.Tensor, luts, windows: list[tuple[int, int, int]],
                  acc: BPBAccumulator, *, batch_windows: int, device: torch.device,
                  autocast=contextlib.nullcontext, bar: Progress | None = None) -> list[tuple[int, int]]:
    """Score ``windows`` (as from :func:`sliding_windows`) into ``acc``, ``batch_windows`` per forward;
    ``bar`` (optional) advances by the windows scored, showing the running bpb.

    Returns the scored position spans ``[lo, hi)`` in window order, where position ``p`` is the
    prediction of target ``tokens[p + 1]`` (what :mod:`golf.eval.compliance` checks).
    """
    spans = []
    if not windows:
        return spans
    seq_len = max(w[1] for w in windows)
    positions = torch.arange(seq_len, device=device)
    for b in range(0, len(windows), batch_windows):
        group = windows[b : b + batch_windows]
        n = group[0][1]
        if any(w[1] != n for w in group):  # only the single short window of a tiny stream differs
            raise AssertionError("windows in one batch must have equal length")
        idx = torch.tensor([w[0] for w in group]).unsqueeze(1) + torch.arange(n + 1)  # [B, n+1]
        chunk = tokens[idx].to(device=device, dtype=torch.int64)
        x, y = chunk[:, :-1], chunk[:, 1:]
        with autocast():
            logits = forward(x)  # [B, n, V]
        offsets = torch.tensor([w[2] for w in group], device=device).unsqueeze(1)
        keep = positions[:n].unsqueeze(0) >= offsets  # [B, n] scored positions
        acc.add(logits[keep], y[keep], x[keep], luts)
        spans.extend((s + o, s + m) for s, m, o in group)
        if bar is not None:
            bar.update(bar.n + len(group), running_bpb=acc.running_bpb)
    return spans


def evaluate_sliding(forward: Forward, tokens: torch.Tensor, luts, *, seq_len: int, stride: int,
                     batch_windows: int, dist: DistInfo, autocast=contextlib.nullcontext,
                     progress: bool = True) -> EvalResult:
    """Sliding windows of ``seq_len`` every ``stride`` tokens; every target scored exactly once."""
    windows = sliding_windows(tokens.numel() - 1, seq_len, stride)
    first, last = split_range(len(windows), dist.rank, dist.world_size)
    acc = BPBAccumulator(dist.device)
    with eval_progress("eval sliding", last - first, "window", dist, progress) as bar:
        score_windows(forward, tokens, luts, windows[first:last], acc, batch_windows=batch_windows,
                      device=dist.device, autocast=autocast, bar=bar)
    return acc.result()


def evaluate(forward: Forward, tokens: torch.Tensor, luts, cfg, *, seq_len: int, dist: DistInfo,
             autocast=contextlib.nullcontext, kind: str | None = None, progress: bool = True) -> EvalResult:
    """Dispatch on ``kind`` (default ``cfg.kind``) with an :class:`golf.eval.config.EvalConfig`;
    ``progress=False`` keeps it quiet."""
    kind = kind or cfg.kind
    if cfg.max_tokens is not None:
        tokens = tokens[: cfg.max_tokens + 1]
    if kind == "standard":
        return evaluate_standard(forward, tokens, luts, seq_len=seq_len, batch_tokens=cfg.batch_tokens,
                                 dist=dist, autocast=autocast, progress=progress)
    return evaluate_sliding(forward, tokens, luts, seq_len=seq_len, stride=cfg.stride,
                            batch_windows=cfg.batch_windows, dist=dist, autocast=autocast, progress=progress)
