"""Build CaseOps shards and the validation byte sidecar from raw documents (``docs_selected.jsonl``).

The records' CaseOps data (PR #1729 onward; spec ``frontier-1855.md`` §2.3) is the challenge's frozen
document stream, each document written as ``[BOS] + ids(caseops.encode(text))`` with the CaseOps tokenizer
(:mod:`golf.data.caseops_tokenizer`): the first 50,000 documents are the validation split, in shards of
10^8 tokens, each validation shard with its per-token byte sidecar (:mod:`golf.data.sidecar`); every later
document is training data. Those are the defaults here, as in the canonical exporter that produced the
hosted dataset; the script shipped with the #1855 record defaults to 10,000 validation documents and
10^7-token shards, a different validation set (40,000 of the real validation documents land in training)
and shards ten times smaller.

Input: a ``.jsonl`` file with one ``{"text": ...}`` document per line (blank lines skipped), in the
challenge's frozen order. Output under ``--out``, the layout of ``python -m golf.data.download --variant
sp8192_caseops`` (so ``data=fineweb_caseops data.root=OUT`` reads it): ``datasets/<name>/fineweb_{val,
val_bytes,train}_%06d.bin``, the tokenizer copied to ``tokenizers/`` and ``manifest.json`` with the hub
manifest's fields and statistics. Shards are written atomically as they fill; an output directory that
already holds shards is refused unless ``--overwrite``.

CLI: ``python -m golf.data.prepare_caseops --docs docs_selected.jsonl --tokenizer MODEL --out data
[--val-docs 50000] [--shard-tokens 100000000] [--train-shards N] [--workers K]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from golf.data.caseops_tokenizer import (
    CASEOPS_DATASET,
    CASEOPS_TRANSFORM,
    check_caseops_tokenizer,
    encode_caseops,
)
from golf.data.corpus import CorpusError
from golf.data.shards import ShardError, write_shard
from golf.data.sidecar import SPLIT as BYTES_SPLIT
from golf.data.tokenizer import BOS_ID, TokenizerError, load_tokenizer
from golf.files import write_atomic

log = logging.getLogger(__name__)

VAL_DOCS = 50_000
SHARD_TOKENS = 10**8
BATCH_DOCS = 512


class _SplitWriter:
    """Cuts one split's token stream (and, for validation, its byte counts) into fixed-size shards."""

    def __init__(self, directory: Path, split: str, shard_tokens: int, with_bytes: bool, max_files: int | None = None):
        self.directory, self.split, self.shard_tokens, self.max_files = directory, split, shard_tokens, max_files
        self.tokens = np.empty(shard_tokens, dtype=np.uint16)
        self.counts = np.empty(shard_tokens, dtype=np.uint16) if with_bytes else None
        self.fill = self.files = self.tokens_written = self.bytes_written = 0

    def add(self, tokens: np.ndarray, counts: np.ndarray | None, first_doc: int) -> None:
        if counts is not None and counts.size and int(counts.max()) > 65535:
            raise ShardError(f"a token of documents {first_doc}+ stands for {int(counts.max())} bytes, over uint16")
        pos = 0
        while pos < tokens.size and not self.full:
            take = min(self.shard_tokens - self.fill, tokens.size - pos)
            self.tokens[self.fill:self.fill + take] = tokens[pos:pos + take]
            if self.counts is not None:
                self.counts[self.fill:self.fill + take] = counts[pos:pos + take]
            self.fill += take
            pos += take
            if self.fill == self.shard_tokens:
                self.flush()

    @property
    def full(self) -> bool:
        """Whether ``max_files`` shards are written (what is added after that is dropped)."""
        return self.max_files is not None and self.files >= self.max_files

    def flush(self) -> None:
        if self.fill == 0 or self.full:
            return
        name = f"{self.files:06d}.bin"
        write_shard(self.directory / f"fineweb_{self.split}_{name}", self.tokens[:self.fill])
        if self.counts is not None:
            write_shard(self.directory / f"fineweb_{BYTES_SPLIT}_{name}", self.counts[:self.fill])
            self.bytes_written += int(self.counts[:self.fill].sum(dtype=np.int64))
        self.tokens_written += self.fill
        self.files += 1
        self.fill = 0


