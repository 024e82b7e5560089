"""Test helpers: compose configs from conf/ exactly as ``python -m golf.train`` does."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# A tiny run of the demo experiment: seconds on 2 CPU cores.
TINY = [
    "experiment=demo",
    "arch.num_layers=2",
    "arch.model_dim=32",
    "arch.num_heads=2",
    "arch.num_kv_heads=1",
    "train.iterations=6",
    "train.batch_tokens=512",
    "train.seq_len=64",
    "train.val_every=3",
    "train.log_every=1",
    "eval.max_tokens=2048",
    "logger=none",
]


def compose_config(overrides: list[str] | None = None) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides or []))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
