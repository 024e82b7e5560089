"""Score-first test-time training (legal TTT), as in the 2026-04-09 record (PR #1493; spec §6.4).

The validation targets are cut into chunks of ``chunk_tokens`` positions. For each chunk, in order:

1. **score** its sliding windows (the exact scorer of :func:`golf.eval.windows.score_windows`, under
   ``no_grad``, windows split contiguously across ranks) into the running loss/target/byte sums;
2. **then train** on the chunk (unless it is the last): its whole sequences of ``seq_len`` tokens
   (targets ``tokens[c·C+1 : ...]``, exactly the positions just scored), split across ranks, for
   ``epochs`` passes; each pass is one optimizer step on the whole chunk's mean loss (micro-batches of
   ``batch_seqs`` accumulate; the gradient is summed over ranks), clipped to ``grad_clip``, with the lr
   of a cosine over the chunk index.

A window belongs to the chunk of its first scored position, so a window whose scored span crosses a
chunk boundary is scored with the earlier chunk; every position of chunk c is therefore scored by the
time chunk c trains. :class:`golf.eval.compliance.ScoreLedger` asserts this at run time, together with
once-only scoring. Training happens on a deep copy of the model: the caller's weights never change.

Differences from the record, each deliberate: the gradient is the chunk's exact mean over all ranks
(the record averages per-rank means, the same thing when ranks hold equally many sequences); chunks
with no window of their own still train (their positions were scored by the previous chunk's last
window); the window tail follows :func:`golf.eval.windows.sliding_windows`.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from golf.dist import all_reduce_
from golf.eval.adapt import build_ttt_optimizer, chunk_lr, prepare_adaptation
from golf.eval.bpb import BPBAccumulator, EvalResult
from golf.eval.compliance import Event, ScoreLedger
from golf.eval.config import check_chunk_holds_a_sequence
from golf.eval.evaluator import Evaluator, SlidingEvaluator, scoring_mode
from golf.eval.windows import Forward, eval_progress, score_windows, sliding_windows, split_range

log = logging.getLogger("golf")


@dataclass(frozen=True)
class Chunk:
    index: int
    windows: list[tuple[int, int, int]]  # (start, length, first scored offset), as sliding_windows
    span: tuple[int, int]  # positions its windows score: [lo, hi) (empty when it has no window)
    train: tuple[int, int] | None  # positions trained on: whole sequences from the chunk start; None = last


def plan_chunks(num_targets: int, seq_len: int, stride: int, chunk_tokens: int, train_len: int) -> list[Chunk]:
    """The chunks of a TTT evaluation over ``num_targets`` targets (positions ``0 .. num_targets-1``)."""
    windows = sliding_windows(num_targets, seq_len, stride)
    num_chunks = -(-num_targets // chunk_tokens)
    owned: list[list[tuple[int, int, int]]] = [[] for _ in range(num_chunks)]
    for w in windows:
        owned[min((w[0] + w[2]) // chunk_tokens, num_chunks - 1)].append(w)
    chunks = []
    for c, mine in enumerate(owned):
        span = (mine[0][0] + mine[0][2], mine[-1][0] + mine[-1][1]) if mine else (0, 0)
        train = None
        if c < num_chunks - 1:
            lo = c * chunk_tokens
            seqs = (min(lo + chunk_tokens, num_targets) - lo) // train_len
            train = (lo, lo + seqs * train_len) if seqs else None
        chunks.append(Chunk(c, mine, span, train))
    return chunks


class TTTEvaluator(Evaluator):
    """``eval.kind=ttt``: score each chunk, then adapt a private copy of the model on it."""

    kind = "ttt"

    def __init__(self, cfg, setup, on_event: Event | None = None):
        super().__init__(cfg, setup)
        self.ttt = cfg.ttt
        self.train_len = self.ttt.seq_len or setup.seq_len
        check_chunk_holds_a_sequence(self.ttt, setup.seq_len)
        self.on_event = on_event  # tests: sees every (score | train, chunk, lo, hi) event

    def plain(self) -> Evaluator:
        return SlidingEvaluator(self.cfg, self.setup)  # same setup: shares the registered forwards

    def __call__(self, model: nn.Module, *, forward: Forward | None = None) -> EvalResult:
        extra = {}
        if self.ttt.sliding_first:
            t0 = time.perf_counter()
            before = self.plain()(model, forward=forward)
            extra.update(sliding_val_loss=before.val_loss, sliding_val_bpb=before.val_bpb,
                         sliding_s=round(time.perf_counter() - t0, 3))
            log.info("ttt: sliding val_bpb before adaptation %.6f", before.val_bpb)
        adapted = copy.deepcopy(model)  # the copy is the only model that ever trains
        try:
            result, stats = self._adapt_and_score(adapted)
        finally:
            del adapted
        result.extra.update(extra, **stats)
        if extra:
            result.extra["ttt_gain_bpb"] = result.val_bpb - before.val_bpb
        return result

    def _adapt_and_score(self, model: nn.Module) -> tuple[EvalResult, dict]:
        s, t = self.setup, self.ttt
        device, dist = s.dist.device, s.dist
        num_targets = s.tokens.numel() - 1
        chunks = plan_chunks(num_targets, s.seq_len, self.cfg.stride, t.chunk_tokens, self.train_len)
        params = prepare_adaptation(model, t)
        optimizer = build_ttt_optimizer(params, t)
        # scoring compiled (on CUDA, as the record), training eager; not cached: the copy dies with this call
        forward = torch.compile(model, fullgraph=True, dynamic=False) if s.compile_model else model
        ledger = ScoreLedger(num_targets, device, self.on_event)
        acc = BPBAccumulator(device)
        steps, chunk_losses = 0, []
        log.info("ttt: %d chunks of %d tokens, %d epochs, lr %g (%s), %s, adapting %d tensors (%d params)",
                 len(chunks), t.chunk_tokens, t.epochs, t.lr, t.schedule, t.optimizer, len(params),
                 sum(p.numel() for p in params))
        _sync(device)
        t0 = time.perf_counter()
        estimate = None
        with eval_progress("eval ttt", len(chunks), "chunk", dist) as bar:
            for chunk in chunks:
                first, last = split_range(len(chunk.windows), dist.rank, dist.world_size)
                with scoring_mode(model):
                    spans = score_windows(forward, s.tokens, s.luts, chunk.windows[first:last], acc,
                                          batch_windows=self.cfg.batch_windows, device=device, autocast=s.autocast)
                ledger.scored(chunk.index, spans)
                ledger.close_chunk(chunk.index, *chunk.span)
                if chunk.train is not None and t.epochs > 0:
                    chunk_losses.append(self._train_chunk(model, params, optimizer, chunk, ledger, len(chunks)))
                    steps += t.epochs
                fields = {}
                if bar.due(chunk.index + 1):  # the same answer on every rank: the reduction below is collective
                    if chunk.index == 0:
                        _sync(device)
                        estimate = (time.perf_counter() - t0) * len(chunks)
                        log.info("ttt: first chunk took %.2f s; estimated %.0f s for all %d chunks",
                                 estimate / len(chunks), estimate, len(chunks))
                    sums = all_reduce_(acc.sums.clone()).tolist()
                    fields = dict(running_bpb=sums[0] / (math.log(2.0) * sums[2]) if sums[2] else math.nan,
                                  train_loss=chunk_losses[-1] if chunk_losses else None)
                bar.update(chunk.index + 1, **fields)
        ledger.finish()
        _sync(device)
        elapsed = torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=device)
        seconds = float(all_reduce_(elapsed, "max"))  # the slowest rank's time, the same on every rank
        result = acc.result()
        if not math.isfinite(result.val_bpb):
            raise FloatingPointError(f"ttt evaluation produced val_bpb={result.val_bpb}")
        stats = dict(ttt_chunks=len(chunks), ttt_steps=steps, ttt_s=round(seconds, 3),
                     ttt_estimate_s=round(estimate, 3) if estimate is not None else None)
        log.info("ttt: val_bpb %.6f after %d chunks, %d steps, %.1f s", result.val_bpb, len(chunks), steps, seconds)
        return result, stats

    def _train_chunk(self, model, params, optimizer, chunk: Chunk, ledger: ScoreLedger, num_chunks: int) -> float:
        s, t = self.setup, self.ttt
        device, L = s.dist.device, self.train_len
        lo, hi = chunk.train
        seqs = (hi - lo) // L
        first, last = split_range(seqs, s.dist.rank, s.dist.world_size)
        for group in optimizer.param_groups:
            group["lr"] = chunk_lr(t, chunk.index, num_chunks)
        model.train()
        total = torch.zeros((), dtype=torch.float64, device=device)
        for p in params:  # every rank reduces every gradient, also one that holds no sequence this chunk
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        for _ in range(t.epochs):
            optimizer.zero_grad(set_to_none=False)
            for b in range(first, last, t.batch_seqs):
                e = min(b + t.batch_seqs, last)
                a, z = lo + b * L, lo + e * L
                ledger.trained(chunk.index, a, z)
                window = s.tokens[a : z + 1].to(device=device, dtype=torch.int64)
                x, y = window[:-1].view(-1, L), window[1:].view(-1, L)  # [B, L]
                with s.autocast():
                    logits = model(x)
                # sum over this micro-batch / all of the chunk's targets: the summed gradient is the mean's
                loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
                (loss / (hi - lo)).backward()
                total += loss.detach().double()
            for p in params:
                all_reduce_(p.grad)
            if t.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
            optimizer.step()
        mean = float(all_reduce_(total)) / (t.epochs * (hi - lo))
        if not math.isfinite(mean):
            raise FloatingPointError(f"ttt training loss is {mean} on chunk {chunk.index}")
        return mean


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
