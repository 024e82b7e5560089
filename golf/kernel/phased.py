"""Phased score-first LoRA test-time training per document (PR #1855, from the #1610 -> #1626 -> #1736
lineage; frontier-1855 spec §6.3-6.5, traps 11-13).

* **Documents** (:func:`find_docs`): a document runs from a BOS (or the stream start) through the next
  document's BOS, its last target, so every target of the stream is in exactly one document.
* **Batches** (:func:`plan_batches`): the documents sorted by length (ties in stream order), cut into
  batches of ``batch_docs``; the queue is the batches by descending longest document.
* **Pauses and ranks** (:func:`plan_ranks`): phase ``p`` pauses once the queue's first ``K_p`` batches are
  scored, ``K_p`` the fewest holding ``⌊P(p+1)/phases⌋`` documents. Between pauses, batches go to ranks
  statically (greedy, longest first, by the tokens their forwards compute), so the score does not depend
  on timing and ranks may sit on any number of nodes (the record claims batches through a lock file in
  ``/tmp`` and pauses wherever the counter crosses a boundary). The balance is reported.
* **Per-document LoRA** (:class:`DocLoRA`, :func:`install_taps`): per block application (a looped block
  gets one set per application), ``(α/r)·(x Aᵀ) Bᵀ`` with ``A`` [docs, r, in], ``B`` [docs, out, r]: Q, K,
  V added to ``W n`` (before q/k RMSNorm and RoPE), O and MLP as bypasses fed by the normalised block
  inputs of the attention and the MLP, added to their outputs, and the head's added to the logits before
  the soft-cap. The base model's modules are wrapped in its private copy, so model code carries no hook.
  ``A ~ U(±1/√in)``, ``B = 0``: every batch starts from the base model's predictions. Per batch, ``B``
  is zeroed and AdamW starts afresh; ``A`` stays (``reset=b``, the record) or is drawn again from a seed
  of the batch (``reset=ab``: then the score is the same on any number of ranks).
* **Chunks** (:func:`chunk_rows`): chunk ``ci`` of a document scores its targets ``[ci·c, min((ci+1)·c,
  n))`` in one row of its last ``window`` tokens; the same forward is scored (float64 sums, bytes from
  ``nbytes``) and then trained on (the sum over documents of each chunk's mean loss, one step) unless it
  is the document's last chunk.
* **Global phases** (:func:`phase_docs`, :func:`global_sgd`): at a pause, the shortest ``⌊P(p+1)/phases⌋``
  scored documents (each with its trailing BOS) are concatenated and the evaluator's copy of the base
  trains on them: SGD with momentum, cosine lr over chunks of ``global_chunk_tokens``, sequences of
  ``global_seq_len`` split over ranks (the exact mean gradient), clipped; the last chunk is skipped. The
  model's own attention runs there (document-aware where ``arch.attention.document`` is on). A fresh
  adapter set follows.
* **Compliance** (:class:`DocLedger`): asserted as it runs: a target is scored once, a chunk trains only
  on targets this rank has scored, a phase only on documents every target of which is scored, and at the
  end every target was scored exactly once over all ranks.
* **Time**: a compile warm-up on random tokens (only when compiling) precedes the timed part; ``ttt_s``
  is the timed part (what the record counts), ``ttt_warmup_s`` apart, ``ttt_projected_s`` the first
  batch (the longest) times the batch count, ``ttt_phase<p>_s`` each pause.
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
from golf.kernel.evaluate import bpb_result, eval_rank_span

if TYPE_CHECKING:
    from golf.eval.config import PhasedConfig
    from golf.model.config import ArchConfig


def find_docs(tokens, bos: int) -> list:
    """``(start, length)`` of each document of ``tokens``, one without a target left out."""
    s = torch.nonzero(tokens == bos).flatten().tolist()
    if not s or s[0]:
        s = [0] + s
    return [(a, b - a + 1) for a, b in zip(s, s[1:] + [len(tokens) - 1]) if b > a]


def plan_batches(docs: list, size: int) -> tuple:
    """The batches (lists of document indices, each ascending in length) and the queue (batch indices,
    longest document first)."""
    order = sorted(range(len(docs)), key=lambda i: docs[i][1])
    batches = [order[i:i + size] for i in range(0, len(order), size)]
    return batches, sorted(range(len(batches)), key=lambda q: -docs[batches[q][-1]][1])


def batch_cost(lens: list, c: int, w: int) -> int:
    """Tokens the forwards of a batch of documents of ``lens`` compute (rows padded to the chunk's width)."""
    return len(lens) * sum(min((i + 1) * c, w) for i in range(-(-(max(lens) - 1) // c)))


def plan_ranks(docs, batches, queue, t: PhasedConfig, world: int) -> tuple:
    """``(cuts, bounds, owned, loads)``: the queue length scored at each pause, the documents each pause
    trains on, per rank the queue indices it scores per segment between pauses, and the per-rank cost
    of each segment."""
    n, cuts, bounds, k, done = min(t.prefix_docs, len(docs)), [], [], 0, 0
    for p in range(t.phases):
        bound = n * (p + 1) // t.phases
        while done < bound:
            done += len(batches[queue[k]])
            k += 1
        if bound and k < len(queue):  # a pause with nothing to train on, or nothing left to score, is none
            cuts.append(k)
            bounds.append(bound)
    owned, loads = [[] for _ in range(world)], []
    for a, b in zip([0] + cuts, cuts + [len(queue)]):
        load = [0] * world
        for r in owned:
            r.append([])
        for q in queue[a:b]:
            r = load.index(min(load))
            load[r] += batch_cost([docs[i][1] for i in batches[q]], t.chunk, t.window)
            owned[r][-1].append(q)
        loads.append(load)
    return cuts, bounds, owned, loads


def phase_docs(batches, queue, cut: int, bound: int) -> list:
    """The documents a pause trains on: the ``bound`` shortest of the first ``cut`` batches of the queue."""
    return [i for b in sorted(queue[:cut]) for i in batches[b]][:bound]


def chunk_rows(lens, ci: int, c: int, w: int) -> tuple:
    """Chunk ``ci`` of documents of ``lens`` tokens (``lens - 1`` targets): per document the window start
    ``ws``, the chunk end ``ce`` and the first scored target ``lo`` (document target indices)."""
    ce = torch.clamp(lens - 1, max=(ci + 1) * c)
    ws = torch.clamp(ce - w, min=0)
    return ws, ce, torch.full_like(ce, ci * c)


class DocLedger:
    """How often this rank scored each target (position ``p`` predicts token ``p + 1``)."""

    def __init__(self, n: int):
        self.counts = torch.zeros(n, dtype=torch.uint8)

    def scored(self, pos) -> None:
        self.counts.index_put_((pos,), torch.ones_like(pos, dtype=torch.uint8), accumulate=True)
        assert self.counts[pos].max() <= 1, "a target was scored twice"

    def trained(self, pos) -> None:
        assert (self.counts[pos] == 1).all(), "training on a target before it was scored"

    def reduced(self, dev):
        """Every rank's counts summed (collective)."""
        return all_reduce_(self.counts.to(dev, copy=True)).cpu()

    def docs_scored(self, counts, docs) -> None:
        pos = torch.cat([torch.arange(s, s + n - 1) for s, n in docs])
        assert (counts[pos] == 1).all(), "global TTT on a document not yet scored"


class DocLoRA(nn.Module):
    """Per-document adapters: for kind ``k`` with ``shapes[k] = (slots, in, out)``, ``A[k]`` [slots,
    docs, r, in] and ``B[k]`` [slots, docs, out, r] (zero)."""

    def __init__(self, shapes: dict, docs: int, rank: int, alpha: float, dev):
        super().__init__()
        self.docs, self.scale = docs, alpha / rank
        self.A = nn.ParameterDict({k: torch.empty(s, docs, rank, i, device=dev) for k, (s, i, o) in shapes.items()})
        self.B = nn.ParameterDict({k: torch.zeros(s, docs, o, rank, device=dev) for k, (s, i, o) in shapes.items()})

    @torch.no_grad()
    def draw(self, gen) -> None:
        for a in self.A.values():
            a.uniform_(-a.size(-1) ** -0.5, a.size(-1) ** -0.5, generator=gen)

    def delta(self, k: str, x, j: int):
        """Slot ``j`` of kind ``k`` on ``x`` [docs, T, in] -> [docs, T, out] (0 without that kind)."""
        if k not in self.A:
            return 0
        return x @ self.A[k][j].transpose(1, 2) @ self.B[k][j].transpose(1, 2) * self.scale


class TapState:
    """What the taps of one model share: the adapters on (``lora``, None while off), the current block
    application ``j``, the final norm's output ``z`` (a plain object: compiled graphs trace its updates)."""

    def __init__(self):
        self.lora, self.j, self.z = None, -1, None


class Tap(nn.Module):
    """A module of the base with its LoRA slot's output added, fed by the module's own input; the
    attention's tap (``step``) opens the next block application's slots."""

    def __init__(self, base: nn.Module, h, kind: str, step: bool = False):
        super().__init__()
        self.base, self.h, self.kind, self.step = base, h, kind, step

    def forward(self, x, *rest):
        h = self.h
        if self.step:
            h.j += 1
        y = self.base(x, *rest)
        return y if h.lora is None else y + h.lora.delta(self.kind, x, h.j)


class HeadTap(nn.Module):
    """The final norm: while adapters are on, its output is kept for :func:`doc_loss` and the model's own
    head gets an empty row."""

    def __init__(self, base: nn.Module, h):
        super().__init__()
        self.base, self.h = base, h

    def forward(self, x):
        x = self.base(x)
        if self.h.lora is None:
            return x
        self.h.z = x
        return x[:, :0]


def install_taps(m, h) -> dict:
    """Wrap ``m``'s projections (a private copy); the adapter shapes ``{kind: (slots, in, out)}``."""
    for b in m.blocks:
        a = b.attn
        a.c_q, a.c_k, a.c_v = Tap(a.c_q, h, "q"), Tap(a.c_k, h, "k"), Tap(a.c_v, h, "v")
        b.attn, b.mlp = Tap(a, h, "o", True), Tap(b.mlp, h, "mlp")
    m.final_norm = HeadTap(m.final_norm, h)
    V, d = m.tok_emb.weight.shape
    a, S = m.blocks[0].attn.base, len(m.steps[m.topology])
    return {"q": (S, d, a.c_q.base.out_features), "k": (S, d, a.c_k.base.out_features),
            "v": (S, d, a.c_v.base.out_features), "o": (S, d, d), "mlp": (S, d, d), "head": (1, d, V)}


def doc_loss(m, cfg: ArchConfig, h, x, y):
    """Per-target float32 cross-entropy [docs, T] of the adapted model on rows ``x`` (targets ``y``)."""
    h.j = -1
    m(x)
    z = h.z
    logits = F.linear(z, (m.tok_emb.weight if cfg.tie_embeddings else m.lm_head.weight).to(z.dtype))
    if cfg.logit_softcap_fp32:  # else capped in the stream's dtype, as the model's own head does
        logits = logits.float()
    logits = logits + h.lora.delta("head", z, 0)
    logits = (cfg.logit_softcap * torch.tanh(logits / cfg.logit_softcap)).float()
    return F.cross_entropy(logits.transpose(1, 2), y, reduction="none")


def score_batch(fwd, lora, t: PhasedConfig, tokens, nbytes, docs, sums, ledger, dev, autocast) -> tuple:
    """Score the documents ``docs`` chunk by chunk, training ``lora`` after each chunk; (forwards, steps)."""
    opt = torch.optim.AdamW(lora.parameters(), lr=t.lr, betas=(t.beta1, t.beta2), eps=t.eps,
                            weight_decay=t.weight_decay)
    st, lens = torch.tensor([s for s, _ in docs]), torch.tensor([n for _, n in docs])
    nc = (lens - 2) // t.chunk + 1  # chunks per document
    steps = 0
    for ci in range(int(nc.max())):
        ws, ce, lo = chunk_rows(lens, ci, t.chunk, t.window)
        col = torch.arange(min((ci + 1) * t.chunk, t.window))
        pos = (st + ws)[:, None] + col  # [docs, width]: the stream position each row token predicts from
        live = (col < (ce - ws)[:, None]) & (ci < nc)[:, None]
        score = live & (col >= (lo - ws)[:, None])
        train = score & (ci < nc - 1)[:, None]
        pos = torch.where(live, pos, 0)
        x = torch.where(live, tokens[pos], 0).to(device=dev, dtype=torch.int64)
        y = torch.where(live, tokens[pos + 1], 0).to(device=dev, dtype=torch.int64)
        with autocast():  # with gradients even when nothing trains: one compiled graph
            loss = fwd(x, y)
        s = score.to(dev)
        sums[0] += loss.detach()[s].double().sum()
        sums[1] += s.sum()
        sums[2] += nbytes[pos + 1][score].to(dev).double().sum()
        ledger.scored(pos[score])
        if train.any():
            ledger.trained(pos[train])
            (loss[train.to(dev)].sum() / t.chunk).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            steps += 1
    return int(nc.max()), steps


def global_sgd(m, tokens, docs, t: PhasedConfig, dist, autocast) -> int:
    """Train the base of ``m`` on the concatenated ``docs`` (collective); the SGD steps taken."""
    cat = torch.cat([tokens[s:s + n] for s, n in docs])
    L, C, n = t.global_seq_len or t.window, t.global_chunk_tokens, len(cat) - 1
    K = -(-n // C)
    params = list(m.requires_grad_(True).parameters())
    for p in params:
        p.grad = torch.zeros_like(p)
    opt = torch.optim.SGD(params, lr=t.global_lr, momentum=t.global_momentum)
    steps = 0
    for ci in range(K - 1):  # the last chunk is skipped
        k = (min(ci * C + C, n) - ci * C) // L
        a, b = eval_rank_span(k, dist)
        opt.zero_grad(set_to_none=False)
        if b > a:
            w = cat[ci * C + a * L:ci * C + b * L + 1].to(device=dist.device, dtype=torch.int64)
            with autocast():
                loss = m(w[:-1].view(-1, L), w[1:].view(-1, L))
            (loss * ((b - a) / k)).backward()  # summed over ranks: the chunk's mean
        for p in params:
            all_reduce_(p.grad)
        if t.global_grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, t.global_grad_clip)
        for g in opt.param_groups:
            g["lr"] = t.global_lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(K - 1, 1)))
        opt.step()
        steps += 1
    m.requires_grad_(False)
    for p in params:
        p.grad = None
    return steps


def _sync(dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def phased_evaluate(model, cfg: ArchConfig, t: PhasedConfig, compile_model, tokens, nbytes, seq_len, dist,
                    autocast, progress):
    """Phased score-first LoRA TTT of ``model`` (module doc) on a private copy."""
    dev, m = dist.device, copy.deepcopy(model).requires_grad_(False)
    tokens = tokens.to(torch.int32)
    h = TapState()
    shapes = {k: v for k, v in install_taps(m, h).items() if k in t.lora_targets}

    def fwd(x, y):
        return doc_loss(m, cfg, h, x, y)

    if compile_model:
        fwd = torch.compile(fwd, dynamic=True)
    docs = find_docs(tokens, cfg.bos_id)
    batches, queue = plan_batches(docs, t.batch_docs)
    cuts, bounds, owned, loads = plan_ranks(docs, batches, queue, t, dist.world_size)
    mine = owned[dist.rank]
    ledger, sums = DocLedger(len(tokens) - 1), torch.zeros(3, dtype=torch.float64, device=dev)
    gen = torch.Generator(dev).manual_seed(t.seed)
    t0 = time.perf_counter()
    sets = {}  # adapter sets by batch size, reused (one compiled graph each); B and A reset before use
    for n in {len(batches[q]) for seg in mine for q in seg} if compile_model and t.warmup else ():
        # each batch size's graph, on random tokens only; the base is frozen, A and B are drawn again
        h.lora = sets[n] = DocLoRA(shapes, n, t.lora_rank, t.lora_alpha, dev)
        h.lora.draw(torch.Generator(dev).manual_seed(t.seed))
        for w in (t.chunk, t.window):
            x, y = (torch.randint(0, cfg.vocab_size, (n, w), device=dev) for _ in "xy")  # not views
            with autocast():
                fwd(x, y).mean().backward()
            torch.optim.AdamW(h.lora.parameters(), lr=0.0).step()
            h.lora.zero_grad(set_to_none=True)
        h.lora = None
    if sets and progress:
        progress("warm-up", 1, 1, sums)
    _sync(dev)
    t1 = time.perf_counter()
    fresh, done, stat, extra = set(sets), 0, [0, 0, 0], {}  # fresh: the sizes whose A is drawn anew
    for p, seg in enumerate(mine):
        for q in seg:
            ds = [docs[i] for i in batches[q]]
            if len(ds) not in sets:
                sets[len(ds)] = DocLoRA(shapes, len(ds), t.lora_rank, t.lora_alpha, dev)
                fresh.add(len(ds))
            lora = sets[len(ds)]
            for b in lora.B.values():
                b.data.zero_()
            if len(ds) in fresh or t.reset == "ab":
                lora.draw(gen if t.reset == "b" else torch.Generator(dev).manual_seed(t.seed + 1 + q))
                fresh.discard(len(ds))
            h.lora = lora
            c, s = score_batch(fwd, lora, t, tokens, nbytes, ds, sums, ledger, dev, autocast)
            h.lora = None
            stat[0] += c
            stat[1] += s
            done += 1
            if done == 1:
                _sync(dev)
                extra["ttt_projected_s"] = (time.perf_counter() - t1) * sum(map(len, mine))
            if progress:
                progress("phased", done, sum(map(len, mine)), sums)
        if p < len(cuts):  # a pause: every rank is here
            tp = time.perf_counter()
            sel = [docs[i] for i in phase_docs(batches, queue, cuts[p], bounds[p])]
            ledger.docs_scored(ledger.reduced(dev), sel)
            stat[2] += global_sgd(m, tokens, sel, t, dist, autocast)
            fresh = set(sets)
            _sync(dev)
            extra[f"ttt_phase{p + 1}_s"] = round(time.perf_counter() - tp, 3)
            extra[f"ttt_phase{p + 1}_docs"] = len(sel)
    assert (ledger.reduced(dev) == 1).all(), "a target was not scored exactly once"
    _sync(dev)
    times = torch.tensor([time.perf_counter() - t1, extra.get("ttt_projected_s", 0.0)], dtype=torch.float64,
                         device=dev)
    all_reduce_(times, "max")
    stat = all_reduce_(torch.tensor(stat, dtype=torch.float64, device=dev)).tolist()
    result = bpb_result(sums)
    busy = sum(max(x) for x in loads)
    result.extra = {"ttt_docs": len(docs), "ttt_batches": len(batches), "ttt_chunks": int(stat[0]),
                    "ttt_steps": int(stat[1]), "ttt_phase_steps": int(stat[2] / dist.world_size),
                    "ttt_s": round(times[0].item(), 3), "ttt_projected_s": round(times[1].item(), 3),
                    "ttt_warmup_s": round(t1 - t0, 3), "ttt_balance": round(busy * dist.world_size /
                                                                              max(sum(map(sum, loads)), 1), 4),
                    **{k: v for k, v in extra.items() if k != "ttt_projected_s"}}
    return result
