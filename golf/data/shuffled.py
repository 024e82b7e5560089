"""Shuffled-sequence training loader (PR #1394 lineage, run by #1493; frontier spec §2.2, trap 6).

An alternative to the official sequential stream (:mod:`golf.data.stream`). Each rank reads only its
own shards, ``files[rank::world]`` of the sorted shard list, and samples whole ``seq_len + 1``-token
windows without replacement:

* per shard, an epoch draws a phase ``p`` uniformly in ``[0, min(T-1, max(0, n-T-1))]`` (no draw when
  that bound is 0) and a random permutation ``pi`` of the ``(n-1-p) // T`` window starts
  ``p + T * pi(i)``; at construction the shards are prepared in order, each with one phase draw then
  one permutation;
* each sequence of a batch picks a shard with probability proportional to the starts it has left and
  pops that shard's last start: uniform sampling without replacement over the rank's sequences;
* when every shard of the rank is used up, all of them are re-phased and re-permuted, in order.

Windows ignore document boundaries. The generator is numpy's ``PCG64`` seeded by the rank alone, as
the record (so the data order does not depend on the run's seed), or by ``(seed, rank)`` when
``data.shuffle.seed`` is set. Several loaders built alike replay the same order (the record builds one
for the compile warm-up, one for training and one for GPTQ calibration). ``state_dict`` captures the
generator and every shard's remaining starts, so a resumed run continues with the same sequences.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from golf.data.config import DataConfig
from golf.data.shards import HEADER_BYTES, ShardError, check_token_range, list_shards, read_header
from golf.data.stream import DistributedTokenLoader


class ShuffledSequenceLoader:
    def __init__(self, pattern: str | os.PathLike, rank: int, world_size: int, seq_len: int,
                 vocab_size: int | None = None, seed: int | None = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world_size {world_size}")
        files = list_shards(pattern)
        self.files = files[rank::world_size]
        if not self.files:
            raise ShardError(f"{str(pattern)!r} has {len(files)} training shards; the shuffled loader gives each of "
                             f"{world_size} ranks its own, so it needs at least {world_size}")
        self.rank, self.world_size, self.seq_len, self.vocab_size = rank, world_size, seq_len, vocab_size
        self.rng = np.random.Generator(np.random.PCG64(rank if seed is None else [seed, rank]))
        self.num_tokens = [read_header(f) for f in self.files]
        for f, n in zip(self.files, self.num_tokens):
            if n < seq_len + 1:
                raise ShardError(f"{f}: {n} tokens cannot hold one sequence of seq_len+1 = {seq_len + 1}")
        self._maps: dict[int, np.memmap] = {}
        self.starts: list[list[int]] = [[] for _ in self.files]
        for i in range(len(self.files)):
            self._reset_shard(i)

    def _reset_shard(self, i: int) -> None:
        T, n = self.seq_len, self.num_tokens[i]
        max_phase = min(T - 1, max(0, n - T - 1))
        phase = int(self.rng.integers(max_phase + 1)) if max_phase > 0 else 0
        order = self.rng.permutation((n - 1 - phase) // T)
        self.starts[i] = (phase + order * T).tolist()

    def _window(self, i: int, start: int) -> np.ndarray:
        if i not in self._maps:
            self._maps[i] = np.memmap(self.files[i], dtype="<u2", mode="r", offset=HEADER_BYTES,
                                      shape=(self.num_tokens[i],))
        window = np.asarray(self._maps[i][start:start + self.seq_len + 1], dtype=np.int64)
        if self.vocab_size is not None:
            check_token_range(window, self.vocab_size, str(self.files[i]))
        return window

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` int64 CPU tensors ``[local // seq_len, seq_len]``, local = global / (world * accum)."""
        if seq_len != self.seq_len:
            raise ValueError(f"this loader cuts sequences of {self.seq_len} tokens, not {seq_len}")
        local = global_tokens // (self.world_size * grad_accum_steps)
        if local < seq_len or local % seq_len:
            raise ValueError(f"per-rank micro-batch of {local} tokens is not a positive multiple of seq_len={seq_len}")
        rows = local // seq_len
        batch = np.empty((rows, seq_len + 1), dtype=np.int64)
        remaining = np.array([len(s) for s in self.starts], dtype=np.float64)
        for r in range(rows):
            total = remaining.sum()
            if total <= 0:
                for i in range(len(self.files)):
                    self._reset_shard(i)
                remaining = np.array([len(s) for s in self.starts], dtype=np.float64)
                total = remaining.sum()
            i = int(self.rng.choice(len(self.files), p=remaining / total))
            batch[r] = self._window(i, self.starts[i].pop())
            remaining[i] -= 1
        tokens = torch.from_numpy(batch)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()  # [rows, T] inputs and targets

    def state_dict(self) -> dict:
        return {"files": [f.name for f in self.files], "rng": self.rng.bit_generator.state,
                "starts": [torch.tensor(s, dtype=torch.int64) for s in self.starts]}

    def load_state_dict(self, state: dict) -> None:
        if list(state["files"]) != [f.name for f in self.files]:
            raise ShardError(f"cannot resume the shuffled loader: rank {self.rank} had shards {state['files']}, "
                             f"now {[f.name for f in self.files]} (the shard set changed)")
        self.rng.bit_generator.state = state["rng"]
        self.starts = [t.tolist() for t in state["starts"]]


def build_train_loader(cfg: DataConfig, pattern: str, rank: int, world_size: int, seq_len: int):
    """The training loader ``cfg`` asks for: the official sequential stream, or shuffled sequences."""
    if cfg.shuffle is None:
        return DistributedTokenLoader(pattern, rank, world_size, cfg.vocab_size)
    return ShuffledSequenceLoader(pattern, rank, world_size, seq_len, cfg.vocab_size, cfg.shuffle.seed)
