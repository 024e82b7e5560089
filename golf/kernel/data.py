"""Token shards, the two training loaders, the validation tokens and the byte tables of val_bpb.

**Shards** are the challenge's format (``load_data_shard`` of openai/parameter-golf ``train_gpt.py``;
spec ``techniques.md`` §1.1): a header of 256 little-endian int32 (``[0]`` magic 20240520, ``[1]``
version 1, ``[2]`` token count), then the tokens as little-endian uint16; a glob's shards are taken in
sorted path order. The lab checks every header, the shard counts and the token ids (of the validation
shards and the first training shard) before a run starts (:func:`golf.data.shards.check_data`); here
they are read as they are.

**Sequential loader** (the official stream, ``techniques.md`` §1.2): one endless stream over the shards,
one whole shard in memory at a time, wrapping around; every call takes one contiguous chunk of
``(local + 1) * world_size`` tokens and rank ``r`` keeps ``[r*(local+1), (r+1)*(local+1))``, inputs the
span without its last token, targets without its first. Sequences straddle documents and shards.

**Shuffled loader** (PR #1394 lineage, run by #1493; frontier spec §2.2): rank ``r`` reads only the shards
``files[r::world]`` and samples whole ``seq_len + 1``-token windows without replacement. Per shard, an
epoch draws a phase ``p`` uniform in ``[0, min(T-1, max(0, n-T-1))]`` (no draw when that bound is 0),
then a permutation of the ``(n-1-p) // T`` starts ``p + T*i`` (at construction the shards are prepared
in order, each a phase draw then a permutation). Each row of a batch picks a shard with probability
proportional to its starts left and pops that shard's last start; once every shard is used up all are
re-phased in order. The generator is numpy's ``PCG64`` seeded by the rank alone (the record: the data
order does not follow the run's seed) or by ``(seed, rank)`` when ``data.shuffle.seed`` is set, so
loaders built alike replay the same order (warm-up, training and GPTQ calibration each build one).

**Document-packed loader** (PR #1530 lineage, run by #1855; frontier-1855 spec §2.5, trap 2): every rank
reads the same shards, in sorted order, wrapping around, the order fixed whatever the seed. A call takes
the next ``world_size * (local + 1)`` tokens of the current shard at the cursor; rank ``r`` keeps
``[r*(local+1), (r+1)*(local+1))`` as one packed row (inputs ``[1, local]``, targets shifted by one), and
the cursor moves past the whole span. A span that would run past the shard's end is taken from the next
shard instead, starting at its first BOS (the old shard's tail is dropped; a shard too short for a span
from its first BOS is passed over); the first shard is also entered at its first BOS. The next shard is
read by a background thread while the current one is used. Documents are cut by the attention, not here
(:mod:`golf.kernel.segments`).

The loaders give ``next_batch(global_tokens, seq_len, grad_accum_steps) -> (x, y)`` int64 CPU tensors
``[local // seq_len, seq_len]`` (the packed one: ``[1, local]``) with ``local = global_tokens //
(world_size * grad_accum_steps)``, and a ``state_dict``/``load_state_dict`` of plain data from which a
resumed run continues bit for bit; a resume onto another shard set is refused (it would silently train
on other data).

**Validation tokens**: every validation shard concatenated, cut to ``((N-1)//seq_len)*seq_len + 1``.

**Validation bytes** (the denominator of val_bpb): :func:`validation_bytes` gives every evaluator one
int32 tensor aligned with the validation tokens, entry ``t`` = the bytes token ``t`` stands for as a
target, from one of two sources the data config decides:

* **byte tables** (``build_sentencepiece_luts`` of ``train_gpt.py``; spec ``techniques.md`` §1.3): a
  target token is credited with the UTF-8 bytes of its piece without a leading "▁" (byte-fallback pieces
  ``<0xNN>``: 1 byte), plus one byte for that "▁" unless the previous token is a boundary (control,
  unknown, unused ids, and table slots past the SentencePiece vocabulary: 0 bytes);
* **the byte sidecar** of CaseOps data (PR #1729 onward; frontier-1855 spec §2.4, trap 1), or of any data
  with ``data.val_bytes_pattern``: ``fineweb_val_bytes_*.bin`` in the shard format, one uint16 per
  validation token, the *original* UTF-8 bytes it accounts for (operators and BOS 0). Piece tables would
  overstate CaseOps bytes by about 10%. The lab checks the sidecar against the tokens before a run
  (:mod:`golf.data.sidecar`); here it is read as it is.
"""

