"""The official token-shard file format of the Parameter Golf challenge.

A shard is a header of 256 little-endian int32 (1024 bytes): ``[0] = 20240520`` (magic),
``[1] = 1`` (version), ``[2] = num_tokens``, the rest zero; then ``num_tokens`` little-endian uint16
token ids. The file size must be exactly ``1024 + 2 * num_tokens``. This is the format written by
``data/download_hf_docs_and_tokenize.py`` and read by ``load_data_shard`` in the challenge's
``train_gpt.py`` (spec: ``techniques.md`` §1.1, ``data.md`` §1).

Used by the training stream (:mod:`golf.data.stream`), the demo builder (:mod:`golf.data.demo`) and
the downloader's integrity checks (:mod:`golf.data.download`).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import torch

from golf.files import write_atomic

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKENS = 2**31 - 1


class ShardError(ValueError):
    """A shard file (or shard glob) is missing, malformed or holds out-of-range token ids."""


def read_header(path: str | os.PathLike) -> int:
    """Check a shard's header against its file size and return ``num_tokens``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            raw = f.read(HEADER_BYTES)
    except OSError as e:
        raise ShardError(f"{path}: cannot read shard ({e.strerror or e})") from e
    if len(raw) < HEADER_BYTES:
        raise ShardError(f"{path}: {size} bytes is too short for the {HEADER_BYTES}-byte shard header")
    header = np.frombuffer(raw, dtype="<i4")
    if int(header[0]) != SHARD_MAGIC:
        raise ShardError(f"{path}: wrong magic {int(header[0])} (expected {SHARD_MAGIC}); not a token shard")
    if int(header[1]) != SHARD_VERSION:
        raise ShardError(f"{path}: unsupported shard version {int(header[1])} (expected {SHARD_VERSION})")
    num_tokens = int(header[2])
    if num_tokens < 0:
        raise ShardError(f"{path}: negative token count {num_tokens} in header")
    expected = HEADER_BYTES + 2 * num_tokens
    if size != expected:
        raise ShardError(
            f"{path}: file size {size} != {expected} bytes expected for {num_tokens} tokens "
            f"(header {HEADER_BYTES} + 2 per token); truncated or corrupt"
        )
    return num_tokens


def check_token_range(tokens: np.ndarray, vocab_size: int, where: str) -> None:
    """Raise :class:`ShardError` naming the first id ``>= vocab_size`` in ``tokens`` (a 1-D array)."""
    if tokens.size == 0 or int(tokens.max()) < vocab_size:
        return
    pos = int(np.argmax(tokens >= vocab_size))
    raise ShardError(
        f"{where}: token id {int(tokens[pos])} at position {pos} is outside the vocabulary "
        f"(vocab_size={vocab_size})"
    )


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> torch.Tensor:
    """Read one shard as a 1-D ``torch.uint16`` tensor, checking header, size and (optionally) ids."""
    num_tokens = read_header(path)
    tokens = np.fromfile(path, dtype="<u2", count=num_tokens, offset=HEADER_BYTES)
    if tokens.size != num_tokens:
        raise ShardError(f"{path}: read {tokens.size} tokens, header says {num_tokens}")
    if vocab_size is not None:
        check_token_range(tokens, vocab_size, str(path))
    return torch.from_numpy(tokens.astype(np.uint16, copy=False))


def write_shard(path: str | os.PathLike, tokens) -> Path:
    """Write ``tokens`` (ints, numpy array or tensor) as one shard, atomically; returns the path.

    Ids must be integers in ``[0, 65535]``. The file appears under its final name only once complete
    (written to a temporary file in the same directory, then renamed).
    """
    path = Path(path)
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu()
        if tokens.dtype == torch.uint16:
            tokens = tokens.to(torch.int32)
        tokens = tokens.numpy()
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        arr = arr.reshape(-1)  # [..] -> [n]
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ShardError(f"{path}: token ids must be integers, got dtype {arr.dtype}")
    if arr.size > MAX_TOKENS:
        raise ShardError(f"{path}: {arr.size} tokens exceed the format's limit of {MAX_TOKENS}")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 65535:
            bad = lo if lo < 0 else hi
            pos = int(np.argmax(arr == bad))
            raise ShardError(f"{path}: token id {bad} at position {pos} does not fit in uint16 [0, 65535]")
    header = np.zeros(HEADER_INTS, dtype="<i4")
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, header.tobytes(), arr.astype("<u2", copy=False).tobytes())


def write_split_shards(tokens, directory: str | os.PathLike, split: str, shard_tokens: int) -> list[Path]:
    """Cut a token sequence into ``fineweb_{split}_%06d.bin`` shards of ``shard_tokens`` (last shorter).

    Documents run across shard boundaries unchanged, as in the official export.
    """
    arr = np.asarray(tokens)
    if shard_tokens < 1:
        raise ShardError(f"shard_tokens must be >= 1, got {shard_tokens}")
    directory = Path(directory)
    starts = range(0, max(arr.size, 1), shard_tokens)
    return [
        write_shard(directory / f"fineweb_{split}_{i:06d}.bin", arr[s : s + shard_tokens])
        for i, s in enumerate(starts)
    ]


def list_shards(pattern: str | os.PathLike) -> list[Path]:
    """All files matching ``pattern`` (``~`` expanded), in sorted path order as the official loader.

    An empty match raises :class:`ShardError` naming the pattern.
    """
    pattern = os.path.expanduser(str(pattern))
    files = sorted(glob.glob(pattern))
    if not files:
        raise ShardError(f"no shard files match {pattern!r}")
    return [Path(f) for f in files]


def check_shards(files: list[Path]) -> list[int]:
    """Check every shard's header (magic, version, size) before any is read, and that each holds
    tokens: a corrupt shard found mid-training would end the run there, and a stream over empty
    shards would never return a batch. Returns the token counts; :class:`ShardError` names the file."""
    counts = []
    for path in files:
        n = read_header(path)
        if n == 0:
            raise ShardError(f"{path}: the header declares 0 tokens; an empty shard cannot be streamed")
        counts.append(n)
    return counts

