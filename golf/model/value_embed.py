"""Value embeddings, VE (PR #374/#414 lineage; spec §2.10): token identity re-injected into values.

One shared module: ``embed`` V x k (k=128) init N(0, 0.01^2), ``proj`` k -> kv_dim zero-init (an
orthogonal init rule may replace it), scalar ``scale`` init 0.1, and one scale per target layer
(``layer_scales``, init 1). Computed once per forward; in target layer j the attention adds
``layer_scales[j] * scale * proj(embed[token])`` to ``c_v(x)`` (flat kv_dim, before the head reshape and
before value-residual blending). Not applied in the replayed passes of a recycled core (#1573).
Targets: the last two layers of the 11L records (9, 10), layers 10, 11 in #1573.

PARAMS: ``ve_shared.embed.weight`` [V, k], ``ve_shared.proj.weight`` [kv_dim, k], ``ve_shared.scale`` [1],
``ve_shared.layer_scales`` [n_layers_targeted] (table: token group; scales: scalar group).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golf.model.config import ValueEmbedConfig
from golf.model.roles import Label


class ValueEmbedding(nn.Module):
    PARAM_ROLES = {"embed.weight": Label("table", "value_embed", "input"),
                   "proj.weight": Label("matrix", "value_embed", "input"),
                   "scale": Label("control", "value_embed", "input"),
                   "layer_scales": Label("control", "value_embed", "input")}

    def __init__(self, cfg: ValueEmbedConfig, vocab_size: int, kv_dim: int, layers: tuple[int, ...]):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.dim)
        self.proj = nn.Linear(cfg.dim, kv_dim, bias=False)
        self.scale = nn.Parameter(torch.full((1,), cfg.scale_init, dtype=torch.float32))
        self.layer_scales = nn.Parameter(torch.ones(len(layers), dtype=torch.float32))
        self.layers = layers
        self._slot = {layer: j for j, layer in enumerate(layers)}
        with torch.no_grad():
            nn.init.normal_(self.embed.weight, std=cfg.embed_std)
            self.proj.weight.zero_()

    def forward(self, ids: Tensor) -> Tensor:
        h = self.proj(self.embed(ids))  # [B, T, kv_dim]
        return h * self.scale.to(h.dtype)

    def at_layer(self, base: Tensor, layer: int) -> Tensor:
        return base * self.layer_scales[self._slot[layer]].to(base.dtype)
