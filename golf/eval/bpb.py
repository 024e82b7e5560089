"""Bits per byte, exactly as the challenge defines it.

``val_bpb = Σ nll / (ln 2 · Σ bytes)`` over every scored target, where a target's bytes come from the
tokenizer's byte tables (:class:`golf.data.tokenizer.ByteLUTs`): the piece's UTF-8 length without its
leading "▁", plus one byte for that "▁" unless the previous token is a boundary (control/unknown) token.
BOS targets count as tokens with 0 bytes. Sums are float64 and all-reduced across ranks, so any split of
the targets over windows or ranks gives the same totals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from golf.dist import all_reduce_


@dataclass
class EvalResult:
    val_loss: float  # mean natural-log cross-entropy per target
    val_bpb: float
    val_tokens: int  # scored targets
    val_bytes: int  # bytes those targets stand for
    # what a particular evaluator adds (TTT: chunks, seconds, the sliding score before adaptation, ...)
    extra: dict = field(default_factory=dict)

    def to_dict(self, prefix: str = "") -> dict:
        core = dict(val_loss=self.val_loss, val_bpb=self.val_bpb, val_tokens=self.val_tokens,
                    val_bytes=self.val_bytes, **self.extra)
        return {f"{prefix}{k}": v for k, v in core.items()}


class BPBAccumulator:
    """Float64 sums of nll, targets and bytes on one rank; :meth:`result` reduces over ranks."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(3, dtype=torch.float64, device=device)  # nll, tokens, bytes

    def add(self, logits: torch.Tensor, targets: torch.Tensor, prev: torch.Tensor, luts) -> None:
        """Score ``targets`` [N] given ``logits`` [N, V] and the tokens before them ``prev`` [N]."""
        nll = F.cross_entropy(logits.float(), targets, reduction="none")
        self.sums[0] += nll.double().sum()
        self.sums[1] += targets.numel()
        self.sums[2] += luts.target_bytes(prev, targets).double().sum()

    def running_bpb(self) -> float:
        """This rank's bits per byte so far (no reduction over ranks; for progress display only)."""
        nll, _, nbytes = (float(v) for v in self.sums.cpu())
        return nll / (math.log(2.0) * nbytes) if nbytes else math.nan

    def result(self) -> EvalResult:
        totals = all_reduce_(self.sums.clone())
        nll, tokens, nbytes = (float(v) for v in totals.cpu())
        if tokens == 0 or nbytes == 0:
            raise ValueError("evaluation scored no targets (is the validation set shorter than one window?)")
        return EvalResult(
            val_loss=nll / tokens,
            val_bpb=nll / (math.log(2.0) * nbytes),
            val_tokens=int(tokens),
            val_bytes=int(nbytes),
        )
