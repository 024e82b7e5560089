"""The official token-shard file format of the Parameter Golf challenge: writing shards, and checking them.

A shard is a header of 256 little-endian int32 (1024 bytes): ``[0] = 20240520`` (magic),
``[1] = 1`` (version), ``[2] = num_tokens``, the rest zero; then ``num_tokens`` little-endian uint16
token ids. The file size must be exactly ``1024 + 2 * num_tokens``. This is the format written by
``data/download_hf_docs_and_tokenize.py`` and read by ``load_data_shard`` in the challenge's
``train_gpt.py`` (spec: ``techniques.md`` §1.1, ``data.md`` §1).

The run kernel reads shards as they are (:mod:`golf.kernel.data`). What could go wrong with them is
checked here, before a run starts (:func:`check_data`: every training header, the shard counts the
loader needs, the validation shards and the token range) or a file is accepted (the downloader's
integrity checks, :mod:`golf.data.download`). The demo builder (:mod:`golf.data.demo`) writes shards here.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from golf.files import write_atomic
from golf.kernel.data import ShardError, load_shard

if TYPE_CHECKING:
    from golf.data.config import DataConfig
    from golf.data.paths import DataPaths

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
MAX_TOKENS = 2**31 - 1


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
    read_header(path)
    tokens = load_shard(path)
    if vocab_size is not None:
        check_token_range(tokens.numpy(), vocab_size, str(path))
    return tokens


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



def check_train_shards(pattern: str, vocab_size: int, *, world_size: int = 1, seq_len: int = 1,
                       shuffled: bool = False) -> None:
    """What the training loaders need, checked before the first batch: every header (:func:`check_shards`);
    for shuffled sequences, a shard per rank and a whole ``seq_len + 1`` window in every shard; the ids of
    the first shard below ``vocab_size`` (shards made with another tokenizer show there; checking every
    shard's ids would read the whole training set)."""
    files = list_shards(pattern)
    counts = check_shards(files)
    if shuffled:
        if len(files) < world_size:
            raise ShardError(f"{pattern!r} has {len(files)} training shards; the shuffled loader gives each of "
                             f"{world_size} ranks its own, so it needs at least {world_size}")
        for path, n in zip(files, counts):
            if n < seq_len + 1:
                raise ShardError(f"{path}: {n} tokens cannot hold one sequence of seq_len+1 = {seq_len + 1}")
    read_shard(files[0], vocab_size)


def first_token(path: str | os.PathLike, token: int, chunk: int = 1 << 20) -> int | None:
    """The position of the first ``token`` in a shard (read a chunk at a time), None when it holds none."""
    data = np.memmap(path, "<u2", "r", HEADER_BYTES, (read_header(path),))
    for start in range(0, len(data), chunk):
        hits = np.flatnonzero(data[start:start + chunk] == token)
        if hits.size:
            return start + int(hits[0])
    return None


def check_packed_shards(pattern: str, bos_id: int, span: int) -> None:
    """What the document-packed loader needs: a document start (``bos_id``) in every training shard, and
    one shard at least that holds a whole step's ``span`` of tokens from its first one (shorter shards
    are passed over, as the loader does)."""
    fits = False
    for path in list_shards(pattern):
        first = first_token(path, bos_id)
        if first is None:
            raise ShardError(f"{path}: no document start (token {bos_id}) for the packed loader to enter the shard at")
        fits = fits or read_header(path) - first >= span
    if not fits:
        raise ShardError(f"no training shard of {pattern!r} holds a packed step of {span} tokens "
                         "(world_size x (row + 1)) after its first document start")


def check_validation_shards(pattern: str, seq_len: int, vocab_size: int) -> None:
    """Every validation shard well formed with ids below ``vocab_size``, holding one ``seq_len`` window
    (``seq_len + 1`` tokens) in all."""
    total = sum(read_shard(path, vocab_size).numel() for path in list_shards(pattern))
    if total < seq_len + 1:
        raise ShardError(f"validation shards {pattern!r} hold {total} tokens; need at least seq_len+1={seq_len + 1}")


def check_data(cfg: DataConfig, paths: DataPaths, *, world_size: int, seq_len: int, val_seq_len: int,
               row_tokens: int | None = None) -> None:
    """The shards of a run, before it starts (``ShardError`` naming the file): the training shards for
    ``world_size`` ranks and sequences of ``seq_len`` (with ``data.packing``, rows of ``row_tokens``), the
    validation shards for windows of ``val_seq_len``, and their byte sidecar where the data has one."""
    check_train_shards(paths.train_pattern, cfg.vocab_size, world_size=world_size, seq_len=seq_len,
                       shuffled=cfg.shuffle is not None)
    if cfg.packing is not None:
        check_packed_shards(paths.train_pattern, cfg.bos_id, world_size * ((row_tokens or seq_len) + 1))
    check_validation_shards(paths.val_pattern, val_seq_len, cfg.vocab_size)
    if paths.val_bytes_pattern is not None:
        from golf.data.sidecar import check_sidecar_data  # (it builds on this module)

        check_sidecar_data(paths.val_pattern, paths.val_bytes_pattern)
