"""Embedded demo data: text sources -> trained tokenizer + official-format train and val shards.

Lets every run and test work on a fresh machine with no network and no FineWeb files. Documents from
the configured sources (:mod:`golf.data.corpus`; by default the documentation that ships with Python)
are shuffled once with a fixed seed; the first ``val_docs`` form the validation split, as the official
export takes the first 50,000 documents of its frozen shuffle (spec ``data.md`` §1). A 1024-piece BPE
tokenizer is trained with the official settings on the training documents only, and each split is
encoded as ``[BOS] + pieces`` per document into ``fineweb_{split}_%06d.bin`` shards.

With ``text_transform="caseops"`` (``data=demo_caseops``) every document goes through the CaseOps
transform (:mod:`golf.data.caseops`) first, the tokenizer reserves the four operator pieces
(:mod:`golf.data.caseops_tokenizer`) and the validation split gets its per-token byte sidecar
``fineweb_val_bytes_*.bin`` (:mod:`golf.data.sidecar`), as in the record's CaseOps data.

Builds are cached in ``<cache_dir>/<key>/``, where the key hashes the sources' content and every
setting. A build goes to a private temporary directory that is renamed into place when complete, so
concurrent builders (several ranks, several runs) are safe: the first rename wins and the others use
its result. Layout of a build: ``tokenizers/demo_<V>_bpe.model``,
``datasets/demo_sp<V>/fineweb_{train,val}_*.bin`` and ``manifest.json`` (settings and statistics); a
CaseOps build names them ``demo_<V>_bpe_caseops.model`` and ``demo_sp<V>_caseops/`` and adds the sidecar.

CLI: ``python -m golf.data.demo --out DIR [--source FILE ...] [--caseops]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from golf.data.caseops_tokenizer import check_caseops_tokenizer, encode_caseops, train_caseops_tokenizer
from golf.data.config import CASEOPS, PYTHON_DOCS, DataConfig, DemoConfig, validate_data
from golf.data.corpus import CorpusError, load_source, source_fingerprint
from golf.data.shards import write_split_shards
from golf.data.sidecar import write_validation_bytes
from golf.data.tokenizer import encode_documents, load_tokenizer, train_tokenizer

log = logging.getLogger(__name__)

BUILD_FORMAT = 1  # bump when the builder's output changes, to invalidate old caches
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DemoBuild:
    """A finished demo build."""

    directory: Path
    train_pattern: str
    val_pattern: str
    tokenizer_path: Path
    stats: dict
    val_bytes_pattern: str | None = None  # the byte sidecar of a CaseOps build


def demo_key(demo: DemoConfig, vocab_size: int, text_transform: str | None = None) -> str:
    """Cache key: a hash of the builder version, the sources' content and all settings."""
    spec = {
        "format": BUILD_FORMAT,
        "vocab_size": vocab_size,
        "sources": [source_fingerprint(s) for s in demo.sources],
        "val_docs": demo.val_docs,
        "seed": demo.seed,
        "character_coverage": demo.character_coverage,
        "shard_tokens": demo.shard_tokens,
    }
    if text_transform is not None:  # absent for raw text, so the keys of existing builds stay valid
        spec["text_transform"] = text_transform
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _layout(directory: Path, vocab_size: int, text_transform: str | None) -> DemoBuild:
    suffix = "" if text_transform is None else f"_{text_transform}"
    data_dir = directory / "datasets" / f"demo_sp{vocab_size}{suffix}"
    manifest = directory / MANIFEST
    stats = json.loads(manifest.read_text())["stats"] if manifest.is_file() else {}
    caseops = text_transform == CASEOPS
    return DemoBuild(
        directory=directory,
        train_pattern=str(data_dir / "fineweb_train_*.bin"),
        # with a sidecar next to them, the token shards alone: fineweb_val_*.bin would match both
        val_pattern=str(data_dir / ("fineweb_val_[0-9]*.bin" if caseops else "fineweb_val_*.bin")),
        tokenizer_path=directory / "tokenizers" / f"demo_{vocab_size}_bpe{suffix}.model",
        stats=stats,
        val_bytes_pattern=str(data_dir / "fineweb_val_bytes_*.bin") if caseops else None,
    )


