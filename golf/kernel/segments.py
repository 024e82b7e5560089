"""Document-aware attention: a token attends only inside its segment (#1530 lineage, run by #1855;
frontier-1855 spec §2.6, traps 2-3).

**Segments.** In a row of tokens, a segment starts at position 0, at every document start (BOS) and, inside
a document, every ``max_len`` tokens from its start; a segment never crosses a BOS, and no segment is longer
than ``max_len``. The first segment of a row may begin mid-document (a packed row or a validation window
starts wherever the stream is). :func:`segment_starts` gives, per token, the position its segment starts at:
a static-shape computation over the ids (cumulative max of the BOS positions), so compiled graphs keep their
shapes whatever the documents. :func:`cu_seqlens` gives the same segments as the record builds them for a
varlen kernel: the boundaries (the starts and the row length, int32), padded with the row length to a
multiple of ``bucket`` entries (empty trailing segments), so that a kernel fed from outside a compiled
graph sees few distinct shapes; :func:`bound_starts` reads the per-token starts back from them.

**Attention** (:func:`document_attention`) is exact, masked SDPA: query ``i`` sees key ``j`` when
``j <= i`` and both have the same segment start. Since no segment is longer than ``max_len``, a query in
the ``c``-th block of ``C = min(max_len, T)`` positions only ever sees keys of blocks ``c - 1`` and ``c``:
each block attends to those ``2C`` keys (the row padded to whole blocks; a padded query sees only itself),
so memory grows with ``T * 2C``, not ``T^2``. RoPE positions stay the absolute positions in the row
(:mod:`golf.kernel.attention`), as in #1855: within a segment only differences matter. A token's output
does not depend on anything before its segment start.

It runs where the config says (``arch.attention.document``), in every forward: training, evaluation, TTT
and calibration alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def segment_starts(ids: Tensor, bos: int, max_len: int) -> Tensor:
    """``ids`` [B, T] -> [B, T] int64: the position where each token's segment starts."""
    t = torch.arange(ids.size(1), device=ids.device)
    doc = torch.where(ids == bos, t, 0).cummax(1).values  # the last BOS at or before t (0 if none)
    return doc + (t - doc) // max_len * max_len


def cu_seqlens(ids: Tensor, bos: int, max_len: int, bucket: int = 64) -> Tensor:
    """One row ``ids`` [L] -> the segment boundaries ``[0, ..., L]`` (int32), then ``L`` repeated up to a
    multiple of ``bucket`` entries (spec §2.6: the record's ``_build_cu_seqlens``)."""
    L = ids.numel()
    docs = torch.nonzero(ids == bos).flatten().tolist()
    docs = ([] if docs and docs[0] == 0 else [0]) + docs
    bounds = [s for a, b in zip(docs, docs[1:] + [L]) for s in range(a, b, max_len)] + [L]
    return torch.tensor(bounds + [L] * (-len(bounds) % bucket), dtype=torch.int32)


def bound_starts(cu: Tensor, T: int) -> Tensor:
    """Boundaries (as :func:`cu_seqlens`, padded or not) -> [T]: the position each token's segment starts at."""
    cu = cu.long()
    return cu[torch.bucketize(torch.arange(T), cu, right=True) - 1]


def document_attention(q: Tensor, k: Tensor, v: Tensor, starts: Tensor, max_len: int) -> Tensor:
    """Causal attention inside segments: ``q`` [B, T, H, D], ``k``/``v`` [B, T, Hkv, D], ``starts`` [B, T]
    (:func:`segment_starts`) -> [B, T, H, D]."""
    B, T, H, D = q.shape
    C = min(max_len, T)
    n = -(-T // C)  # blocks of C positions
    pos = torch.arange(n * C, device=q.device)
    s = torch.cat([starts, pos[T:].expand(B, -1)], 1).view(B, n, C)  # a padded position starts its own
    q, k, v = (F.pad(x, (0, 0, 0, 0, 0, n * C - T)).view(B, n, C, x.size(2), D) for x in (q, k, v))
    sk, pk = s, pos.view(n, C)
    if n > 1:  # each block also sees the block before it (none before the first: start -1 matches nothing)
        sk = torch.cat([F.pad(s[:, :-1], (0, 0, 1, 0), value=-1), s], 2)  # [B, n, 2C]
        pk = torch.cat([pk - C, pk], 1)
        k, v = (torch.cat([F.pad(x[:, :-1], (0, 0, 0, 0, 0, 0, 1, 0)), x], 2) for x in (k, v))  # [B, n, 2C, Hkv, D]
    mask = (s[..., :, None] == sk[..., None, :]) & (pos.view(n, C)[:, :, None] >= pk[:, None, :])  # [B, n, C, kC]
    y = F.scaled_dot_product_attention(
        q.flatten(0, 1).transpose(1, 2), k.flatten(0, 1).transpose(1, 2), v.flatten(0, 1).transpose(1, 2),
        attn_mask=mask.flatten(0, 1)[:, None], enable_gqa=k.size(3) != H,
    )  # [B*n, H, C, D]
    return y.transpose(1, 2).reshape(B, n * C, H, D)[:, :T]
