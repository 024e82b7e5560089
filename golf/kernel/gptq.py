"""Full-Hessian GPTQ of one weight matrix, and the calibration that collects its Hessians.

GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers"), as the #1394 lineage and the 2026-04-09 record (#1493, spec §5.2) run it, in fp32 on
the Hessian's device. For W [rows, cols] and H = Σ XᵀX over the layer's calibration inputs X:
  1. dead inputs (H_jj = 0): H_jj ← 1 and column j of W ← 0;
  2. damping: H ← H + damp · mean(diag H) · I;
  3. act-order: columns (and H's rows and columns) permuted by descending diag H;
  4. U = upper Cholesky factor of H⁻¹ (H⁻¹ = UᵀU);
  5. per-row clips c_r and fp16 scales s_r from the scheme's clip rule on the *unpermuted* W
     (:func:`golf.kernel.quantize.quantize_rows`; SDClip for #1493);
  6. lazy-batch quantization in blocks of ``block_size`` columns: for column j,
        q_j = clamp(round(clamp(w_j, ±c)/s), lo, hi),   e_j = (w_j − q_j·ŝ)/U_jj,
        W[:, j:block end] −= e_j ⊗ U[j, j:block end];
     after the block, W[:, block end:] −= E · U[block, block end:]  (E = the block's e columns);
     the inner clamp(w_j, ±c) is left out for ``clip_order=round_then_clamp``;
  7. codes un-permuted.
``s`` is the divisor the scheme rounds with (``rounding_scale``), ŝ the stored fp16 scale. With H = I no
error propagates, so the codes equal round to nearest with the same scales. A Hessian that stays
singular after damping makes the Cholesky factorisation raise (``torch.linalg.LinAlgError``).

Calibration (spec §5.1): the model runs in ``eval()`` under ``no_grad`` and the run's autocast (bf16 on
CUDA: the stream the record's bf16 embedding sets, so its Hessians are bf16 activations') over
``quant.calibration.batches`` batches, and a forward hook adds XᵀX (fp32) of the input each GPTQ weight
multiplies: a Linear's input, or for the tied output embedding the output of ``final_norm`` (the
head's input); a module called several times per forward (depth recurrence) adds every call. Inputs:
``train``, the first batches of a fresh training stream (#1493), or ``generated``, sequences the model
samples itself at ``temperature`` from ``start_token`` (PR #1019, "AR self-generated GPTQ calibration").
``reduce=all_reduce`` sums every rank's H (and batch counts); ``local`` is #1493 as it ran: the main
rank uses its own. H is divided by the number of batches. Which weights need a Hessian comes from the
lab's scheme table; the lab checks beforehand that each has a site.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from golf.kernel.dist import all_reduce_
from golf.kernel.quantize import QuantizedTensor, code_range, quantize_rows, round_codes

if TYPE_CHECKING:
    from golf.config.schema import TrainConfig
    from golf.quant.config import CalibrationConfig, QuantConfig, SchemeConfig


def gptq_quantize(w, h, s: SchemeConfig):
    """GPTQ codes and scales of ``w`` [rows, cols] for the Hessian ``h`` [cols, cols], on h's device."""
    g = s.gptq
    w = w.detach().to(device=h.device, dtype=torch.float32).clone()
    h = h.detach().to(dtype=torch.float32).clone()
    cols = w.shape[1]
    clip, _, _, sc, d = quantize_rows(w, s)  # [rows], from the unpermuted weights
    live = d > 0  # an all-zero row (fp16 scale 0) gets codes 0
    div = torch.where(live, d, torch.ones_like(d))[None]  # [1, rows]
    deq = sc.float()[None]
    c = clip[None]
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    torch.diagonal(h).add_(g.damp * h.diag().mean())  # the mean of a copy: a strided view sums in another order
    if g.act_order:
        perm = torch.argsort(torch.diagonal(h), descending=True)
        w, h = w[:, perm], h[perm][:, perm]
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    wt = w.T.contiguous()  # [cols, rows]: each column of W is one contiguous row here
    q = torch.zeros_like(wt)
    for i in range(0, cols, g.block_size):
        j2 = min(i + g.block_size, cols)
        b = wt[i:j2].clone()  # [block, rows]
        e = torch.empty_like(b)
        ub = u[i:j2, i:j2]
        for j in range(j2 - i):
            col = b[j:j + 1]  # [1, rows]
            r = round_codes(col, c, div, s)
            q[i + j:i + j + 1] = r
            err = (col - r * deq) / ub[j, j]
            b[j:] -= ub[j, j:, None] * err  # [block-j, 1] * [1, rows]
            e[j:j + 1] = err
        if j2 < cols:
            wt[j2:] -= u[i:j2, j2:].T @ e
    q = q.T
    if g.act_order:
        q = q[:, torch.argsort(perm)]
    q = q * live[:, None]
    return QuantizedTensor(q.to(torch.int8).cpu().contiguous(), sc.cpu().contiguous(), s.bits, *code_range(s))


