"""val_bpb, exactly as the challenge defines it, with standard or sliding windows.

``val_bpb = Σ nll / (ln 2 · Σ bytes)`` over every scored target, target ``t``'s bytes ``nbytes[t]``:
an int32 tensor aligned with ``tokens`` (:func:`golf.kernel.data.validation_bytes`: from the piece tables,
or from the byte sidecar of CaseOps data), the one byte source of every evaluator. BOS targets count as
tokens worth 0 bytes. The sums (nll, targets, bytes) are float64 and all-reduced over ranks, so any split
of the targets over windows or ranks gives the same totals.

* **Standard** (the official baseline's ``eval_val``): non-overlapping windows of ``seq_len`` tokens, split
  contiguously over ranks, ``batch_tokens`` tokens per forward over all ranks.
* **Sliding** (records since ``2026-03-19_SlidingWindowEval``, stride 64 in every seed): windows of ``W``
  tokens every ``S``; the first scores all its ``W`` targets, each later one its last ``S``. The records
  re-scored the last targets at the tail; here the tail gets one window ending at the last target that
  scores only what is still unscored, so every target counts once, with at least ``W - S`` tokens of context.

Score-first TTT (:mod:`golf.kernel.ttt`) scores with the same sliding windows; the evaluator objects the
run holds are in :mod:`golf.kernel.evaluator`. ``progress`` (optional) is the lab's display hook, called
``progress(kind, done, total, sums)`` after each batch with this rank's running sums.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from golf.kernel.dist import all_reduce_


@dataclass
class EvalResult:
    val_loss: float  # mean natural-log cross-entropy per target
    val_bpb: float
    val_tokens: int  # scored targets
    val_bytes: int  # bytes those targets stand for
    # what a particular evaluator adds (TTT: chunks, steps, seconds, the sliding score before adaptation)
    extra: dict = field(default_factory=dict)

    def to_dict(self, prefix: str = "") -> dict:
        return {prefix + k: v for k, v in {**self.__dict__, **self.extra}.items() if k != "extra"}


def bpb_add(sums: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, y_bytes: torch.Tensor) -> None:
    """Add targets ``y`` [N] given ``logits`` [N, V] and their bytes ``y_bytes`` [N] to ``sums``."""
    sums[0] += F.cross_entropy(logits.float(), y, reduction="none").double().sum()
    sums[1] += y.numel()
    sums[2] += y_bytes.double().sum()


def bpb_result(sums: torch.Tensor) -> EvalResult:
    """The result of every rank's ``sums`` (collective)."""
    nll, n, nbytes = all_reduce_(sums.clone()).tolist()
    return EvalResult(nll / n, nll / (math.log(2.0) * nbytes), int(n), int(nbytes))


def eval_rank_span(n: int, dist) -> tuple[int, int]:
    """This rank's contiguous share ``[a, b)`` of ``n`` items."""
    return n * dist.rank // dist.world_size, n * (dist.rank + 1) // dist.world_size


@torch.no_grad()
def evaluate_standard(forward, tokens, nbytes, seq_len, batch_tokens, dist, autocast=contextlib.nullcontext,
                      progress=None) -> EvalResult:
    """Non-overlapping ``seq_len`` windows over ``tokens`` (``len(tokens) - 1`` targets)."""
    a, b = eval_rank_span((len(tokens) - 1) // seq_len, dist)
    per = max(1, batch_tokens // (dist.world_size * seq_len))
    sums = torch.zeros(3, dtype=torch.float64, device=dist.device)
    for s in range(a, b, per):
        e = min(s + per, b)
        chunk = tokens[s * seq_len:e * seq_len + 1].to(device=dist.device, dtype=torch.int64)
        x, y = chunk[:-1].view(-1, seq_len), chunk[1:].view(-1, seq_len)  # [B, T]
        with autocast():
            logits = forward(x)
        bpb_add(sums, logits.reshape(-1, logits.size(-1)), y.reshape(-1), nbytes[s * seq_len + 1:e * seq_len + 1])
        if progress:
            progress("standard", e - a, b - a, sums)
    return bpb_result(sums)


def sliding_windows(num_targets: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows of a sliding evaluation as ``(start, length, first scored offset)``: window ``(s, n, o)``
    feeds ``tokens[s:s+n]`` and scores the targets ``tokens[s+o+1:s+n+1]``; targets are
    ``tokens[1:num_targets+1]``, each scored once."""
    if num_targets <= window:
        return [(0, num_targets, 0)]
    out = [(0, window, 0)] + [(s, window, window - stride) for s in range(stride, num_targets - window + 1, stride)]
    done = out[-1][0] + window  # targets 1..done are scored
    if done < num_targets:
        out.append((num_targets - window, window, done - num_targets + window))
    return out


@torch.no_grad()
def score_windows(forward, tokens, nbytes, windows, sums, batch_windows, device, autocast=contextlib.nullcontext,
                  progress=None) -> None:
    """Score ``windows`` (as :func:`sliding_windows`, all of one length) into ``sums``, ``batch_windows``
    per forward."""
    for b in range(0, len(windows), batch_windows):
        group = windows[b:b + batch_windows]
        n = group[0][1]
        at = torch.tensor([w[0] for w in group])[:, None] + torch.arange(n + 1)  # [B, n+1] stream positions
        chunk = tokens[at].to(device=device, dtype=torch.int64)
        x, y = chunk[:, :-1], chunk[:, 1:]
        with autocast():
            logits = forward(x)  # [B, n, V]
        keep = torch.arange(n, device=device) >= torch.tensor([w[2] for w in group], device=device)[:, None]
        bpb_add(sums, logits[keep], y[keep], nbytes[at[:, 1:]].to(device)[keep])
        if progress:
            progress("sliding", b + len(group), len(windows), sums)


def evaluate_sliding(forward, tokens, nbytes, seq_len, stride, batch_windows, dist,
                     autocast=contextlib.nullcontext, progress=None) -> EvalResult:
    """Sliding windows of ``seq_len`` every ``stride`` tokens, split contiguously over ranks."""
    windows = sliding_windows(len(tokens) - 1, seq_len, stride)
    a, b = eval_rank_span(len(windows), dist)
    sums = torch.zeros(3, dtype=torch.float64, device=dist.device)
    score_windows(forward, tokens, nbytes, windows[a:b], sums, batch_windows, dist.device, autocast, progress)
    return bpb_result(sums)
