"""What test-time training adapts, and with which optimizer (used by :mod:`golf.eval.ttt`).

Everything here acts on the evaluator's private copy of the model, never on the model it was handed.

* ``adapt=all``: every parameter trains (the PR #1493 record adapts all 113 tensors, the bf16
  embedding included), except those of the blocks named by ``freeze_layers`` (earlier legal-TTT
  records froze the first blocks).
* ``adapt=lora``: the base weights are frozen and each chosen projection ``W`` (an ``nn.Linear``) gets
  a rank-r adapter, ``y = W x + (α/r)·B A x`` with ``A`` [r, in] uniform in ±1/√in and ``B`` [out, r]
  zero, so the adapted model starts equal to the base one (LoRA, Hu et al. 2021; LoRA TTT as in the
  2026-03-17 record). ``A`` is drawn from a fixed-seed generator, so re-scoring is reproducible.

The optimizer is SGD with momentum (PyTorch seeds each buffer with the first gradient; buffers persist
across chunks, as in the record) or AdamW.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from golf.config.errors import ConfigError
from golf.eval.config import LORA_TARGETS, TTTConfig
from golf.model.config import parse_layers

LORA_SEED = 1493


class LoRAAdapter(nn.Module):
    """The low-rank update ``(α/r)·B A x`` of one projection; ``B = 0`` at the start."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.A = nn.Parameter(torch.empty(rank, in_features).uniform_(-bound, bound, generator=generator))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.A), self.B) * self.scale  # [..., in] -> [..., r] -> [..., out]


def _add_adapter_output(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output + module.lora(args[0])


def lora_projections(model: nn.Module, targets: list[str]) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` modules named by ``targets`` (keys of :data:`LORA_TARGETS`), in model order."""
    suffixes = {LORA_TARGETS[t]: t for t in targets}
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and any(name == s or name.endswith("." + s) for s in suffixes)]
    for suffix, target in suffixes.items():
        if not any(name == suffix or name.endswith("." + suffix) for name, _ in found):
            raise ConfigError("eval.ttt.lora_targets", target,
                              f"this model has no '{suffix}' projection (e.g. a tied head has no lm_head)")
    return found


def prepare_adaptation(model: nn.Module, cfg: TTTConfig) -> list[nn.Parameter]:
    """Set up ``model`` (a private copy) for test-time training; returns the parameters that train."""
    if cfg.adapt == "lora":
        for p in model.parameters():
            p.requires_grad_(False)
        generator = torch.Generator().manual_seed(LORA_SEED)
        params = []
        for _, linear in lora_projections(model, cfg.lora_targets):
            weight = linear.weight
            adapter = LoRAAdapter(linear.in_features, linear.out_features, cfg.lora_rank, cfg.lora_alpha, generator)
            linear.lora = adapter.to(device=weight.device)
            linear.register_forward_hook(_add_adapter_output)
            params.extend(adapter.parameters())
        return params
    frozen = _frozen_prefixes(model, cfg.freeze_layers)
    params = []
    for name, p in model.named_parameters():
        trains = not any(name.startswith(prefix) for prefix in frozen)
        p.requires_grad_(trains)
        if trains:
            params.append(p)
    if not params:
        raise ConfigError("eval.ttt.freeze_layers", cfg.freeze_layers, "freezes every parameter")
    return params


def _frozen_prefixes(model: nn.Module, selector: str) -> tuple[str, ...]:
    if selector in ("", "none"):
        return ()
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ConfigError("eval.ttt.freeze_layers", selector, "this model has no blocks to freeze")
    layers = parse_layers(selector, len(blocks), "eval.ttt.freeze_layers")
    return tuple(f"blocks.{i}." for i in layers)


def build_ttt_optimizer(params: list[nn.Parameter], cfg: TTTConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.momentum, cfg.beta2), weight_decay=cfg.weight_decay)


def chunk_lr(cfg: TTTConfig, chunk: int, num_chunks: int) -> float:
    """lr of ``chunk``: cosine from ``lr`` at chunk 0 to 0 at the last chunk (which is not trained)."""
    if cfg.schedule == "constant":
        return cfg.lr
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * chunk / max(num_chunks - 1, 1)))
