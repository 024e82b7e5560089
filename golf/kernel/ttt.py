"""Score-first test-time training (legal TTT), as in the 2026-04-09 record (PR #1493; spec §6.4).

The validation targets are cut into chunks of ``chunk_tokens`` positions (position ``p`` is the prediction
of ``tokens[p + 1]``). For each chunk, in order:

1. **score** its sliding windows (:func:`golf.kernel.evaluate.score_windows`, under ``no_grad``, windows
   split contiguously over ranks) into the running sums;
2. **then train** on the chunk (unless it is the last): its whole sequences of ``seq_len`` tokens from the
   chunk start (exactly positions just scored), split over ranks, for ``epochs`` passes; each pass is one
   optimizer step on the chunk's mean loss (micro-batches of ``batch_seqs`` accumulate, the gradient is
   summed over ranks), clipped to ``grad_clip``, with the lr of a cosine over the chunk index.

A window belongs to the chunk of its first scored position, so every position of chunk c is scored by
the time chunk c trains. :class:`ScoreLedger` asserts at run time what makes the score legal: every
target scored exactly once, and before any update whose loss uses it. Training happens on a deep copy of
the model: the caller's weights never change.

What adapts: ``adapt=all``, every parameter except those under the lab's frozen name prefixes
(``freeze_layers``; the record adapts all of them, the bf16 embedding included); ``adapt=lora``, the base
frozen and each chosen projection ``W`` given ``y = W x + (α/r)·B A x``, ``A`` [r, in] uniform in ±1/√in
from a fixed-seed generator, ``B`` [out, r] zero, so the adapted model starts equal to the base (LoRA, Hu
et al. 2021; LoRA TTT as in the 2026-03-17 record). SGD with momentum (buffers persist across chunks, as
in the record) or AdamW.

Deliberate differences from the record: the gradient is the chunk's exact mean over all ranks (the record
averages per-rank means, equal when ranks hold equally many sequences); chunks with no window of their
own still train; the window tail follows :func:`golf.kernel.evaluate.sliding_windows`.
"""

from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from golf.kernel.dist import all_reduce_
from golf.kernel.evaluate import bpb_result, eval_rank_span, score_windows, sliding_windows

if TYPE_CHECKING:
    from golf.eval.config import EvalConfig, TTTConfig

# LoRA target name -> the module path suffix of the projection it adapts
LORA_TARGETS = {"q": "attn.c_q", "k": "attn.c_k", "v": "attn.c_v", "o": "attn.proj",
                "up": "mlp.fc", "down": "mlp.proj", "head": "lm_head"}


