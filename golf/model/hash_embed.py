"""Hashed n-gram embeddings: BigramHash in its three forms and TrigramHash (spec §2.2, §2.3).

Hashes are computed inside each row of ``input_ids`` (the first positions of every sequence have no
predecessor). Arithmetic is int64; for token ids below 41,700 it equals the int32 arithmetic of the
records (no product overflows).

* A, ``mult_input`` (smeargate record, #187): ``bucket_t = (prev_t * 92821 + cur_t) mod B`` with
  prev_0 = 0 (token id 0). #187: B=4096, k=64, table N(0, 0.01^2), default-init projection, no scale.
* B, ``xor_input`` (#295, #344, #1573): for t >= 1 ``bucket_t = ((36313 cur_t) XOR (27191 prev_t)) mod (B-1)``,
  t = 0 -> the reserved bucket B-1. Zero table, zero projection (until an orthogonal init rule), learned
  ``scale`` init 0.05; ``scale * proj(embed[bucket])`` is added to the token embedding before the norm.
* B', ``xor_per_layer`` (#507): the same XOR hash but t = 0 -> bucket 0 (shared with real bigrams);
  the projected vector is added to the residual stream before every block i, times ``scale[i]`` (init 0.05).
* TrigramHash (#344): ``((36313 t_i) XOR (27191 t_{i-1}) XOR (51497 t_{i-2})) mod (B-1)`` for i >= 2,
  positions 0 and 1 -> B-1; B=4096, k=128, scale init 0.03; added with the bigram term.

PARAMS: ``bigram.embed.weight`` [B, k], ``bigram.proj.weight`` [d, k], ``bigram.scale`` [1] (or [L] for
xor_per_layer; absent for #187); the same under ``trigram.``. Tables go to the token-embedding Adam group
in the seeds, projections to Muon (or scalar Adam in #1573), scales to the scalar group.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from golf.model.config import ArchConfig, BigramConfig, BigramForm, ProjInit, TrigramConfig
from golf.model.roles import Label


def _shifted(t: Tensor, n: int) -> Tensor:
    """t delayed by n positions along the last dim, zero-filled: [..., T] -> [..., T]."""
    return torch.cat((torch.zeros_like(t[..., :n]), t[..., : t.size(-1) - n]), dim=-1)


def bigram_mult_buckets(ids: Tensor, buckets: int) -> Tensor:
    t = ids.long()
    return (_shifted(t, 1) * 92821 + t) % buckets


def bigram_xor_buckets(ids: Tensor, buckets: int, first_bucket: int) -> Tensor:
    t = ids.long()
    h = torch.bitwise_xor(36313 * t[..., 1:], 27191 * t[..., :-1]) % (buckets - 1)
    return torch.cat((torch.full_like(t[..., :1], first_bucket), h), dim=-1)


def trigram_xor_buckets(ids: Tensor, buckets: int) -> Tensor:
    t = ids.long()
    h = torch.bitwise_xor(torch.bitwise_xor(36313 * t[..., 2:], 27191 * t[..., 1:-1]), 51497 * t[..., :-2])
    return torch.cat((torch.full_like(t[..., :2], buckets - 1), h % (buckets - 1)), dim=-1)


class HashEmbedding(nn.Module):
    """``proj(embed[bucket(ids)])``: a hashed table of width k projected to the model width."""

    def __init__(self, buckets: int, dim: int, model_dim: int, bucket_fn, table_std: float, proj_init: ProjInit,
                 family: str = "bigram"):
        super().__init__()
        self.PARAM_ROLES = {"embed.weight": Label("table", family, "input"), "proj.weight": Label("matrix", family, "input"),
                            "scale": Label("control", family, "input")}
        self.embed = nn.Embedding(buckets, dim)
        self.proj = nn.Linear(dim, model_dim, bias=False)
        self.bucket_fn = bucket_fn
        with torch.no_grad():
            if table_std > 0:
                nn.init.normal_(self.embed.weight, std=table_std)
            else:
                self.embed.weight.zero_()
            if proj_init is ProjInit.zero:
                self.proj.weight.zero_()

    def forward(self, ids: Tensor) -> Tensor:
        return self.proj(self.embed(self.bucket_fn(ids)))


class ScaledHashEmbedding(HashEmbedding):
    """An input term: ``scale * proj(embed[bucket])`` with a learned scalar ``scale``."""

    def __init__(self, *args, scale_init: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = nn.Parameter(torch.full((1,), scale_init, dtype=torch.float32))

    def forward(self, ids: Tensor) -> Tensor:
        h = super().forward(ids)
        return h * self.scale.to(h.dtype)


class LayerScaledHashEmbedding(HashEmbedding):
    """A per-layer stream input: computed once per forward, added before block i times ``scale[i]``."""

    def __init__(self, *args, num_layers: int, scale_init: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.scale = nn.Parameter(torch.full((num_layers,), scale_init, dtype=torch.float32))
        self.layers = tuple(range(num_layers))

    def at_layer(self, base: Tensor, layer: int) -> Tensor:
        return self.scale[layer].to(base.dtype) * base


def build_bigram(cfg: BigramConfig, arch: ArchConfig) -> HashEmbedding:
    if cfg.form is BigramForm.mult_input:
        fn = partial(bigram_mult_buckets, buckets=cfg.buckets)
    else:
        first = cfg.buckets - 1 if cfg.form is BigramForm.xor_input else 0
        fn = partial(bigram_xor_buckets, buckets=cfg.buckets, first_bucket=first)
    args = (cfg.buckets, cfg.dim, arch.model_dim, fn, cfg.table_std, cfg.proj_init)
    if cfg.form is BigramForm.xor_per_layer:
        return LayerScaledHashEmbedding(*args, num_layers=arch.num_layers, scale_init=cfg.scale_init)
    if cfg.scale_init is None:
        return HashEmbedding(*args)
    return ScaledHashEmbedding(*args, scale_init=cfg.scale_init)


def build_trigram(cfg: TrigramConfig, arch: ArchConfig) -> HashEmbedding:
    fn = partial(trigram_xor_buckets, buckets=cfg.buckets)
    return ScaledHashEmbedding(cfg.buckets, cfg.dim, arch.model_dim, fn, 0.0, ProjInit.zero, family="trigram",
                               scale_init=cfg.scale_init)