def build_demo(demo: DemoConfig, vocab_size: int, text_transform: str | None = None) -> DemoBuild:
    """Build the demo corpus once (or find it in the cache) and return where it is."""
    cache = Path(demo.cache_dir).expanduser()
    final = cache / demo_key(demo, vocab_size, text_transform)
    if (final / MANIFEST).is_file():
        log.info("demo data: cached at %s", final)
        return _layout(final, vocab_size, text_transform)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".build-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _build_into(tmp, demo, vocab_size, text_transform)
        publish(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _layout(final, vocab_size, text_transform)


def publish(tmp: Path, final: Path) -> None:
    """Move a finished build into place; if another builder got there first, keep theirs."""
    try:
        os.rename(tmp, final)
    except OSError as e:
        if not (final / MANIFEST).is_file():
            raise CorpusError(f"cannot move demo build {tmp} to {final}: {e}") from e
        log.info("demo data: another process finished %s first; using it", final)


def _build_into(out: Path, demo: DemoConfig, vocab_size: int, text_transform: str | None) -> None:
    start = time.perf_counter()
    docs = [doc for source in demo.sources for doc in load_source(source)]
    if len(docs) <= demo.val_docs:
        raise CorpusError(
            f"demo sources {list(demo.sources)} hold {len(docs)} documents; need more than "
            f"data.demo.val_docs={demo.val_docs} to leave any for training"
        )
    random.Random(demo.seed).shuffle(docs)
    val, train = docs[: demo.val_docs], docs[demo.val_docs :]
    layout = _layout(out, vocab_size, text_transform)
    trainer = train_caseops_tokenizer if text_transform == CASEOPS else train_tokenizer
    model = trainer(train, layout.tokenizer_path.with_suffix(""), vocab_size, demo.character_coverage)
    sp = load_tokenizer(model)
    if sp.vocab_size() != vocab_size:
        raise CorpusError(
            f"demo sources {list(demo.sources)} are too small to learn {vocab_size} pieces "
            f"(got {sp.vocab_size()}); add text or lower data.vocab_size"
        )
    data_dir = Path(layout.train_pattern).parent
    extra = {}
    if text_transform == CASEOPS:
        check_caseops_tokenizer(sp, model)
        val_tokens, val_bytes = encode_caseops(sp, val, with_bytes=True)
        train_tokens, _ = encode_caseops(sp, train, with_bytes=False)
        write_validation_bytes(val_bytes, data_dir, demo.shard_tokens)
        extra = {"bytes_val": int(val_bytes.sum())}
    else:
        val_tokens = encode_documents(sp, val)
        train_tokens = encode_documents(sp, train)
    val_files = write_split_shards(val_tokens, data_dir, "val", demo.shard_tokens)
    train_files = write_split_shards(train_tokens, data_dir, "train", demo.shard_tokens)
    stats = {
        "docs_total": len(docs),
        "docs_val": len(val),
        "docs_train": len(train),
        "tokens_val": len(val_tokens),
        "tokens_train": len(train_tokens),
        "files_val": len(val_files),
        "files_train": len(train_files),
        **extra,
        "build_seconds": round(time.perf_counter() - start, 2),
    }
    settings = {**asdict(demo), "vocab_size": vocab_size, "text_transform": text_transform, "format": BUILD_FORMAT}
    (out / MANIFEST).write_text(json.dumps({"settings": settings, "stats": stats}, indent=2) + "\n")
    log.info(
        "demo data: built %d docs (%d val) -> %d train + %d val tokens in %.1f s",
        stats["docs_total"], stats["docs_val"], stats["tokens_train"], stats["tokens_val"], stats["build_seconds"],
    )


def main(argv: list[str] | None = None) -> None:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(description="Build (or find in the cache) the embedded demo data set.")
    parser.add_argument("--out", required=True, help="cache directory; the build goes to OUT/<key>/")
    parser.add_argument("--source", action="append", help=f".txt/.jsonl file or {PYTHON_DOCS!r} (repeatable)")
    parser.add_argument("--vocab-size", type=int, default=1024)
    parser.add_argument("--val-docs", type=int, default=defaults.val_docs)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--character-coverage", type=float, default=defaults.character_coverage)
    parser.add_argument("--shard-tokens", type=int, default=defaults.shard_tokens)
    parser.add_argument("--caseops", action="store_true", help="CaseOps text, operator tokenizer and byte sidecar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    demo = DemoConfig(
        cache_dir=args.out,
        sources=args.source or [PYTHON_DOCS],
        val_docs=args.val_docs,
        seed=args.seed,
        character_coverage=args.character_coverage,
        shard_tokens=args.shard_tokens,
    )
    text_transform = CASEOPS if args.caseops else None
    validate_data(DataConfig(train_pattern=None, val_pattern=None, tokenizer_path=None, vocab_size=args.vocab_size,
                             text_transform=text_transform, demo=demo))
    build = build_demo(demo, args.vocab_size, text_transform)
    print(f"train_pattern: {build.train_pattern}")
    print(f"val_pattern: {build.val_pattern}")
    if build.val_bytes_pattern:
        print(f"val_bytes_pattern: {build.val_bytes_pattern}")
    print(f"tokenizer_path: {build.tokenizer_path}")


if __name__ == "__main__":
    main()