def plan_chunks(num_targets: int, seq_len: int, stride: int, chunk_tokens: int, train_len: int) -> list:
    """Per chunk: ``(windows, (lo, hi) the positions they score, (lo, hi) trained on or None)``; the
    trained span is the chunk's whole ``train_len`` sequences from its start (None for the last chunk)."""
    n = -(-num_targets // chunk_tokens)
    owned = [[] for _ in range(n)]
    for w in sliding_windows(num_targets, seq_len, stride):
        owned[min((w[0] + w[2]) // chunk_tokens, n - 1)].append(w)
    seqs = [(min((c + 1) * chunk_tokens, num_targets) - c * chunk_tokens) // train_len for c in range(n)]
    return [(m, (m[0][0] + m[0][2], m[-1][0] + m[-1][1]) if m else (0, 0),
             (c * chunk_tokens, c * chunk_tokens + k * train_len) if k and c < n - 1 else None)
            for c, (m, k) in enumerate(zip(owned, seqs))]


class ScoreLedger:
    """How many times each target position was scored on any rank (closed chunks only)."""

    def __init__(self, num_targets: int, device):
        self.counts, self.device = torch.zeros(num_targets, dtype=torch.uint8), device

    def scored(self, lo: int, hi: int, spans: list) -> None:
        """Every rank scored its ``spans`` of the chunk whose windows score ``[lo, hi)`` (collective)."""
        local = torch.zeros(hi - lo, dtype=torch.int32)
        for a, b in spans:
            local[a - lo:b - lo] += 1
        self.counts[lo:hi] += all_reduce_(local.to(self.device)).cpu().to(torch.uint8)
        assert (self.counts[lo:hi] <= 1).all(), "a target was scored twice"

    def trained(self, lo: int, hi: int) -> None:
        assert (self.counts[lo:hi] == 1).all(), "training on a target before it was scored"

    def finish(self) -> None:
        assert (self.counts == 1).all(), "a target was not scored exactly once"


class LoRAAdapter(nn.Module):
    """The low-rank update ``(α/r)·B A x`` of one projection; ``B = 0`` at the start."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, generator):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.A = nn.Parameter(torch.empty(rank, in_features).uniform_(-bound, bound, generator=generator))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, x):
        return F.linear(F.linear(x, self.A), self.B) * self.scale  # [..., in] -> [..., r] -> [..., out]


def _lora_output(module, args, output):
    return output + module.lora(args[0])


def prepare_adaptation(model, t: TTTConfig, frozen=()) -> list:
    """Set up ``model`` (a private copy) for TTT; returns the parameters that train."""
    if t.adapt == "lora":
        model.requires_grad_(False)
        generator = torch.Generator().manual_seed(1493)
        suffixes = [LORA_TARGETS[k] for k in t.lora_targets]
        linears = [m for name, m in model.named_modules()
                   if isinstance(m, nn.Linear) and any(name == s or name.endswith("." + s) for s in suffixes)]
        for m in linears:  # in model order: the generator's draws follow it
            m.lora = LoRAAdapter(m.in_features, m.out_features, t.lora_rank, t.lora_alpha, generator)
            m.lora.to(m.weight.device)
            m.register_forward_hook(_lora_output)
        return [p for m in linears for p in m.lora.parameters()]
    return [p for n, p in model.named_parameters() if p.requires_grad_(not n.startswith(tuple(frozen))).requires_grad]


def chunk_lr(t: TTTConfig, chunk: int, num_chunks: int) -> float:
    """lr of ``chunk``: cosine from ``lr`` at chunk 0 to 0 at the last chunk (which does not train)."""
    if t.schedule == "constant":
        return t.lr
    return t.lr * 0.5 * (1.0 + math.cos(math.pi * chunk / max(num_chunks - 1, 1)))


def _ttt_sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _ttt_train(model, params, opt, t: TTTConfig, tokens, span, lr, L, ledger, dist, autocast) -> None:
    """``t.epochs`` optimizer steps on the whole sequences of ``span``, this rank's share of them."""
    lo, hi = span
    a, b = eval_rank_span((hi - lo) // L, dist)
    for g in opt.param_groups:
        g["lr"] = lr
    model.train()
    for p in params:  # every rank reduces every gradient, also one that holds no sequence here
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    for _ in range(t.epochs):
        opt.zero_grad(set_to_none=False)
        for s in range(a, b, t.batch_seqs):
            x0, x1 = lo + s * L, lo + min(s + t.batch_seqs, b) * L
            ledger.trained(x0, x1)
            w = tokens[x0:x1 + 1].to(device=dist.device, dtype=torch.int64)
            x, y = w[:-1].view(-1, L), w[1:].view(-1, L)  # [B, L]
            with autocast():
                logits = model(x)
            # summed over this micro-batch / all of the chunk's targets: the summed gradient is the mean's
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
            (loss / (hi - lo)).backward()
        for p in params:
            all_reduce_(p.grad)
        if t.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, t.grad_clip)
        opt.step()


def ttt_evaluate(model, forward, cfg: EvalConfig, sliding, compile_model, frozen, tokens, nbytes, seq_len,
                 dist, autocast, progress):
    """Score-first TTT of ``model`` (module doc); ``sliding``: the plain sliding evaluator, which scores
    ``model`` through ``forward`` first when ``ttt.sliding_first``."""
    t = cfg.ttt
    extra = {}
    if t.sliding_first:
        t0 = time.perf_counter()
        before = sliding(model, forward)
        extra = dict(sliding_val_loss=before.val_loss, sliding_val_bpb=before.val_bpb,
                     sliding_s=round(time.perf_counter() - t0, 3))
    model = copy.deepcopy(model)  # the copy is the only model that ever trains
    dev, n, L = dist.device, len(tokens) - 1, t.seq_len or seq_len
    chunks = plan_chunks(n, seq_len, cfg.stride, t.chunk_tokens, L)
    params = prepare_adaptation(model, t, frozen)
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=t.lr, betas=(t.momentum, t.beta2), weight_decay=t.weight_decay)
    # scoring compiled (on CUDA, as the record), training eager
    fwd = torch.compile(model, fullgraph=True, dynamic=False) if compile_model else model
    ledger = ScoreLedger(n, dev)
    sums = torch.zeros(3, dtype=torch.float64, device=dev)
    steps = 0
    _ttt_sync(dev)
    t0 = time.perf_counter()
    for c, (windows, (lo, hi), train) in enumerate(chunks):
        a, b = eval_rank_span(len(windows), dist)
        model.eval()
        score_windows(fwd, tokens, nbytes, windows[a:b], sums, cfg.batch_windows, dev, autocast)
        ledger.scored(lo, hi, [(s + o, s + m) for s, m, o in windows[a:b]])
        if train is not None and t.epochs > 0:
            _ttt_train(model, params, opt, t, tokens, train, chunk_lr(t, c, len(chunks)), L, ledger, dist, autocast)
            steps += t.epochs
        if c == 0:
            _ttt_sync(dev)
            estimate = (time.perf_counter() - t0) * len(chunks)
        if progress:
            progress("ttt", c + 1, len(chunks), sums)
    ledger.finish()
    _ttt_sync(dev)
    seconds = all_reduce_(torch.tensor([time.perf_counter() - t0], dtype=torch.float64, device=dev), "max").item()
    result = bpb_result(sums)
    result.extra = {**extra, "ttt_chunks": len(chunks), "ttt_steps": steps, "ttt_s": round(seconds, 3),
                    "ttt_estimate_s": round(estimate, 3)}
    if t.sliding_first:
        result.extra["ttt_gain_bpb"] = result.val_bpb - before.val_bpb
    return result
