"""The per-token byte sidecar of the validation shards: ``fineweb_val_bytes_%06d.bin``.

CaseOps data (PR #1729 onward; spec ``frontier-1855.md`` §2.3-2.4) is scored on the *original* text's
bytes, which no piece table can give (an operator token stands for 0 bytes, an ESC'd character for its
UTF-8 length, NFKC-changed characters for their pre-normalization length). The dataset therefore ships,
next to each validation shard ``fineweb_val_NNNNNN.bin``, a sidecar ``fineweb_val_bytes_NNNNNN.bin`` in
the same shard format (:mod:`golf.data.shards`: 256 x int32 header with magic 20240520, version 1 and the
count, then uint16 little-endian values) holding one entry per token: the original UTF-8 bytes that token
accounts for (BOS 0). val_bpb is then ``sum(nll) / (ln 2 * sum(bytes[t]))`` over exactly the scored
targets ``t``.

The glob ``fineweb_val_*.bin`` also matches the sidecars, so a validation token pattern must exclude them
(``fineweb_val_[0-9]*.bin``); :func:`check_token_files` refuses one that does not. Written by
:mod:`golf.data.prepare_caseops` and the demo builder, fetched by :mod:`golf.data.download`, checked by
:func:`golf.data.paths.prepare_data` (headers) and :func:`check_sidecar_data` (contents, before a run or an
evaluation), and read by the run kernel (:func:`golf.kernel.data.validation_bytes`, the bytes of every
evaluator); :func:`load_validation_bytes` is that reader with the checks around it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from golf.data.shards import ShardError, list_shards, read_header, read_shard, write_split_shards
from golf.data.tokenizer import BOS_ID
from golf.kernel.data import load_sidecar

SPLIT = "val_bytes"  # files fineweb_val_bytes_%06d.bin
SIDECAR_MARK = "_bytes_"


def sidecar_path(val_file: str | os.PathLike) -> Path:
    """The sidecar that belongs to a validation shard: ``fineweb_val_N.bin`` -> ``fineweb_val_bytes_N.bin``."""
    val_file = Path(val_file)
    if not val_file.name.startswith("fineweb_val_") or SIDECAR_MARK in val_file.name:
        raise ShardError(f"{val_file}: not a validation token shard (fineweb_val_NNNNNN.bin)")
    return val_file.with_name("fineweb_val_bytes_" + val_file.name[len("fineweb_val_"):])


def write_validation_bytes(counts, directory: str | os.PathLike, shard_tokens: int) -> list[Path]:
    """Write byte counts (aligned with the validation tokens) as sidecar shards of ``shard_tokens``
    entries, cut where the token shards are cut; counts above 65535 are refused (uint16)."""
    return write_split_shards(np.asarray(counts), directory, SPLIT, shard_tokens)


def check_token_files(val_files: list[Path]) -> None:
    """Refuse a validation token file list that includes a byte sidecar (a glob such as
    ``fineweb_val_*.bin`` in a directory that holds one)."""
    mixed = [f for f in val_files if SIDECAR_MARK in f.name]
    if mixed:
        raise ShardError(
            f"the validation token files include the byte sidecar {mixed[0]}; "
            "match the token shards alone (e.g. fineweb_val_[0-9]*.bin)"
        )


def check_validation_bytes(val_files: list[Path], bytes_files: list[Path]) -> None:
    """Check a sidecar set against the validation shards from the headers alone (no data read): the files
    pair up one to one and each pair holds the same count."""
    if len(val_files) != len(bytes_files):
        raise ShardError(f"{len(bytes_files)} byte sidecar file(s) for {len(val_files)} validation shard(s)")
    for tokens_file, bytes_file in zip(val_files, bytes_files):
        n_tokens, n_bytes = read_header(tokens_file), read_header(bytes_file)
        if n_tokens != n_bytes:
            raise ShardError(f"{bytes_file} holds {n_bytes} entries; its shard {tokens_file.name} holds {n_tokens} tokens")


def _check_bos(tokens: torch.Tensor, counts: torch.Tensor, where: str) -> None:
    bad = torch.nonzero((tokens.to(torch.int32) == BOS_ID) & (counts.to(torch.int32) != 0))
    if bad.numel():
        pos = int(bad[0])
        raise ShardError(
            f"{where} credits {int(counts[pos])} bytes to the BOS at token {pos}; "
            "it does not belong to these validation tokens"
        )


def verify_sidecar_file(val_file: str | os.PathLike, bytes_file: str | os.PathLike) -> None:
    """Check one sidecar against its validation shard's data: one entry per token, 0 bytes at each BOS."""
    tokens, counts = read_shard(val_file), read_shard(bytes_file)
    if counts.numel() != tokens.numel():
        raise ShardError(f"{bytes_file} holds {counts.numel()} entries; {val_file} holds {tokens.numel()} tokens")
    _check_bos(tokens, counts, str(bytes_file))


def check_sidecar_data(val_pattern: str | os.PathLike, bytes_pattern: str | os.PathLike) -> None:
    """Every sidecar file against its validation shard, before a run reads them: they pair up, each holds
    one entry per token and 0 bytes at every BOS (:class:`ShardError` naming the file)."""
    val_files, bytes_files = list_shards(val_pattern), list_shards(bytes_pattern)
    check_token_files(val_files)
    check_validation_bytes(val_files, bytes_files)
    for tokens_file, bytes_file in zip(val_files, bytes_files):
        verify_sidecar_file(tokens_file, bytes_file)


def load_validation_bytes(pattern: str | os.PathLike, val_tokens: torch.Tensor) -> torch.Tensor:
    """The sidecar entries aligned with ``val_tokens`` (as :func:`golf.kernel.data.load_validation_tokens`
    returns them: the first ``n`` tokens of the concatenated validation shards).

    Returns an int32 tensor of shape ``[n]``: entry ``i`` is the original UTF-8 bytes of token ``i``, so the
    bytes of the targets ``val_tokens[1:]`` are ``result[1:]``. Raises :class:`ShardError` when the sidecar
    is shorter than the tokens or credits bytes to a BOS (then it does not belong to these tokens).
    """
    total, n = sum(read_header(f) for f in list_shards(pattern)), val_tokens.numel()
    if total < n:
        raise ShardError(f"byte sidecar {str(pattern)!r} holds {total} entries for {n} validation tokens")
    counts = load_sidecar(pattern, n)
    _check_bos(val_tokens, counts, f"byte sidecar {str(pattern)!r}")
    return counts
