"""Resolve a data config into concrete shard globs and a tokenizer file, building the demo if asked.

:func:`prepare_data` is what the training entry point calls first: with ``data.demo`` set it builds (or
finds cached) the embedded demo corpus (:mod:`golf.data.demo`); otherwise it resolves the configured
paths against ``data.root`` and checks that they exist and that the tokenizer has ``data.vocab_size``
pieces, so a wrong path fails here with the config key named, before any model is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from golf.config.errors import ConfigError
from golf.data.config import DataConfig
from golf.data.shards import ShardError, list_shards
from golf.data.tokenizer import TokenizerError, load_tokenizer


@dataclass(frozen=True)
class DataPaths:
    """Where a run's data is: shard globs (sorted-path order), tokenizer model, vocabulary size."""

    train_pattern: str
    val_pattern: str
    tokenizer_path: Path
    vocab_size: int


MISSING_DATA_HINT = ("download it with `python -m golf.data.download --out <data.root>`, "
                     "or train on the embedded demo corpus with data=demo")


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def prepare_data(cfg: DataConfig, prefix: str = "data") -> DataPaths:
    """Concrete, checked data locations for ``cfg`` (building the demo corpus when ``cfg.demo`` is set)."""
    if cfg.demo is not None:
        # imported here so that `python -m golf.data.demo` does not find itself already imported
        from golf.data.demo import build_demo

        build = build_demo(cfg.demo, cfg.vocab_size)
        return DataPaths(build.train_pattern, build.val_pattern, build.tokenizer_path, cfg.vocab_size)
    root = Path(cfg.root).expanduser()
    tokenizer = _resolve(root, cfg.tokenizer_path)
    if not tokenizer.is_file():
        raise ConfigError(f"{prefix}.tokenizer_path", cfg.tokenizer_path, f"no tokenizer model at {tokenizer}; {MISSING_DATA_HINT}")
    try:
        pieces = load_tokenizer(tokenizer).vocab_size()
    except TokenizerError as e:
        raise ConfigError(f"{prefix}.tokenizer_path", cfg.tokenizer_path, str(e)) from e
    if pieces != cfg.vocab_size:
        raise ConfigError(f"{prefix}.vocab_size", cfg.vocab_size, f"tokenizer {tokenizer} has {pieces} pieces")
    patterns = {}
    for key in ("train_pattern", "val_pattern"):
        pattern = str(_resolve(root, getattr(cfg, key)))
        try:
            list_shards(pattern)
        except ShardError as e:
            hint = f"; {MISSING_DATA_HINT}" if "no shard" in str(e) else ""
            raise ConfigError(f"{prefix}.{key}", getattr(cfg, key), f"{e} (data.root={cfg.root!r}){hint}") from e
        patterns[key] = pattern
    return DataPaths(patterns["train_pattern"], patterns["val_pattern"], tokenizer, cfg.vocab_size)
