"""Resolve a data config into concrete shard globs and a tokenizer file, building the demo if asked.

:func:`prepare_data` is what the training entry point calls first: with ``data.demo`` set it builds (or
finds cached) the embedded demo corpus (:mod:`golf.data.demo`); otherwise it resolves the configured
paths against ``data.root`` and checks that they exist and that the tokenizer has ``data.vocab_size``
pieces, so a wrong path fails here with the config key named, before any model is built. For CaseOps data
it also checks that the tokenizer reserves the operators and that the byte sidecar
(``data.val_bytes_pattern``, :mod:`golf.data.sidecar`) pairs up with the validation shards.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from golf.config.errors import ConfigError
from golf.data.caseops_tokenizer import check_caseops_tokenizer
from golf.data.config import CASEOPS, DataConfig
from golf.data.shards import ShardError, list_shards
from golf.data.sidecar import check_token_files, check_validation_bytes
from golf.data.tokenizer import TokenizerError, load_tokenizer


@dataclass(frozen=True)
class DataPaths:
    """Where a run's data is: shard globs (sorted-path order), tokenizer model, vocabulary size, and for
    data scored on original bytes the byte sidecar's glob (None: bytes from the piece tables)."""

    train_pattern: str
    val_pattern: str
    tokenizer_path: Path
    vocab_size: int
    val_bytes_pattern: str | None = None
    text_transform: str | None = None


MISSING_DATA_HINT = ("download it with `python -m golf.data.download --out <data.root>`, "
                     "or train on the embedded demo corpus with data=demo")
MISSING_CASEOPS_HINT = ("download CaseOps data with `python -m golf.data.download --variant sp8192_caseops "
                        "--out <data.root>` or build it with `python -m golf.data.prepare_caseops`")


def _resolve(root: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def prepare_data(cfg: DataConfig, prefix: str = "data") -> DataPaths:
    """Concrete, checked data locations for ``cfg`` (building the demo corpus when ``cfg.demo`` is set)."""
    if cfg.demo is not None:
        # imported here so that `python -m golf.data.demo` does not find itself already imported
        from golf.data.demo import build_demo

        build = build_demo(cfg.demo, cfg.vocab_size, cfg.text_transform)
        return DataPaths(build.train_pattern, build.val_pattern, build.tokenizer_path, cfg.vocab_size,
                         build.val_bytes_pattern, cfg.text_transform)
    root = Path(cfg.root).expanduser()
    hint = MISSING_CASEOPS_HINT if cfg.text_transform == CASEOPS or cfg.val_bytes_pattern else MISSING_DATA_HINT
    tokenizer = _resolve(root, cfg.tokenizer_path)
    if not tokenizer.is_file():
        raise ConfigError(f"{prefix}.tokenizer_path", cfg.tokenizer_path, f"no tokenizer model at {tokenizer}; {hint}")
    try:
        sp = load_tokenizer(tokenizer)
        if cfg.text_transform == CASEOPS:
            check_caseops_tokenizer(sp, tokenizer)
    except TokenizerError as e:
        raise ConfigError(f"{prefix}.tokenizer_path", cfg.tokenizer_path, str(e)) from e
    if sp.vocab_size() != cfg.vocab_size:
        raise ConfigError(f"{prefix}.vocab_size", cfg.vocab_size, f"tokenizer {tokenizer} has {sp.vocab_size()} pieces")
    patterns, files = {}, {}
    for key in ("train_pattern", "val_pattern", "val_bytes_pattern"):
        if getattr(cfg, key) is None:
            patterns[key] = None
            continue
        pattern = str(_resolve(root, getattr(cfg, key)))
        try:
            files[key] = list_shards(pattern)
        except ShardError as e:
            more = f"; {hint}" if "no shard" in str(e) else ""
            raise ConfigError(f"{prefix}.{key}", getattr(cfg, key), f"{e} (data.root={cfg.root!r}){more}") from e
        patterns[key] = pattern
    checks = [("val_pattern", lambda: check_token_files(files["val_pattern"]))]
    if patterns["val_bytes_pattern"] is not None:
        checks.append(("val_bytes_pattern", lambda: check_validation_bytes(files["val_pattern"], files["val_bytes_pattern"])))
    for key, check in checks:
        try:
            check()
        except ShardError as e:
            raise ConfigError(f"{prefix}.{key}", getattr(cfg, key), str(e)) from e
    return DataPaths(patterns["train_pattern"], patterns["val_pattern"], tokenizer, cfg.vocab_size,
                     patterns["val_bytes_pattern"], cfg.text_transform)
