"""Training token stream and validation tokens with the official challenge semantics.

``TokenStream`` reads shards in sorted filename order, one whole shard in memory at a time, and wraps
around forever: no shuffling, no document alignment, sequences straddle documents and shards.
``DistributedTokenLoader`` takes one contiguous chunk of ``(local + 1) * world_size`` tokens per call
and gives rank ``r`` the span ``[r*(local+1), (r+1)*(local+1))``; inputs are the span without its last
token and targets the span without its first, so one token per rank per step is seen only as a target.
``load_validation_tokens`` concatenates the validation shards and truncates them to a whole number of
``seq_len`` targets. Source: ``train_gpt.py`` of openai/parameter-golf (spec ``techniques.md``
§1.2-1.3). Both loaders carry ``state_dict``/``load_state_dict`` so a resumed run continues at exactly
the same token (used by checkpointing in the training loop).
"""

from __future__ import annotations

import os

import torch

from golf.data.shards import ShardError, check_shards, list_shards, read_shard


class TokenStream:
    """An endless stream over the shards matching ``pattern``; ``take(n)`` returns the next ``n`` tokens."""

    def __init__(self, pattern: str | os.PathLike, vocab_size: int | None = None):
        self.pattern = str(pattern)
        self.vocab_size = vocab_size
        self.files = list_shards(pattern)
        check_shards(self.files)  # every header, before the first batch
        self._load(0)

    def _load(self, file_index: int) -> None:
        self.file_index = file_index
        self.tokens = read_shard(self.files[file_index], self.vocab_size)
        self.pos = 0

    def take(self, n: int) -> torch.Tensor:
        """The next ``n`` tokens as one contiguous 1-D uint16 tensor (crossing shard boundaries)."""
        if n < 0:
            raise ValueError(f"cannot take a negative number of tokens ({n})")
        chunks = []
        remaining = n
        empty_loads = 0
        while remaining > 0:
            avail = self.tokens.numel() - self.pos
            if avail <= 0:
                empty_loads += 1
                if empty_loads > len(self.files):  # a whole pass without a token (files changed on disk)
                    raise ShardError(f"no tokens left in any shard of {self.pattern!r}")
                self._load((self.file_index + 1) % len(self.files))
                continue
            empty_loads = 0
            k = min(remaining, avail)
            chunks.append(self.tokens[self.pos : self.pos + k])
            self.pos += k
            remaining -= k
        if not chunks:
            return self.tokens[:0]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    def state_dict(self) -> dict:
        """Position in the stream as plain data: shard index, its file name and the offset inside it."""
        return {"file_index": self.file_index, "file_name": self.files[self.file_index].name, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`; the shard at that index must have the same file name."""
        index, name, pos = int(state["file_index"]), str(state["file_name"]), int(state["pos"])
        if not 0 <= index < len(self.files) or self.files[index].name != name:
            found = self.files[index].name if 0 <= index < len(self.files) else "nothing"
            raise ShardError(
                f"cannot resume stream over {self.pattern!r}: saved shard #{index} was {name!r}, "
                f"found {found!r} (the shard set changed)"
            )
        if index != self.file_index:
            self._load(index)
        if not 0 <= pos <= self.tokens.numel():
            raise ShardError(f"cannot resume stream: offset {pos} is outside {name} ({self.tokens.numel()} tokens)")
        self.pos = pos


class DistributedTokenLoader:
    """Per-rank view of the shared training stream; every rank reads the same stream in lockstep."""

    def __init__(self, pattern: str | os.PathLike, rank: int, world_size: int, vocab_size: int | None = None):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"invalid rank {rank} for world_size {world_size}")
        self.rank = rank
        self.world_size = world_size
        self.stream = TokenStream(pattern, vocab_size)

    def next_batch(self, global_tokens: int, seq_len: int, grad_accum_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` int64 CPU tensors of shape ``[local // seq_len, seq_len]`` for this rank.

        ``local = global_tokens // (world_size * grad_accum_steps)`` tokens per micro-step.
        """
        local = global_tokens // (self.world_size * grad_accum_steps)
        if local < seq_len or local % seq_len:
            raise ValueError(
                f"per-rank micro-batch of {local} tokens (global_tokens={global_tokens} / "
                f"(world_size={self.world_size} * grad_accum_steps={grad_accum_steps})) "
                f"is not a positive multiple of seq_len={seq_len}"
            )
        span = local + 1
        chunk = self.stream.take(span * self.world_size)
        mine = chunk[self.rank * span : (self.rank + 1) * span].to(torch.int64)
        x = mine[:-1].reshape(-1, seq_len)  # [local] -> [local/seq_len, seq_len]
        y = mine[1:].reshape(-1, seq_len)
        return x, y

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)


def load_validation_tokens(pattern: str | os.PathLike, seq_len: int, vocab_size: int | None = None) -> torch.Tensor:
    """All validation shards concatenated, kept to ``((N-1)//seq_len)*seq_len + 1`` tokens (uint16)."""
    tokens = torch.cat([read_shard(f, vocab_size) for f in list_shards(pattern)])
    usable = ((tokens.numel() - 1) // seq_len) * seq_len
    if usable <= 0:
        raise ShardError(
            f"validation shards {str(pattern)!r} hold {tokens.numel()} tokens; "
            f"need at least seq_len+1={seq_len + 1}"
        )
    return tokens[: usable + 1]