def read_docs(path: Path) -> Iterator[str]:
    """The documents of a ``docs_selected.jsonl``-style file, streamed; bad lines raise CorpusError."""
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path}:{lineno}: invalid JSON ({e.msg})") from e
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise CorpusError(f'{path}:{lineno}: expected an object with a string "text" field')
            yield record["text"]


def _batches(docs: Iterator[str], val_docs: int, batch_docs: int) -> Iterator[tuple[int, list[str], bool]]:
    """(index of the first document, documents, is validation); no batch spans the split boundary."""
    batch: list[str] = []
    first = 0
    for i, text in enumerate(docs):
        if batch and (len(batch) == batch_docs or i == val_docs):
            yield first, batch, first < val_docs
            batch, first = [], i
        batch.append(text)
    if batch:
        yield first, batch, first < val_docs


_worker_sp = None


def _init_worker(model: str) -> None:
    global _worker_sp
    _worker_sp = load_tokenizer(model)


def _encode_batch(job: tuple[int, list[str], bool]) -> tuple[int, int, np.ndarray, np.ndarray | None]:
    first, texts, is_val = job
    tokens, counts = encode_caseops(_worker_sp, texts, with_bytes=is_val, num_threads=1, first_index=first)
    return first, len(texts), tokens, counts


def prepare_caseops(docs: Path, tokenizer: Path, out: Path, *, val_docs: int = VAL_DOCS,
                    shard_tokens: int = SHARD_TOKENS, train_shards: int | None = None, workers: int = 1,
                    name: str = CASEOPS_DATASET, overwrite: bool = False) -> dict:
    """Write the CaseOps dataset of ``docs`` under ``out`` (layout in the module docstring); returns its
    manifest. Arguments are checked, and the tokenizer loaded, before any document is read."""
    if val_docs < 1:
        raise ValueError(f"val_docs must be >= 1 (got {val_docs}): the validation split comes first")
    if shard_tokens < 1:
        raise ValueError(f"shard_tokens must be >= 1 (got {shard_tokens})")
    if train_shards is not None and train_shards < 0:
        raise ValueError(f"train_shards must be >= 0 (got {train_shards})")
    if not docs.is_file():
        raise CorpusError(f"documents not found: {docs}")
    sp = load_tokenizer(tokenizer)
    check_caseops_tokenizer(sp, tokenizer)
    if sp.vocab_size() > 65536:
        raise TokenizerError(f"{tokenizer} has {sp.vocab_size()} pieces; shards hold uint16 ids")
    data_dir = out / "datasets" / name
    stale = sorted(data_dir.glob("fineweb_*.bin")) if data_dir.is_dir() else []
    if stale and not overwrite:
        raise FileExistsError(f"{data_dir} already holds {len(stale)} shard files; pass --overwrite to replace them")
    for f in stale:
        f.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    val = _SplitWriter(data_dir, "val", shard_tokens, with_bytes=True)
    train = _SplitWriter(data_dir, "train", shard_tokens, with_bytes=False, max_files=train_shards)
    n_docs = 0
    jobs = _batches(read_docs(docs), val_docs, BATCH_DOCS)
    pool = multiprocessing.get_context("spawn").Pool(workers, _init_worker, (str(tokenizer),)) if workers > 1 else None
    try:
        encoded = pool.imap(_encode_batch, jobs) if pool else (
            (first, len(texts), *encode_caseops(sp, texts, with_bytes=is_val, first_index=first))
            for first, texts, is_val in jobs)
        for first, count, tokens, counts in encoded:
            (val if first < val_docs else train).add(tokens, counts, first)
            n_docs = first + count
            if n_docs // 100_000 != (n_docs - count) // 100_000:
                log.info("%d documents: %d val + %d train shards", n_docs, val.files, train.files)
            if train.full:
                break
    finally:
        if pool:
            pool.terminate()
    val.flush()
    if train_shards is None:  # with a shard count, only full shards are written
        train.flush()
    if n_docs < val_docs:
        log.warning("only %d documents: all of them are validation data, none is left for training", n_docs)
    tok_dir = out / "tokenizers"
    tok_dir.mkdir(parents=True, exist_ok=True)
    if not (tok_dir / tokenizer.name).exists() or not (tok_dir / tokenizer.name).samefile(tokenizer):
        shutil.copyfile(tokenizer, tok_dir / tokenizer.name)
    manifest = _manifest(name, tokenizer.name, sp.vocab_size(), val, train, min(n_docs, val_docs), n_docs,
                         shard_tokens, docs)
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())
    log.info("%d documents -> %d val + %d train tokens in %.1f s", n_docs, val.tokens_written,
             train.tokens_written, time.perf_counter() - start)
    return manifest


