"""Evaluation settings (the ``eval`` config group)."""

from __future__ import annotations

from dataclasses import dataclass

from golf.config.errors import ConfigError

EVAL_KINDS = ("standard", "sliding")


@dataclass
class EvalConfig:
    """How val_bpb is measured.

    ``standard`` scores non-overlapping windows of ``seq_len`` tokens (the official baseline).
    ``sliding`` runs windows of ``seq_len`` tokens every ``stride`` tokens and scores each target once,
    with at least ``seq_len - stride`` tokens of context (the first window scores all of its positions).
    """

    name: str = "standard"
    # standard | sliding
    kind: str = "standard"
    # window length; None = the training sequence length
    seq_len: int | None = None
    # sliding only: how far consecutive windows start apart (= how many positions each later window scores)
    stride: int | None = None
    # tokens per forward batch summed over ranks (standard) ...
    batch_tokens: int = 524288
    # ... and windows per forward batch on each rank (sliding)
    batch_windows: int = 32
    # the evaluator used for periodic validation during training: "standard" (cheap) or "same" (this one)
    periodic: str = "standard"
    # also score the un-quantized final weights with this evaluator (prequant_val_bpb)
    prequant: bool = True
    # score only the first N validation targets (quick experiments; the official score uses all)
    max_tokens: int | None = None


def validate_eval(cfg: EvalConfig, prefix: str = "eval", window: int | None = None) -> None:
    """Checks of an eval config; ``window`` is the length it falls back to when ``seq_len`` is null
    (the run's ``train.seq_len``), so a stride is checked against the window actually in force."""
    if cfg.kind not in EVAL_KINDS:
        raise ConfigError(f"{prefix}.kind", cfg.kind, f"must be one of {', '.join(EVAL_KINDS)}")
    if cfg.seq_len is not None and cfg.seq_len < 1:
        raise ConfigError(f"{prefix}.seq_len", cfg.seq_len, "must be a positive window length (or null)")
    if cfg.kind == "sliding":
        if cfg.stride is None or cfg.stride < 1:
            raise ConfigError(f"{prefix}.stride", cfg.stride, "sliding evaluation needs a positive stride")
        in_force = cfg.seq_len if cfg.seq_len is not None else window
        if in_force is not None and cfg.stride > in_force:
            source = f"{prefix}.seq_len={cfg.seq_len}" if cfg.seq_len is not None else f"train.seq_len={window}"
            raise ConfigError(f"{prefix}.stride", cfg.stride,
                              f"must not exceed the window ({source}); windows would skip targets")
    if cfg.batch_tokens < 1:
        raise ConfigError(f"{prefix}.batch_tokens", cfg.batch_tokens, "must be positive")
    if cfg.batch_windows < 1:
        raise ConfigError(f"{prefix}.batch_windows", cfg.batch_windows, "must be positive")
    if cfg.periodic not in ("standard", "same"):
        raise ConfigError(f"{prefix}.periodic", cfg.periodic, "must be 'standard' or 'same'")
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise ConfigError(f"{prefix}.max_tokens", cfg.max_tokens, "must be positive (or null for all)")
