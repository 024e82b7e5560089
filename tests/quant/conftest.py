"""Small state dicts with the model's parameter names, and preset loading, for the quant tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from golf.quant.config import QuantConfig
from tests.helpers import compose_config

PRESET_DIR = Path(__file__).resolve().parents[2] / "conf" / "quant"
PRESETS = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str, *, small: int | None = 256) -> QuantConfig:
    """A preset as a typed QuantConfig; ``small`` lowers the size thresholds so tiny tensors quantize."""
    merged = OmegaConf.merge(OmegaConf.structured(QuantConfig), compose_config([f"quant={name}"]).quant)
    cfg: QuantConfig = OmegaConf.to_object(merged)
    if small is not None:
        cfg.passthrough_max_numel = small
        if cfg.prune is not None:
            cfg.prune.select = f"ndim=2 & numel>{small}"
    return cfg


def named_state_dict(layers: int = 10, d: int = 32, vocab: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Baseline names (spec §1.5) plus a bigram hash and SmearGate, with trained-like random values."""
    g = torch.Generator().manual_seed(seed)

    def mat(rows: int, cols: int) -> torch.Tensor:
        w = torch.randn(rows, cols, generator=g) * 0.05 * (1 + torch.rand(rows, 1, generator=g))
        w[0, 0] = 0.6  # an outlier, so clip rules differ
        return w

    kv = d // 2
    sd = {"tok_emb.weight": mat(vocab, d).bfloat16()}
    for i in range(layers):
        p = f"blocks.{i}."
        sd |= {p + "attn.c_q.weight": mat(d, d), p + "attn.c_k.weight": mat(kv, d),
               p + "attn.c_v.weight": mat(kv, d), p + "attn.proj.weight": mat(d, d),
               p + "attn.q_gain": torch.full((4,), 1.5), p + "mlp.fc.weight": mat(2 * d, d),
               p + "mlp.proj.weight": mat(d, 2 * d), p + "attn_scale": torch.rand(d, generator=g),
               p + "mlp_scale": torch.rand(d, generator=g), p + "resid_mix": torch.rand(2, d, generator=g)}
    sd |= {"skip_weights": torch.rand(layers // 2, d, generator=g), "bigram.embed.weight": mat(128, 16),
           "bigram.proj.weight": mat(d, 16), "bigram.scale": torch.tensor([0.05]), "smear.gate": torch.zeros(d)}
    return sd


@pytest.fixture
def state_dict() -> dict[str, torch.Tensor]:
    return named_state_dict()
