"""How one optimizer step's tokens are split into forward/backward passes (``train.micro_batch_tokens``).

The data a step sees is fixed by the official semantics (spec §1.2): ``grad_accum_steps`` chunks of
``batch_tokens / (world * grad_accum_steps)`` tokens per rank, each read from the stream as its own
span (:class:`golf.data.DistributedTokenLoader`). The *compute* split is separate: the rows of those
chunks are stacked into one ``[rows, seq_len]`` batch per step, copied to the device at once (pinned,
non-blocking on CUDA), and run as ``rows / micro_rows`` equal micro-batches whose mean losses are
averaged, which is the gradient of the mean loss over the whole step, whatever the split (equal splits
only differ in floating-point summation order).

``micro_batch_tokens``:

* ``auto`` (default): on CUDA the largest split that fits the device's free memory by
  :func:`activation_bytes_per_token` (fewer, larger micro-batches launch fewer kernels); elsewhere the
  official ``batch_tokens / (world * grad_accum_steps)``;
* an integer: tokens per micro-batch per rank, a multiple of ``seq_len`` dividing
  ``batch_tokens / world``.

A split whose estimate exceeds the free memory is one :class:`ConfigError` before training.
"""

from __future__ import annotations

import torch
from torch import nn

from golf.config.errors import ConfigError
from golf.model.config import ArchConfig, head_dim, mlp_hidden

KEY = "train.micro_batch_tokens"
# Fraction of the free device memory the activation estimate may use (the rest: allocator slack,
# compile workspaces, the optimizer's temporaries).
MEMORY_FRACTION = 0.85
# Factor on the counted activation bytes (what the compiler keeps besides; see activation_bytes_per_token)
ESTIMATE_MARGIN = 1.15


def parse_micro_batch_tokens(value) -> int | None:
    """``"auto"`` -> None, an integer (or its string) -> that integer; anything else is a ConfigError."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        tokens = int(text)
    except ValueError:
        raise ConfigError(KEY, value, "must be auto or a number of tokens") from None
    if tokens < 1:
        raise ConfigError(KEY, value, "must be positive (or auto)")
    return tokens


def check_micro_batch_tokens(value, batch_tokens: int, seq_len: int, world_size: int) -> None:
    """Config-time check of an explicit value (``auto`` is resolved on the device)."""
    tokens = parse_micro_batch_tokens(value)
    if tokens is None:
        return
    local = batch_tokens // world_size
    if tokens % seq_len or local % tokens:
        raise ConfigError(KEY, value, f"must be a multiple of seq_len={seq_len} that divides the "
                                      f"{local} tokens per rank per step (batch_tokens / world_size)")


def activation_bytes_per_token(arch: ArchConfig, block_applications: int, bf16: bool) -> int:
    """Bytes kept for the backward pass per training token (upper estimate for the compiled model).

    Per block application: the residual stream and the norms' inputs (float32), q/k/v before and after
    norm and rotation, the attention output, the MLP's hidden pre- and post-activation (in the
    autocast dtype). The head: soft-capped float32 logits, their gradient and the low-precision logits.
    Times :data:`ESTIMATE_MARGIN`. Calibration: the compiled bf16 baseline on an H200 peaked at
    11,947 MiB with 65,536-token micro-batches and 23,485 MiB with 131,072 (~188 kB per token, all
    memory included); the unscaled count here is 194,560 bytes per token.
    """
    act = 2 if bf16 else 4
    d, hidden = arch.model_dim, mlp_hidden(arch)
    kv = arch.num_kv_heads * head_dim(arch)
    per_block = 4 * d * 4 + act * (4 * d + 4 * kv + 3 * hidden)
    head = arch.vocab_size * (4 + 4 + act)
    return int(ESTIMATE_MARGIN * (block_applications * per_block + head))


def _block_applications(model: nn.Module) -> int:
    """Block applications of the longest schedule (a depth loop replays layers)."""
    orders = getattr(model, "layer_orders", None)
    return max(len(o) for o in orders()) if orders is not None else len(getattr(model, "blocks", ())) or 1


def resolve_micro_rows(value, *, arch: ArchConfig, model: nn.Module, batch_tokens: int, seq_len: int,
                       world_size: int, accum: int, device: torch.device, bf16: bool) -> int:
    """Sequences per micro-batch on this rank (a divisor of the rows per rank per step)."""
    rows = batch_tokens // (world_size * seq_len)
    tokens = parse_micro_batch_tokens(value)
    need = activation_bytes_per_token(arch, _block_applications(model), bf16) * seq_len  # per row
    if device.type != "cuda":
        return rows // accum if tokens is None else tokens // seq_len
    free, _ = torch.cuda.mem_get_info(device)
    budget = MEMORY_FRACTION * free
    if tokens is not None:
        micro = tokens // seq_len
        if micro * need > budget:
            raise ConfigError(KEY, value, f"needs about {micro * need / 2**30:.1f} GiB of activations; "
                                          f"{free / 2**30:.1f} GiB of device memory is free")
        return micro
    fitting = [m for m in range(rows, 0, -1) if rows % m == 0 and m * need <= budget]
    if not fitting:
        raise ConfigError(KEY, value, f"even one sequence of {seq_len} tokens needs about "
                                      f"{need / 2**30:.1f} GiB of activations; {free / 2**30:.1f} GiB is free")
    return fitting[0]
