"""Helpers for the model tests: tiny configs, preset composition, hooks and random parameters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from torch import nn

from golf.model import ArchConfig, as_arch_config, build_model

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
PRESETS = {
    "baseline": 17_059_912,
    "unet11": 27_105_501,
    "pr344": 31_397_062,
    "pr1573": 29_406_940,
    "pr187": 25_222_224,
    "pr295": 25_517_138,
    "pr1493": 35_944_536,
    "pr1855": 35_945_671,
}
# reduced width for behavioural tests of full-depth presets
NARROW = ["arch.model_dim=64", "arch.num_heads=4", "arch.num_kv_heads=2", "arch.vocab_size=64"]


def tiny(**changes) -> ArchConfig:
    """A small baseline-shaped config (d=16, 4 heads of 4 dims, 2 KV heads, vocab 32, 4 layers)."""
    cfg = ArchConfig(vocab_size=32, num_layers=4, model_dim=16, num_heads=4, num_kv_heads=2)
    return dataclasses.replace(cfg, **changes)


def preset(name: str, overrides: list[str] | None = None) -> ArchConfig:
    """Compose ``conf/arch/<name>.yaml`` (with its defaults list) through Hydra."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=None, overrides=[f"+arch={name}", *(overrides or [])])
    return as_arch_config(cfg.arch)


def build(cfg: ArchConfig, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_model(cfg)


@torch.no_grad()
def randomize(model: nn.Module, seed: int = 0, std: float = 0.2) -> nn.Module:
    """Give every parameter random values, so no path of the model is silenced by a zero init."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.copy_(torch.randn(p.shape, generator=g) * std + (1.0 if p.ndim == 1 else 0.0) * 0)
    return model


class Recorder:
    """Records the positional inputs and the outputs of every call of the given modules."""

    def __init__(self, modules: dict[str, nn.Module]):
        self.calls: list[tuple[str, tuple, torch.Tensor]] = []
        self.handles = []
        for name, m in modules.items():
            self.handles.append(m.register_forward_hook(self._hook(name)))

    def _hook(self, name):
        def hook(module, args, output):
            self.calls.append((name, args, output))
        return hook

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def blocks_recorder(model: nn.Module) -> Recorder:
    return Recorder({str(i): b for i, b in enumerate(model.blocks)})


def assert_causal(model: nn.Module, vocab: int = 64) -> None:
    """Changing token 7 changes no logit before position 7 and does change position 7's."""
    ids = torch.randint(0, vocab, (2, 12))
    changed = ids.clone()
    changed[:, 7] = (ids[:, 7] + 5) % vocab
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 7], b[:, 7])