def hessian_sites(model, names):
    """name → (module, whether its output (else its input) is the X that weight multiplies)."""
    m = dict(model.named_modules())
    return {n: (m[n[:-7]], False) if isinstance(m.get(n[:-7]), nn.Linear) else (model.final_norm, True)
            for n in names}


def collect_hessians(model, sites, batches, tick=None, autocast=contextlib.nullcontext):
    """Run ``model`` under ``autocast()`` over ``batches`` (input ids) with forward hooks: (Σ XᵀX per name,
    batches run). ``tick(batches, tokens)`` after each batch. Hooks record only during each batch's own
    forward, so a source may run the model itself (generation) between batches."""
    dev = next(model.parameters()).device
    p = dict(model.named_parameters(remove_duplicate=False))
    hs = {n: torch.zeros(p[n].shape[1], p[n].shape[1], dtype=torch.float32, device=dev) for n in sites}
    on = [False]

    def hook(n, out):
        def f(mod, i, o):
            if on[0]:
                x = (o if out else i[0]).detach()
                x = x.reshape(-1, x.shape[-1]).float()  # [tokens, cols]
                hs[n].addmm_(x.T, x)
        return f

    handles = [mod.register_forward_hook(hook(n, out)) for n, (mod, out) in sites.items()]
    was = model.training
    model.eval()
    k = t = 0
    try:
        with torch.no_grad():
            for ids in batches:
                on[0] = True
                with autocast():
                    model(ids.to(dev))
                on[0] = False
                k += 1
                t += ids.numel()
                if tick is not None:
                    tick(k, t)
    finally:
        for x in handles:
            x.remove()
        model.train(was)
    return hs, k


def generated_batches(model, n, seqs, seq_len, c: CalibrationConfig, rank=0, autocast=contextlib.nullcontext):
    """``n`` batches of ``seqs`` sequences sampled from the model (PR #1019), one token at a time."""
    dev = next(model.parameters()).device
    g = torch.Generator(device=dev).manual_seed(c.seed + rank)
    for _ in range(n):
        ids = torch.full((seqs, 1), c.start_token, dtype=torch.int64, device=dev)
        for _ in range(seq_len - 1):
            with torch.no_grad(), autocast():
                logits = model(ids)[:, -1].float()  # [seqs, vocab]
            ids = torch.cat([ids, torch.multinomial(F.softmax(logits / c.temperature, dim=-1), 1, generator=g)], dim=1)
        yield ids


def calibrate(model, q: QuantConfig, t: TrainConfig, dist, schemes, loader=None, autocast=None, tick=None):
    """Hessians (name → H [cols, cols], fp32) of every weight ``schemes`` (the lab's name → scheme table)
    routes to a GPTQ scheme; None when there is none (no calibration runs) or on ranks whose H is not used.
    ``loader()`` makes a fresh training loader; the training batch and sequence length apply where
    ``quant.calibration`` leaves them unset."""
    c = q.calibration
    names = c is not None and [k for k, v in schemes.items() if v != "raw" and q.schemes[v].kind == "int"
                               and q.schemes[v].gptq is not None]
    if names and (c.reduce == "all_reduce" or dist.is_main):
        n = c.batch_tokens or t.batch_tokens
        length = c.seq_len or t.seq_len
        sites = hessian_sites(model, names)
        if c.source == "train":
            ld = loader()
            batches = (ld.next_batch(n, length, 1)[0] for _ in range(c.batches))
        else:
            batches = generated_batches(model, c.batches, n // (length * dist.world_size), length, c, dist.rank,
                                        autocast or contextlib.nullcontext)
        hs, k = collect_hessians(model, sites, batches, tick, autocast or contextlib.nullcontext)
        if c.reduce == "all_reduce":
            for h in hs.values():
                all_reduce_(h)
            k = int(all_reduce_(torch.tensor([k], dtype=torch.float64, device=next(model.parameters()).device)).item())
        for h in hs.values():
            h.div_(max(k, 1))
        return {n: h.cpu() for n, h in hs.items()} if c.device == "cpu" else hs
