"""The input stage: token-conditioned parts between the token embedding and the first block.

Flow (spec §1.5, §2.1-2.3, §2.10, §2.16)::

    e  = tok_emb[ids] + BigramHash (A/B) + TrigramHash
    e  = SmearGate A or C, then pre-enrichment            (before the norm)
    x0 = SmearGate B (RMSNorm(e))
    per layer i: x += scale_i * BigramHash B' (#507); values of target layers += value embedding

* BigramHash (spec §2.2), hashed inside each row (int64; equal to the records' int32 arithmetic for
  ids below 41,700): A ``mult_input`` (smeargate record, #187): ``(prev * 92821 + cur) mod B`` with
  prev_0 = 0, N(0, 0.01^2) table, default-init projection, no scale. B ``xor_input`` (#295, #344, #1573):
  ``((36313 cur) XOR (27191 prev)) mod (B-1)``, position 0 -> the reserved bucket B-1, zero table and
  projection, ``scale`` init 0.05. B' ``xor_per_layer`` (#507): the same hash with position 0 -> bucket 0,
  added before every block i times ``scale[i]``.
* TrigramHash (#344, spec §2.3): ``(36313 t_i) XOR (27191 t_{i-1}) XOR (51497 t_{i-2}) mod (B-1)``,
  positions 0, 1 -> B-1; zero table and projection, ``scale`` init 0.03.
* SmearGate (unnir PR #102/#135; spec §2.1), x_{-1} = 0: A ``pass_through`` (#187)
  ``g x_t + (1-g) x_{t-1}``, g = sigma(gate), gate init 3.0; B ``half_blend`` (#344, #295, #1573)
  ``(1-g) x_t + g x_{t-1}``, gate init 0, after the norm; C ``scalar_gate`` (#507, modded-nanogpt)
  ``x_t + lambda sigma(w . x_t[:k]) x_{t-1}``, w = lambda = 0 at init; C with the BOS fix
  ``scalar_gate_bos`` (#1855, frontier-1855 spec §3.3): the same, times ``[id_t != BOS]`` (``arch.bos_id``),
  so a document's BOS never receives the previous document's last token. Both read the current token's
  embedding (plus the hash terms where those are on) before the norm, and smear the un-smeared x_{t-1}.
* pre-enrichment (#187, spec §2.16): ``down(GELU(up(e)))``, d -> 768 -> d, default init, no residual.
* value embeddings (PR #374/#414 lineage; spec §2.10): one shared table V x k (N(0, 0.01^2)), ``proj``
  k -> kv zero-init, ``scale`` 0.1 and one ``layer_scales`` entry per target layer (init 1); target layer
  j adds ``layer_scales[j] * scale * proj(embed[ids])`` to its values. Not applied in replayed passes.

Parameter names (the prefixes registered on the GPT): ``bigram``, ``trigram``, ``smear``, ``pre_enrich``,
``ve_shared``; the GPT labels the hash embeddings' roles.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.kernel.arch import head_dim, layer_ids

if TYPE_CHECKING:
    from golf.model.config import ArchConfig, BigramConfig


def bigram_mult_buckets(ids: Tensor, n: int) -> Tensor:
    t = ids.long()
    return (torch.cat((torch.zeros_like(t[..., :1]), t[..., :-1]), dim=-1) * 92821 + t) % n


def bigram_xor_buckets(ids: Tensor, n: int, first_bucket: int) -> Tensor:
    t = ids.long()
    h = torch.bitwise_xor(36313 * t[..., 1:], 27191 * t[..., :-1]) % (n - 1)
    return torch.cat((torch.full_like(t[..., :1], first_bucket), h), dim=-1)


def trigram_xor_buckets(ids: Tensor, n: int) -> Tensor:
    t = ids.long()
    h = torch.bitwise_xor(torch.bitwise_xor(36313 * t[..., 2:], 27191 * t[..., 1:-1]), 51497 * t[..., :-2])
    return torch.cat((torch.full_like(t[..., :2], n - 1), h % (n - 1)), dim=-1)


def bigram_buckets(ids: Tensor, b: BigramConfig) -> Tensor:
    if b.form == "mult_input":
        return bigram_mult_buckets(ids, b.buckets)
    return bigram_xor_buckets(ids, b.buckets, b.buckets - 1 if b.form == "xor_input" else 0)


class HashEmbed(nn.Module):
    """``proj(embed[bucket])``: a hashed table of width k projected to the model width, with ``scales``
    learned scales (none, one, or one per layer) applied by the caller."""

    def __init__(self, n: int, k: int, d: int, std: float, zero_proj: bool, scales: int, scale_init: float):
        super().__init__()
        self.embed = nn.Embedding(n, k)
        self.proj = nn.Linear(k, d, bias=False)
        with torch.no_grad():
            if std > 0:
                nn.init.normal_(self.embed.weight, std=std)
            else:
                self.embed.weight.zero_()
            if zero_proj:
                self.proj.weight.zero_()
        if scales:
            self.scale = nn.Parameter(torch.full((scales,), scale_init, dtype=torch.float32))

    def forward(self, buckets: Tensor) -> Tensor:
        return self.proj(self.embed(buckets))


def _smear_prev(x: Tensor) -> Tensor:
    """x_{t-1} along dim 1 with zeros at t = 0: [B, T, d] -> [B, T, d]."""
    return F.pad(x[:, :-1], (0, 0, 1, 0))


SMEAR_ROLES = {"gate": ("control", "smear", "input"), "scale": ("control", "smear", "input")}


class PassThroughSmear(nn.Module):
    PARAM_ROLES = SMEAR_ROLES

    def __init__(self, d: int):
        super().__init__()
        self.gate = nn.Parameter(torch.full((d,), 3.0, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate).to(x.dtype)
        return g * x + (1.0 - g) * _smear_prev(x)


class HalfBlendSmear(nn.Module):
    PARAM_ROLES = SMEAR_ROLES

    def __init__(self, d: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(d, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate).to(x.dtype)
        return (1.0 - g) * x + g * _smear_prev(x)


class ScalarGateSmear(nn.Module):
    PARAM_ROLES = SMEAR_ROLES

    def __init__(self, gate_dims: int):
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(gate_dims, dtype=torch.float32))
        self.scale = nn.Parameter(torch.zeros(1, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        g = self.scale.to(x.dtype) * torch.sigmoid(x[..., :self.gate.numel()] @ self.gate.to(x.dtype))  # [B, T]
        return x + g.unsqueeze(-1) * _smear_prev(x)


class BosMaskedSmear(ScalarGateSmear):
    def forward(self, x: Tensor, keep: Tensor) -> Tensor:
        """``keep`` [B, T] bool: False where the current token is BOS (no previous-token term there)."""
        g = self.scale.to(x.dtype) * torch.sigmoid(x[..., :self.gate.numel()] @ self.gate.to(x.dtype)) * keep
        return x + g.unsqueeze(-1) * _smear_prev(x)


class PreEnrich(nn.Module):
    PARAM_ROLES = {"up.weight": ("matrix", "pre_enrich", "input"), "down.weight": ("matrix", "pre_enrich", "input")}

    def __init__(self, d: int, h: int):
        super().__init__()
        self.up = nn.Linear(d, h, bias=False)
        self.down = nn.Linear(h, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))


class ValueEmbedding(nn.Module):
    PARAM_ROLES = {"embed.weight": ("table", "value_embed", "input"), "proj.weight": ("matrix", "value_embed", "input"),
                   "scale": ("control", "value_embed", "input"), "layer_scales": ("control", "value_embed", "input")}

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        ve = cfg.attention.value_embed
        self.layers = layer_ids(ve.layers, cfg.num_layers)  # target layer of each layer scale
        self.embed = nn.Embedding(cfg.vocab_size, ve.dim)
        self.proj = nn.Linear(ve.dim, cfg.num_kv_heads * head_dim(cfg), bias=False)
        self.scale = nn.Parameter(torch.full((1,), ve.scale_init, dtype=torch.float32))
        self.layer_scales = nn.Parameter(torch.ones(len(self.layers), dtype=torch.float32))
        with torch.no_grad():
            nn.init.normal_(self.embed.weight, std=ve.embed_std)
            self.proj.weight.zero_()

    def forward(self, ids: Tensor) -> Tensor:
        h = self.proj(self.embed(ids))  # [B, T, kv]
        return h * self.scale.to(h.dtype)


def build_inputs(m: nn.Module, cfg: ArchConfig) -> None:
    """Register the input parts of ``cfg`` on the GPT ``m`` (in this order: their init draws)."""
    d = cfg.model_dim
    b = cfg.input.bigram
    t = cfg.input.trigram
    s = cfg.input.smear
    if b is not None:
        m.bigram = HashEmbed(b.buckets, b.dim, d, b.table_std, b.proj_init == "zero",
                             0 if b.scale_init is None else cfg.num_layers if b.form == "xor_per_layer" else 1,
                             b.scale_init)
    if t is not None:
        m.trigram = HashEmbed(t.buckets, t.dim, d, 0.0, True, 1, t.scale_init)
    if s is not None:
        m.smear = (PassThroughSmear(d) if s.variant == "pass_through" else HalfBlendSmear(d)
                   if s.variant == "half_blend" else BosMaskedSmear(s.gate_dims) if s.variant == "scalar_gate_bos"
                   else ScalarGateSmear(s.gate_dims))
    if cfg.input.pre_enrich is not None:
        m.pre_enrich = PreEnrich(d, cfg.input.pre_enrich.hidden)
    if cfg.attention.value_embed is not None:
        m.ve_shared = ValueEmbedding(cfg)


def input_stream(m: nn.Module, cfg: ArchConfig, ids: Tensor) -> Tensor:
    """x0 of ``ids`` [B, T]: the embedding and its input terms, transforms and norm."""
    b = cfg.input.bigram
    t = cfg.input.trigram
    s = cfg.input.smear
    x = m.tok_emb(ids)
    if cfg.embedding_dtype == "bfloat16" and not torch.is_autocast_enabled(ids.device.type):
        x = x.float()  # a bf16 embedding starts an fp32 stream outside autocast
    if b is not None and b.form != "xor_per_layer":
        h = m.bigram(bigram_buckets(ids, b))
        x = x + (h if b.scale_init is None else h * m.bigram.scale.to(h.dtype))
    if t is not None:
        h = m.trigram(trigram_xor_buckets(ids, t.buckets))
        x = x + h * m.trigram.scale.to(h.dtype)
    if s is not None and s.variant != "half_blend":
        x = m.smear(x, ids != cfg.bos_id) if s.variant == "scalar_gate_bos" else m.smear(x)
    if cfg.input.pre_enrich is not None:
        x = m.pre_enrich(x)
    x = F.rms_norm(x, (x.size(-1),))
    if s is not None and s.variant == "half_blend":
        x = m.smear(x)
    return x
