"""Config schema of the ``data`` group: where the shards and the tokenizer come from.

Two kinds of data: files on disk in the official layout (``conf/data/fineweb_sp1024.yaml``, the
default, produced by ``python -m golf.data.download``), or the embedded demo corpus built on first use
(``conf/data/demo.yaml``; :mod:`golf.data.demo`). The demo is on when ``demo`` is set; it then builds
its own shards and tokenizer, so the paths must be left null. ``text_transform: caseops`` marks CaseOps
data (:mod:`golf.data.caseops`; ``fineweb_caseops.yaml``, ``demo_caseops.yaml``), which is scored on
original bytes from the per-token byte sidecar named by ``val_bytes_pattern`` (:mod:`golf.data.sidecar`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.config.errors import ConfigError

PYTHON_DOCS = "python-docs"
MAX_VOCAB = 65536
MIN_DEMO_VOCAB = 261  # 4 special ids + 256 byte-fallback pieces + at least one merged piece
CASEOPS = "caseops"
TEXT_TRANSFORMS = (None, CASEOPS)
MIN_CASEOPS_DEMO_VOCAB = MIN_DEMO_VOCAB + 4  # and the four reserved operator pieces
SOURCE_SUFFIXES = (".txt", ".jsonl")


@dataclass
class DemoConfig:
    """Settings of the embedded demo corpus builder; every field is part of the cache key."""

    # Built corpora live in <cache_dir>/<hash of sources + settings>/ ("~" is expanded).
    cache_dir: str = "~/.cache/golf/demo"
    # Text sources: "python-docs" (the language reference and stdlib docstrings shipped with Python),
    # or paths to .txt files (one document per blank-line-separated paragraph) or .jsonl files
    # (one {"text": ...} document per line).
    sources: list[str] = field(default_factory=lambda: [PYTHON_DOCS])
    # The first val_docs documents (after the seeded shuffle) form the validation split.
    val_docs: int = 500
    # Seed of the one-time document shuffle (the official export is a frozen shuffle too).
    seed: int = 1337
    # SentencePiece character coverage; corpora with many distinct characters need less than 0.999.
    character_coverage: float = 0.999
    # Tokens per shard file (official: 10**8); the last shard of each split is shorter.
    shard_tokens: int = 100_000_000


@dataclass
class ShuffleConfig:
    """Shuffled-sequence training (#1394 lineage, #1493; :mod:`golf.kernel.data`) instead of the
    official sequential stream: each rank samples whole sequences of its own shards without replacement."""

    # None = the generator is seeded by the rank alone (the record: data order independent of the run
    # seed); an integer seeds it by (seed, rank)
    seed: int | None = None


@dataclass
class PackingConfig:
    """Document-packed training rows (PR #1530 lineage, #1855; :mod:`golf.kernel.data`): every rank reads
    the same shards in order, one row of batch_tokens / (world x grad_accum_steps) tokens per micro-step,
    each shard entered at its first document start. Pair it with arch.attention.document, which keeps
    attention inside each document. Rows are entered at data.bos_id; no fields of its own."""


@dataclass
class DataConfig:
    """Training/validation shards, tokenizer and vocabulary size."""

    # Name of the data option, recorded with the run.
    name: str = "fineweb_sp1024"
    # Directory that relative paths below are resolved against (relative to the working directory).
    root: str = "data"
    # Glob of training shards (official format), sorted by path; relative paths are under root.
    train_pattern: str | None = "datasets/fineweb10B_sp1024/fineweb_train_*.bin"
    # Glob of validation shards; evaluation/tests only, never trained on. It must not match the byte
    # sidecar (fineweb_val_bytes_*.bin) where there is one: write fineweb_val_[0-9]*.bin there.
    val_pattern: str | None = "datasets/fineweb10B_sp1024/fineweb_val_*.bin"
    # Glob of the per-token byte sidecar of the validation shards (fineweb_val_bytes_*.bin, one file per
    # validation shard, one uint16 per token: the original UTF-8 bytes that token stands for); val_bpb
    # divides by these instead of the tokenizer's piece tables. Required with text_transform: caseops;
    # null = piece tables. Relative paths are under root.
    val_bytes_pattern: str | None = None
    # SentencePiece model file.
    tokenizer_path: str | None = "tokenizers/fineweb_1024_bpe.model"
    # Tokenizer vocabulary size; the model file must have exactly this many pieces.
    vocab_size: int = 1024
    # The token id that starts every document (BOS; 1 in every golf and challenge tokenizer): the packed
    # loader enters shards there, and arch.bos_id (SmearGate's BOS mask, document-aware attention) follows it.
    bos_id: int = 1
    # Text transform applied to every document before tokenization: null (raw text) or "caseops" (ASCII
    # capitals as four operator tokens, PR #1729; the tokenizer must reserve ids 4-7 for the operators).
    text_transform: str | None = None
    # Embedded demo corpus; None = use the files above.
    demo: DemoConfig | None = None
    # Shuffled-sequence training loader; None = the official sequential stream.
    shuffle: ShuffleConfig | None = None
    # Document-packed training rows (exclusive with shuffle); None = rows of train.seq_len tokens.
    packing: PackingConfig | None = None


def validate_data(cfg: DataConfig, prefix: str = "data") -> None:
    """Cheap checks of a data config (no file access); raises :class:`ConfigError`."""
    if not 0 < cfg.vocab_size <= MAX_VOCAB:
        raise ConfigError(f"{prefix}.vocab_size", cfg.vocab_size, f"must be in (0, {MAX_VOCAB}] (uint16 shards)")
    if not 0 <= cfg.bos_id < cfg.vocab_size:
        raise ConfigError(f"{prefix}.bos_id", cfg.bos_id, f"must be a token id in [0, vocab_size {cfg.vocab_size})")
    if not cfg.root:
        raise ConfigError(f"{prefix}.root", cfg.root, "must be a directory path")
    if cfg.text_transform not in TEXT_TRANSFORMS:
        raise ConfigError(f"{prefix}.text_transform", cfg.text_transform, f"must be null or {CASEOPS!r}")
    paths = ("train_pattern", "val_pattern", "tokenizer_path")
    if cfg.demo is None:
        for key in paths:
            if not getattr(cfg, key):
                raise ConfigError(f"{prefix}.{key}", getattr(cfg, key), "is required when data.demo is not set")
        if cfg.text_transform == CASEOPS and not cfg.val_bytes_pattern:
            raise ConfigError(
                f"{prefix}.val_bytes_pattern", cfg.val_bytes_pattern,
                "is required with text_transform=caseops (CaseOps text is scored on its original bytes, "
                "which only the byte sidecar holds)",
            )
        return
    for key in (*paths, "val_bytes_pattern"):
        if getattr(cfg, key) is not None:
            raise ConfigError(
                f"{prefix}.{key}", getattr(cfg, key), "must be null when data.demo is set (the demo builds its own)"
            )
    _validate_demo(cfg.demo, cfg.vocab_size, cfg.text_transform, prefix)


def validate_packing(cfg: DataConfig, *, row_tokens: int, micro_batch_tokens: str,
                     ntk_reference_len: int | None, prefix: str = "data") -> None:
    """Cross-group checks of document-packed rows of ``row_tokens`` tokens (batch / (world x accum))."""
    if cfg.packing is None:
        return
    if cfg.shuffle is not None:
        raise ConfigError(f"{prefix}.shuffle", {"seed": cfg.shuffle.seed},
                          f"cannot be combined with {prefix}.packing (one training loader)")
    if str(micro_batch_tokens) != "auto":
        raise ConfigError("train.micro_batch_tokens", micro_batch_tokens,
                          f"must be auto with {prefix}.packing: each micro-batch is one packed row of {row_tokens} tokens")
    if ntk_reference_len is not None and row_tokens > ntk_reference_len:
        raise ConfigError("arch.attention.rope.ntk_reference_len", ntk_reference_len,
                          f"the NTK rescale would fire on every packed training row of {row_tokens} tokens "
                          "(RoPE positions run over the whole row); set it to null with data.packing")


def _validate_demo(demo: DemoConfig, vocab_size: int, text_transform: str | None, data_prefix: str) -> None:
    least, what = MIN_DEMO_VOCAB, "4 special + 256 byte pieces + merges"
    if text_transform == CASEOPS:
        least, what = MIN_CASEOPS_DEMO_VOCAB, "4 special + 4 CaseOps operators + 256 byte pieces + merges"
    if vocab_size < least:
        raise ConfigError(
            f"{data_prefix}.vocab_size", vocab_size, f"the demo tokenizer needs at least {least} pieces ({what})"
        )
    prefix = f"{data_prefix}.demo"
    if not demo.cache_dir:
        raise ConfigError(f"{prefix}.cache_dir", demo.cache_dir, "must be a directory path")
    if not demo.sources:
        raise ConfigError(f"{prefix}.sources", list(demo.sources), f"needs at least one source (e.g. {PYTHON_DOCS!r})")
    for i, src in enumerate(demo.sources):
        if src != PYTHON_DOCS and not str(src).endswith(SOURCE_SUFFIXES):
            raise ConfigError(
                f"{prefix}.sources[{i}]", src, f"must be {PYTHON_DOCS!r} or a path ending in .txt or .jsonl"
            )
    if demo.val_docs < 1:
        raise ConfigError(f"{prefix}.val_docs", demo.val_docs, "must be >= 1")
    if not 0.0 < demo.character_coverage <= 1.0:
        raise ConfigError(f"{prefix}.character_coverage", demo.character_coverage, "must be in (0, 1]")
    if demo.shard_tokens < 1:
        raise ConfigError(f"{prefix}.shard_tokens", demo.shard_tokens, "must be >= 1")