from __future__ import annotations

import glob
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from golf.data.config import DataConfig, ShuffleConfig


class ShardError(ValueError):
    """A shard (or a shard set) is missing, malformed, or not the one a resumed run was reading."""


def shard_tokens(path) -> int:
    """The token count in a shard's header."""
    return int(np.fromfile(path, "<i4", 256)[2])


def load_shard(path) -> torch.Tensor:
    """One shard's tokens as a 1-D uint16 tensor (the 1024-byte header skipped)."""
    return torch.from_numpy(np.fromfile(path, "<u2", shard_tokens(path), offset=1024))


def shard_names(files: list) -> list:
    """The file names of shard paths (what a loader's state records: the data may move between runs)."""
    return [os.path.basename(f) for f in files]


def _loader_resume_check(files: list, state: dict) -> None:
    if shard_names(files) != state["files"]:
        raise ShardError(f"cannot resume from {state['files']}: the shards are now {shard_names(files)}")


class DistributedTokenLoader:
    """The official sequential stream, each rank's span of it (module doc); ``take(n)``: the next ``n``
    tokens of the whole stream."""

    def __init__(self, pattern: str, rank: int, world_size: int):
        self.files, self.rank, self.world = sorted(glob.glob(str(pattern))), rank, world_size
        self._load(0)

    def _load(self, i: int) -> None:
        self.shard, self.pos, self.tokens = i, 0, load_shard(self.files[i])

    def take(self, n: int) -> torch.Tensor:
        out = [self.tokens[:0]]
        while n > 0:
            if self.pos >= len(self.tokens):
                self._load((self.shard + 1) % len(self.files))
            k = min(n, len(self.tokens) - self.pos)
            out.append(self.tokens[self.pos:self.pos + k])
            self.pos += k
            n -= k
        return torch.cat(out)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        n = global_tokens // (self.world * grad_accum_steps) + 1
        span = self.take(n * self.world)[self.rank * n:(self.rank + 1) * n].to(torch.int64)
        return span[:-1].reshape(-1, seq_len), span[1:].reshape(-1, seq_len)  # [local/seq_len, seq_len]

    def state_dict(self) -> dict:
        return {"files": shard_names(self.files), "shard": self.shard, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        _loader_resume_check(self.files, state)
        self._load(state["shard"])
        self.pos = state["pos"]


class DocumentPackingLoader(DistributedTokenLoader):
    """One packed row per rank per call from the shards every rank reads alike (module doc)."""

    def __init__(self, pattern: str, rank: int, world_size: int, bos: int):
        self.bos, self.pool, self.ahead = bos, ThreadPoolExecutor(1), (None, None)
        super().__init__(pattern, rank, world_size)

    def _load(self, i: int) -> None:
        j, read = self.ahead
        self.tokens = read.result() if j == i else load_shard(self.files[i])
        j = (i + 1) % len(self.files)
        self.ahead = j, self.pool.submit(load_shard, self.files[j])
        self.shard, self.pos = i, int((self.tokens == self.bos).nonzero()[0])

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        n = global_tokens // (self.world * grad_accum_steps) + 1
        while self.pos + n * self.world > len(self.tokens):
            self._load((self.shard + 1) % len(self.files))
        a = self.pos + self.rank * n
        self.pos += n * self.world
        span = self.tokens[a:a + n].to(torch.int64)
        return span[None, :-1], span[None, 1:]  # [1, local]


class ShuffledSequenceLoader:
    """Whole sequences of the rank's own shards, sampled without replacement (module doc)."""

    def __init__(self, pattern: str, rank: int, world_size: int, seq_len: int, cfg: ShuffleConfig):
        self.files, self.world, self.T = sorted(glob.glob(str(pattern)))[rank::world_size], world_size, seq_len
        self.rng = np.random.Generator(np.random.PCG64(rank if cfg.seed is None else [cfg.seed, rank]))
        self.sizes = [shard_tokens(f) for f in self.files]
        self.maps = [np.memmap(f, "<u2", "r", 1024, (n,)) for f, n in zip(self.files, self.sizes)]
        self.starts = [self._epoch(n) for n in self.sizes]

    def _epoch(self, n: int) -> list:
        T = self.T
        bound = min(T - 1, max(0, n - T - 1))
        phase = int(self.rng.integers(bound + 1)) if bound > 0 else 0
        return (phase + self.rng.permutation((n - 1 - phase) // T) * T).tolist()

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int):
        T = self.T
        batch = np.empty((global_tokens // (self.world * grad_accum_steps * T), T + 1), dtype=np.int64)
        left = np.array([len(s) for s in self.starts], dtype=np.float64)
        for r in range(len(batch)):
            if left.sum() <= 0:
                self.starts = [self._epoch(n) for n in self.sizes]
                left = np.array([len(s) for s in self.starts], dtype=np.float64)
            i = int(self.rng.choice(len(self.files), p=left / left.sum()))
            start = self.starts[i].pop()
            batch[r] = self.maps[i][start:start + T + 1]
            left[i] -= 1
        t = torch.from_numpy(batch)
        return t[:, :-1].contiguous(), t[:, 1:].contiguous()  # [rows, T] inputs and targets

    def state_dict(self) -> dict:
        return {"files": shard_names(self.files), "rng": self.rng.bit_generator.state,
                "starts": [torch.tensor(s, dtype=torch.int64) for s in self.starts]}

    def load_state_dict(self, state: dict) -> None:
        _loader_resume_check(self.files, state)
        self.rng.bit_generator.state = state["rng"]
        self.starts = [t.tolist() for t in state["starts"]]


def build_train_loader(cfg: DataConfig, pattern: str, rank: int, world_size: int, seq_len: int):
    """The training loader ``cfg`` asks for: the sequential stream, shuffled sequences or packed rows."""
    if cfg.packing is not None:
        loader = DocumentPackingLoader(pattern, rank, world_size, cfg.bos_id)
    elif cfg.shuffle is None:
        loader = DistributedTokenLoader(pattern, rank, world_size)
    else:
        loader = ShuffledSequenceLoader(pattern, rank, world_size, seq_len, cfg.shuffle)
    return loader


def load_validation_tokens(pattern: str, seq_len: int) -> torch.Tensor:
    """Every validation shard, concatenated, cut to a whole number of ``seq_len`` targets plus one (uint16)."""
    tokens = torch.cat([load_shard(f) for f in sorted(glob.glob(str(pattern)))])
    return tokens[:(len(tokens) - 1) // seq_len * seq_len + 1]


def byte_tables(tokenizer_path, vocab_size: int) -> tuple:
    """The byte tables of a SentencePiece model file for a model vocabulary of ``vocab_size``: per id (length
    ``max(sp vocab, model vocab)``), ``(base, space, boundary)``: the bytes of the piece without its leading
    "▁" (int16), whether it starts with "▁", whether it is a boundary (control / unknown / unused / past the
    sp vocabulary)."""
    sp = spm.SentencePieceProcessor(model_file=str(tokenizer_path))
    n = sp.vocab_size()
    size = max(n, vocab_size)
    base = torch.zeros(size, dtype=torch.int16)
    space = torch.zeros(size, dtype=torch.bool)
    boundary = torch.ones(size, dtype=torch.bool)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode())
    return base, space, boundary


def piece_bytes(tables: tuple, tokens: torch.Tensor) -> torch.Tensor:
    """The bytes the byte tables credit each of ``tokens`` [N] as a target, int32 [N]: ``base[t] +
    (space[t] & ~boundary[token before t])``; entry 0 (no token before it, never a target) is 0."""
    base, space, boundary = tables
    t = tokens.long()
    return F.pad(base[t[1:]] + (space[t[1:]] & ~boundary[t[:-1]]), (1, 0)).int()


def load_sidecar(pattern, n: int) -> torch.Tensor:
    """The first ``n`` entries of a byte sidecar's shards (sorted path order), int32 [n]."""
    return torch.cat([load_shard(f) for f in sorted(glob.glob(str(pattern)))])[:n].to(torch.int32)


def validation_bytes(d: DataConfig, paths, tokens: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The bytes each of ``tokens`` stands for as a target, int32 [N] aligned with them (module doc): the
    sidecar's for CaseOps data or a configured sidecar, else the byte tables' given the token before."""
    if d.text_transform == "caseops" or d.val_bytes_pattern is not None:
        return load_sidecar(paths.val_bytes_pattern, len(tokens))
    return piece_bytes(byte_tables(paths.tokenizer_path, vocab_size), tokens)