def _manifest(name, model_name, vocab_size, val, train, docs_val, docs_total, shard_tokens, source) -> dict:
    tokenizer_name = Path(model_name).stem
    return {
        "num_docs": docs_total,
        "num_val_docs": docs_val,
        "shard_size": shard_tokens,
        "append_eos": False,
        "docs_jsonl": str(source),
        "tokenizers": [{"name": tokenizer_name, "kind": "sentencepiece_bpe", "vocab_size": vocab_size,
                        "bos_id": BOS_ID, "model_path": f"tokenizers/{model_name}",
                        "text_transform": CASEOPS_TRANSFORM}],
        "datasets": [{
            "name": name, "tokenizer_name": tokenizer_name, "vocab_size": vocab_size, "bos_id": BOS_ID,
            "train_glob": f"datasets/{name}/fineweb_train_*.bin",
            "val_glob": f"datasets/{name}/fineweb_val_[0-9]*.bin",
            "val_bytes_glob": f"datasets/{name}/fineweb_{BYTES_SPLIT}_*.bin",
            "stats": {"docs_total": docs_total, "docs_val": docs_val, "docs_train": docs_total - docs_val,
                      "files_val": val.files, "files_train": train.files, "tokens_val": val.tokens_written,
                      "tokens_train": train.tokens_written, "bytes_val": val.bytes_written},
        }],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build CaseOps shards + the validation byte sidecar from raw documents.")
    parser.add_argument("--docs", required=True, type=Path, help="docs_selected.jsonl: one {\"text\": ...} per line")
    parser.add_argument("--tokenizer", required=True, type=Path, help="the CaseOps SentencePiece model")
    parser.add_argument("--out", required=True, type=Path, help="data root to write (datasets/, tokenizers/, manifest.json)")
    parser.add_argument("--val-docs", type=int, default=VAL_DOCS, help=f"validation documents (default {VAL_DOCS})")
    parser.add_argument("--shard-tokens", type=int, default=SHARD_TOKENS, help=f"tokens per shard (default {SHARD_TOKENS})")
    parser.add_argument("--train-shards", type=int, default=None, help="stop after this many full training shards")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="encoding processes (default: all cores)")
    parser.add_argument("--name", default=CASEOPS_DATASET, help=f"dataset directory name (default {CASEOPS_DATASET})")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in the output directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        manifest = prepare_caseops(args.docs, args.tokenizer, args.out, val_docs=args.val_docs,
                                   shard_tokens=args.shard_tokens, train_shards=args.train_shards,
                                   workers=args.workers, name=args.name, overwrite=args.overwrite)
    except (CorpusError, TokenizerError, ShardError, ValueError, OSError) as e:
        print(f"prepare_caseops: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    stats = manifest["datasets"][0]["stats"]
    print(f"{args.out / 'datasets' / args.name}: {stats['files_val']} val shard(s) + sidecar, "
          f"{stats['files_train']} train shard(s); {stats['tokens_val']} val tokens, {stats['bytes_val']} val bytes")


if __name__ == "__main__":
    main()
