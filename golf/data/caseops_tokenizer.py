"""SentencePiece on CaseOps text: the reserved operator pieces, training, and encoding with original bytes.

The record's tokenizer (PR #1729, ``fineweb_8192_bpe_lossless_caps_caseops_v1_reserved``; spec
``frontier-1855.md`` §2.2) is BPE trained on CaseOps-encoded text (:mod:`golf.data.caseops`) with the
official settings of :mod:`golf.data.tokenizer` plus the four operators as ``user_defined_symbols``, so
they are ids 4-7 (TITLE, ALLCAPS, CAPNEXT, ESC), each always one piece, and byte pieces follow at 8.
:func:`train_caseops_tokenizer` trains such a model (the demo's), :func:`check_caseops_tokenizer` checks
one, and :func:`encode_caseops` writes documents as ``[BOS] + ids(encode(text))`` (raw text, no EOS, as
the canonical exporter) with, on request, each token's original UTF-8 byte count: the per-token byte
sidecar of spec §2.4 (BOS counts 0; the rest comes from the pieces' surfaces through
:func:`golf.data.caseops.original_byte_counts`). Every document's counts are checked to add up to its
UTF-8 length less the bytes the tokenizer drops at its two ends (leading and trailing whitespace).
Used by :mod:`golf.data.prepare_caseops` and the demo builder (:mod:`golf.data.demo`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sentencepiece as spm

from golf.data import caseops
from golf.data.tokenizer import BOS_ID, TokenizerError

FIRST_OPERATOR_ID = 4  # ids 4..7 = TITLE, ALLCAPS, CAPNEXT, ESC
CASEOPS_TRANSFORM = "lossless_caps_caseops_v1"  # the transform's name in the hosted dataset's manifest
CASEOPS_DATASET = "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"  # the hosted dataset's name


def train_caseops_tokenizer(
    docs: Sequence[str], out_prefix: str | os.PathLike, vocab_size: int, character_coverage: float = 0.999
) -> Path:
    """Train a BPE model on the CaseOps encoding of ``docs``; writes ``<prefix>.model/.vocab``.

    Documents are cleaned as the official trainer's input (``\\x00`` to space, stripped, empty skipped)
    before the transform. Settings: those of the official tokenizer and the four reserved operators.
    """
    prefix = Path(out_prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    cleaned = (doc.replace("\x00", " ").strip() for doc in docs)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=(caseops.encode(doc) for doc in cleaned if doc),
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
            user_defined_symbols=list(caseops.OPERATORS),
            hard_vocab_limit=False,
            minloglevel=2,
        )
    except RuntimeError as e:
        raise TokenizerError(f"CaseOps tokenizer training for {prefix} failed: {e}") from e
    return Path(f"{prefix}.model")


def check_caseops_tokenizer(sp: spm.SentencePieceProcessor, where: str | os.PathLike) -> None:
    """Raise :class:`TokenizerError` unless ids 4-7 are the four operators, each encoded as itself."""
    for offset, op in enumerate(caseops.OPERATORS):
        i = FIRST_OPERATOR_ID + offset
        if i >= sp.vocab_size() or sp.id_to_piece(i) != op or sp.encode(op) != [i]:
            found = sp.id_to_piece(i) if i < sp.vocab_size() else "nothing"
            raise TokenizerError(
                f"{where} is not a CaseOps tokenizer: id {i} must be the reserved operator "
                f"U+{ord(op):04X} (one user-defined piece), found {found!r}"
            )


def _document_bytes(text: str, encoded: str, pieces, index: int) -> list[int]:
    counts = caseops.original_byte_counts(p.surface for p in pieces)
    if not pieces:
        dropped = len(text.encode("utf-8"))
    else:
        gaps = [k for k in range(1, len(pieces)) if pieces[k].begin != pieces[k - 1].end]
        if gaps:
            raise TokenizerError(
                f"document {index}: piece {gaps[0]} starts at byte {pieces[gaps[0]].begin}, not where "
                f"piece {gaps[0] - 1} ends ({pieces[gaps[0] - 1].end}); bytes in between would not be counted"
            )
        # the ends the tokenizer drops hold whitespace only, identical in the text and its encoding
        dropped = pieces[0].begin + len(encoded.encode("utf-8")) - pieces[-1].end
    expected = len(text.encode("utf-8")) - dropped
    if sum(counts) != expected:
        raise TokenizerError(f"document {index}: its tokens account for {sum(counts)} bytes, its text for {expected}")
    return counts


def encode_caseops(
    sp: spm.SentencePieceProcessor,
    docs: Sequence[str],
    *,
    with_bytes: bool,
    num_threads: int | None = None,
    first_index: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``[BOS] + ids(caseops.encode(text))`` per document, concatenated (int32), and, with
    ``with_bytes``, the aligned original UTF-8 byte count of every token (int32; 0 for BOS and operators).

    ``first_index`` numbers the documents in error messages (the position of ``docs[0]`` in its source).
    """
    encoded = [caseops.encode(doc) for doc in docs]
    kw = {} if num_threads is None else {"num_threads": num_threads}
    tokens: list[int] = []
    counts: list[int] = []
    if not with_bytes:
        for ids in sp.encode(encoded, out_type=int, **kw):
            tokens.append(BOS_ID)
            tokens.extend(ids)
        return np.asarray(tokens, dtype=np.int32), None
    for k, proto in enumerate(sp.encode(encoded, return_type="proto", **kw)):
        pieces = proto.pieces
        tokens.append(BOS_ID)
        tokens.extend(p.id for p in pieces)
        counts.append(0)
        counts.extend(_document_bytes(docs[k], encoded[k], pieces, first_index + k))
    return np.asarray(tokens, dtype=np.int32), np.asarray(counts, dtype=np.int32)
