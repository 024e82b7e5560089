"""Initialisation schemes (spec §1.5, §2.11), applied once after the model is built.

In order:
1. orthogonal init (gain 1) of the weights selected by the seed's rule (:class:`OrthoRule`): every
   Linear (#344), Linears whose smaller dim is > 1 (#507), Linears with both dims >= 64 (03-22 lineage,
   #1573), or every 2-D parameter with more than 65,536 elements, embeddings included (#295);
   "Linear" covers ``nn.Linear`` and the input-dependent attention gate;
2. output projections (attention/MLP ``proj``, untied ``lm_head``) back to exactly 0, whatever the rule;
3. muP output scaling: the remaining non-zero ``*.proj`` weights (hash / value-embedding projections)
   times 1/sqrt(2L) (03-22 lineage; a no-op on the zero output projections of every seed);
4. token embedding: N(0, embed_std^2) when tied (N(0, 1) untied, as the baseline), optionally followed
   by the Overtone spectral init (2026-03-19 Overtone record; #187, #295): SVD E = U S V^T and
   S_k <- S_1 k^(-1/2);
5. ``resid_mix``: plain [1; 0] or the phase transition of #295: phi_i = sigma(3 (i/(L-1) - 0.5)),
   [phi_i; 1 - phi_i].

Everything else keeps the init its module gave it (PyTorch's kaiming-uniform Linear default, zero hash
tables, ...). A model on the meta device is left untouched.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from golf.model.attn_gate import InputGate
from golf.model.config import ArchConfig, EmbedInit, OrthoRule, ResidMixInit

# numel above which #295's rule (its int8 passthrough threshold) initialises a matrix orthogonally
ORTHO_NUMEL_THRESHOLD = 65_536


def output_linear(in_features: int, out_features: int) -> nn.Linear:
    """A bias-free Linear that starts at exactly zero (and stays zero through every init rule)."""
    layer = nn.Linear(in_features, out_features, bias=False)
    nn.init.zeros_(layer.weight)
    layer.zero_init = True
    return layer


def _is_output(module: nn.Module) -> bool:
    return getattr(module, "zero_init", False)


def orthogonal_targets(model: nn.Module, rule: OrthoRule) -> list[tuple[str, Tensor]]:
    """(name, weight) of every parameter ``rule`` initialises orthogonally."""
    if rule is OrthoRule.matrices_numel_gt_65536:
        return [(n, p) for n, p in model.named_parameters() if p.ndim == 2 and p.numel() > ORTHO_NUMEL_THRESHOLD]
    keep = {
        OrthoRule.all_linears: lambda w: True,
        OrthoRule.linears_min_dim_gt_1: lambda w: min(w.shape) > 1,
        OrthoRule.linears_dims_ge_64: lambda w: min(w.shape) >= 64,
    }[rule]
    return [
        (f"{name}.weight", m.weight)
        for name, m in model.named_modules()
        if isinstance(m, (nn.Linear, InputGate)) and not _is_output(m) and keep(m.weight)
    ]


def overtone_(weight: Tensor) -> None:
    """Keep the singular vectors and the top singular value, impose S_k = S_1 k^(-1/2)."""
    U, S, Vh = torch.linalg.svd(weight.float(), full_matrices=False)
    target = S[0] * torch.arange(1, S.numel() + 1, dtype=S.dtype, device=S.device) ** -0.5
    weight.copy_((U * target[None, :]) @ Vh)


def phase_mix(index: int, num_layers: int) -> float:
    """#295's phase-transition weight of the residual stream in block ``index``."""
    return 1.0 / (1.0 + math.exp(-3.0 * (index / max(num_layers - 1, 1) - 0.5)))


@torch.no_grad()
def initialize(model: nn.Module, cfg: ArchConfig) -> None:
    """Apply the init scheme of ``cfg.init`` / ``cfg.residual`` to a freshly built GPT."""
    if any(p.is_meta for p in model.parameters()):
        return
    ic = cfg.init
    if ic.orthogonal is not None:
        for _, w in orthogonal_targets(model, ic.orthogonal):
            nn.init.orthogonal_(w, gain=1.0)
    for m in model.modules():
        if _is_output(m):
            m.weight.zero_()
    if ic.mup_proj_scale:
        scale = 1.0 / math.sqrt(2 * cfg.num_layers)
        for name, m in model.named_modules():
            if isinstance(m, nn.Linear) and not _is_output(m) and name.split(".")[-1] == "proj":
                m.weight.mul_(scale)
    emb = model.tok_emb.weight
    nn.init.normal_(emb, mean=0.0, std=ic.embed_std if cfg.tie_embeddings else 1.0)
    if ic.embed is EmbedInit.overtone:
        overtone_(emb)
    for i, block in enumerate(model.blocks):
        phi = phase_mix(i, cfg.num_layers) if cfg.residual.mix_init is ResidMixInit.phase else 1.0
        block.resid_mix[0].fill_(phi)
        block.resid_mix[1].fill_(1.0 - phi)
