"""SentencePiece tokenizer: loading (with one clear error), official training settings, document encoding.

The byte accounting of val_bpb (the UTF-8 bytes each target token stands for) is the run kernel's
:func:`golf.kernel.data.piece_bytes` (tables from :func:`golf.kernel.data.byte_tables`); summed over a document it equals the byte length of its
nmt_nfkc-normalized text (``data.md`` §4).

Training uses the settings of the official 1024-piece tokenizer (BPE, byte fallback, split digits,
nmt_nfkc, no dummy prefix, pad/bos/eos/unk = 0/1/2/3, soft vocabulary limit), and documents are encoded
as ``[BOS] + sp.encode(text)`` with no EOS (``download_hf_docs_and_tokenize.py``); the demo builder
(:mod:`golf.data.demo`) uses the training and encoding helpers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

BOS_ID = 1


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable, or does not match the configured vocabulary."""


def load_tokenizer(path: str | os.PathLike, vocab_size: int | None = None) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model; if ``vocab_size`` is given, the model's vocabulary must equal it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise TokenizerError(f"tokenizer model not found: {path}")
    sp = spm.SentencePieceProcessor()
    try:
        sp.load(str(path))
    except (OSError, RuntimeError) as e:
        raise TokenizerError(f"{path} is not a valid SentencePiece model: {e}") from e
    if vocab_size is not None and sp.vocab_size() != vocab_size:
        raise TokenizerError(
            f"tokenizer {path} has {sp.vocab_size()} pieces but the configured vocab_size is {vocab_size}"
        )
    return sp


def _training_sentences(docs: Iterable[str]) -> Iterator[str]:
    for text in docs:
        text = text.replace("\x00", " ").strip()
        if text:
            yield text


def train_tokenizer(
    docs: Iterable[str],
    out_prefix: str | os.PathLike,
    vocab_size: int = 1024,
    character_coverage: float = 0.999,
) -> Path:
    """Train a BPE SentencePiece model with the official settings; writes ``<prefix>.model/.vocab``.

    ``character_coverage`` is the only deviation knob: corpora with many distinct characters (code,
    markup) need a value below 0.999, or training stops with "Vocabulary size is smaller than
    required_chars". Documents longer than SentencePiece's default ``max_sentence_length`` (4192 bytes)
    are skipped by the trainer, as in the official run. Returns the ``.model`` path.
    """
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=_training_sentences(docs),
            model_prefix=str(prefix),
            model_type="bpe",
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name="nmt_nfkc",
            add_dummy_prefix=False,
            pad_id=0,
            bos_id=1,
            eos_id=2,
            unk_id=3,
            hard_vocab_limit=False,
            minloglevel=2,
        )
    except RuntimeError as e:
        hint = ""
        if "required_chars" in str(e):
            hint = f"; lower character_coverage (now {character_coverage}) or raise vocab_size (now {vocab_size})"
        raise TokenizerError(f"tokenizer training for {prefix} failed: {e}{hint}") from e
    return Path(f"{prefix}.model")


def encode_documents(sp: spm.SentencePieceProcessor, docs: Iterable[str]) -> list[int]:
    """``[BOS] + sp.encode(text)`` for each document (raw text, no EOS), concatenated."""
    out: list[int] = []
    for ids in sp.encode(list(docs), out_type=int):
        out.append(BOS_ID)
        out.extend(ids)
    return out
