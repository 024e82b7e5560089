"""Evaluation settings (the ``eval`` config group), their checks, and TTT's table of frozen parameters.

The evaluators that read these settings are run kernel code (:mod:`golf.kernel.evaluator`); everything
that can be wrong with the settings is refused here, before a run starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from golf.config.errors import ConfigError
from golf.kernel.ttt import LORA_TARGETS
from golf.model.config import parse_layers

if TYPE_CHECKING:
    from golf.model.config import ArchConfig

EVAL_KINDS = ("standard", "sliding", "ttt", "phased")
TTT_OPTIMIZERS = ("sgd", "adamw")
TTT_ADAPT = ("all", "lora")
TTT_SCHEDULES = ("cosine", "constant")
PHASED_TARGETS = ("q", "k", "v", "o", "mlp", "head")
PHASED_RESETS = ("b", "ab")


@dataclass
class TTTConfig:
    """Score-first test-time training (``eval.kind: ttt``); defaults are the PR #1493 record's (spec §6.4).

    The validation stream is cut into chunks of ``chunk_tokens`` target positions. Each chunk is first
    scored by the sliding-window scorer (``eval.seq_len`` / ``eval.stride``), then the model trains on
    that chunk's already-scored targets; the last chunk is only scored. Training runs on a copy of the
    model, so the exported weights never change.
    """

    # target positions per chunk (the record: 32768 = 16 sequences of 2048)
    chunk_tokens: int = 32768
    # full passes over each chunk's training sequences (one optimizer step per pass)
    epochs: int = 3
    # peak learning rate (chunk 0)
    lr: float = 0.005
    # lr across chunks: cosine (lr·½(1+cos(π·c/(N−1))), 0 at the last chunk) or constant
    schedule: str = "cosine"
    # sgd (momentum, no Nesterov/dampening; buffers persist across chunks) or adamw
    optimizer: str = "sgd"
    # sgd: momentum; adamw: beta1
    momentum: float = 0.9
    # adamw only: beta2
    beta2: float = 0.999
    # decoupled weight decay (adamw) or L2 (sgd); the record: 0
    weight_decay: float = 0.0
    # clip the all-reduced gradient to this global L2 norm; null = no clipping
    grad_clip: float | None = 1.0
    # which parameters adapt: all (minus freeze_layers) or lora (rank-r adapters on lora_targets, base frozen)
    adapt: str = "all"
    # adapt=all: layer selector of blocks whose parameters stay frozen ("none", "first:2", "0,1", ...)
    freeze_layers: str = "none"
    # adapt=lora: adapter rank r (adds r·(in+out) parameters per adapted projection)
    lora_rank: int = 8
    # adapt=lora: the projections that get adapters: any of q, k, v, o, up, down, head
    lora_targets: list[str] = field(default_factory=lambda: ["q", "v"])
    # adapt=lora: the adapter's output is scaled by lora_alpha / lora_rank
    lora_alpha: float = 16.0
    # training sequence length inside a chunk; null = the eval window (eval.seq_len)
    seq_len: int | None = None
    # training sequences per forward/backward on each rank (micro-batch; gradients accumulate to one step)
    batch_seqs: int = 32
    # first run a plain sliding evaluation so the summary holds the score before adaptation
    sliding_first: bool = True


@dataclass
class PhasedConfig:
    """Phased score-first LoRA TTT per document (``eval.kind: phased``, :mod:`golf.kernel.phased`);
    defaults are the PR #1855 record's (frontier-1855 spec §6.3).

    The validation stream is split into documents at BOS; batches of documents (longest first) are scored
    chunk by chunk, each document with its own LoRA adapters that train on each chunk once it is scored.
    At ``phases`` pauses the base weights (the evaluator's own copy) train with SGD on the shortest
    documents scored so far. The exported weights never change.
    """

    # targets per chunk: scored, then trained on by the document's adapters (TTT_CHUNK_SIZE)
    chunk: int = 48
    # longest context of a chunk's forward: a chunk sees at most its document's last `window` tokens
    window: int = 2048
    # documents per batch; their adapters train together, one row each (TTT_BATCH_SIZE)
    batch_docs: int = 64
    # adapter rank r (TTT_LORA_RANK)
    lora_rank: int = 80
    # adapter output scale alpha / r (TTT_LORA_ALPHA)
    lora_alpha: float = 144.0
    # where adapters go: q, k, v (added to W n), o, mlp (bypasses fed by the normalised block inputs), head
    # (added to the logits before the soft-cap); one set per block application
    lora_targets: list[str] = field(default_factory=lambda: list(PHASED_TARGETS))
    # adapters' AdamW: lr, betas, eps, decoupled weight decay (TTT_LORA_LR, TTT_BETA1/2, TTT_WEIGHT_DECAY)
    lr: float = 0.0001
    beta1: float = 0.0
    beta2: float = 0.99
    eps: float = 1.0e-10
    weight_decay: float = 0.5
    # before each batch: "b" zeroes B and keeps A (warm across this rank's batches; the record), "ab" also
    # draws A again from a seed of the batch (the score is then the same on any number of ranks); the
    # AdamW moments start afresh either way
    reset: str = "b"
    # seed of the adapters' A draws
    seed: int = 0
    # pauses for global SGD on the base weights (PHASED_TTT_NUM_PHASES; 0 = none)
    phases: int = 3
    # pause p trains on the shortest floor(prefix_docs (p+1) / phases) documents scored so far
    prefix_docs: int = 2500
    # global SGD: lr (cosine over the phase's chunks), momentum (fresh each phase)
    global_lr: float = 0.001
    global_momentum: float = 0.9
    # global SGD: tokens per step (the last chunk of a phase is skipped)
    global_chunk_tokens: int = 32768
    # global SGD: sequence length of the training rows; null = window
    global_seq_len: int | None = None
    # global SGD: clip the all-reduced gradient to this L2 norm; null = no clipping
    global_grad_clip: float | None = 1.0
    # when compiling, first run the adapted forward and backward on random tokens (never validation data),
    # outside the timed part (the record's compile warm-up)
    warmup: bool = True


@dataclass
class EvalConfig:
    """How val_bpb is measured.

    ``standard`` scores non-overlapping windows of ``seq_len`` tokens (the official baseline).
    ``sliding`` runs windows of ``seq_len`` tokens every ``stride`` tokens and scores each target once,
    with at least ``seq_len - stride`` tokens of context (the first window scores all of its positions).
    ``ttt`` scores with the same sliding windows, chunk by chunk, training a copy of the model on each
    chunk once it has been scored (settings in ``ttt``). ``phased`` scores document by document with
    per-document LoRA test-time training and global phases (settings in ``phased``); its plain form (the
    pre-quantization score) is ``standard``.
    """

    name: str = "standard"
    # standard | sliding | ttt | phased
    kind: str = "standard"
    # window length; None = the training sequence length
    seq_len: int | None = None
    # sliding and ttt: how far consecutive windows start apart (= how many positions each later window scores)
    stride: int | None = None
    # tokens per forward batch summed over ranks (standard) ...
    batch_tokens: int = 524288
    # ... and windows per forward batch on each rank (sliding, ttt)
    batch_windows: int = 32
    # the evaluator used for periodic validation during training: "standard" (cheap) or "same" (this one)
    periodic: str = "standard"
    # also score the un-quantized final weights (prequant_val_bpb); a ttt eval scores them with its
    # sliding scorer, without adaptation
    prequant: bool = True
    # score only the first N validation targets (quick experiments; the official score uses all)
    max_tokens: int | None = None
    # kind=ttt: the test-time training settings (absent otherwise)
    ttt: TTTConfig | None = None
    # kind=phased: the per-document LoRA TTT settings (absent otherwise)
    phased: PhasedConfig | None = None
    # seconds the final evaluation may take; the challenge gives it 600 s on 8xH100, apart from training's
    # 600 s (null = no budget; scale=cpu, as for train.max_wallclock_s). What counts: loading the artifact,
    # decompressing and dequantizing it, any warm-up or precompute that touches validation data (compile
    # warm-up on other data does not), scoring and test-time training. The evaluator projects its time
    # from the first window batch / TTT chunk and says when the projection exceeds the budget; the run's
    # eval seconds are compared with it (golf.report, the record's eval_under_600s)
    budget_s: float | None = 600.0


def validate_eval(cfg: EvalConfig, prefix: str = "eval", window: int | None = None) -> None:
    """Checks of an eval config; ``window`` is the length it falls back to when ``seq_len`` is null
    (the run's ``train.seq_len``), so a stride is checked against the window actually in force."""
    if cfg.kind not in EVAL_KINDS:
        raise ConfigError(f"{prefix}.kind", cfg.kind, f"must be one of {', '.join(EVAL_KINDS)}")
    if cfg.seq_len is not None and cfg.seq_len < 1:
        raise ConfigError(f"{prefix}.seq_len", cfg.seq_len, "must be a positive window length (or null)")
    if cfg.kind in ("sliding", "ttt"):
        if cfg.stride is None or cfg.stride < 1:
            raise ConfigError(f"{prefix}.stride", cfg.stride, f"{cfg.kind} evaluation needs a positive stride")
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
    if cfg.budget_s is not None and not cfg.budget_s > 0:
        raise ConfigError(f"{prefix}.budget_s", cfg.budget_s, "must be positive seconds (or null for no budget)")
    if cfg.kind == "ttt" and cfg.ttt is None:
        raise ConfigError(f"{prefix}.ttt", None, "kind=ttt needs the ttt settings (e.g. eval=ttt)")
    if cfg.kind != "ttt" and cfg.ttt is not None:
        raise ConfigError(f"{prefix}.ttt", "set", f"test-time training settings given but {prefix}.kind={cfg.kind}")
    if (cfg.kind == "phased") != (cfg.phased is not None):
        raise ConfigError(f"{prefix}.phased", "set" if cfg.phased else None,
                          "kind=phased needs the phased settings (e.g. eval=pr1855)" if cfg.phased is None
                          else f"per-document TTT settings given but {prefix}.kind={cfg.kind}")
    if cfg.phased is not None:
        validate_phased(cfg.phased, f"{prefix}.phased")
    if cfg.ttt is not None:
        validate_ttt(cfg.ttt, f"{prefix}.ttt")
        in_force = cfg.seq_len if cfg.seq_len is not None else window
        if in_force is not None:
            check_chunk_holds_a_sequence(cfg.ttt, in_force, f"{prefix}.ttt")


def check_chunk_holds_a_sequence(t: TTTConfig, window: int, prefix: str = "eval.ttt") -> None:
    """A chunk must hold at least one training sequence (``t.seq_len``, default the eval window)."""
    train_len = t.seq_len or window
    if train_len > t.chunk_tokens:
        raise ConfigError(f"{prefix}.chunk_tokens", t.chunk_tokens,
                          f"is shorter than one training sequence ({train_len} tokens)")


def validate_ttt(t: TTTConfig, prefix: str = "eval.ttt") -> None:
    positive = {"chunk_tokens": t.chunk_tokens, "batch_seqs": t.batch_seqs}
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{prefix}.{key}", value, "must be positive")
    if t.epochs < 0:
        raise ConfigError(f"{prefix}.epochs", t.epochs, "must be >= 0 (0 = score only)")
    if not t.lr >= 0:
        raise ConfigError(f"{prefix}.lr", t.lr, "must be >= 0")
    if t.schedule not in TTT_SCHEDULES:
        raise ConfigError(f"{prefix}.schedule", t.schedule, f"must be one of {', '.join(TTT_SCHEDULES)}")
    if t.optimizer not in TTT_OPTIMIZERS:
        raise ConfigError(f"{prefix}.optimizer", t.optimizer, f"must be one of {', '.join(TTT_OPTIMIZERS)}")
    if not 0 <= t.momentum < 1:
        raise ConfigError(f"{prefix}.momentum", t.momentum, "must be in [0, 1)")
    if not 0 <= t.beta2 < 1:
        raise ConfigError(f"{prefix}.beta2", t.beta2, "must be in [0, 1)")
    if not t.weight_decay >= 0:
        raise ConfigError(f"{prefix}.weight_decay", t.weight_decay, "must be >= 0")
    if t.grad_clip is not None and not t.grad_clip > 0:
        raise ConfigError(f"{prefix}.grad_clip", t.grad_clip, "must be positive (or null for no clipping)")
    if t.adapt not in TTT_ADAPT:
        raise ConfigError(f"{prefix}.adapt", t.adapt, f"must be one of {', '.join(TTT_ADAPT)}")
    if t.seq_len is not None and t.seq_len < 1:
        raise ConfigError(f"{prefix}.seq_len", t.seq_len, "must be a positive sequence length (or null)")
    if t.seq_len is not None:
        check_chunk_holds_a_sequence(t, t.seq_len, prefix)
    if t.adapt == "lora":
        if t.lora_rank < 1:
            raise ConfigError(f"{prefix}.lora_rank", t.lora_rank, "must be positive")
        if not t.lora_targets:
            raise ConfigError(f"{prefix}.lora_targets", t.lora_targets, "adapt=lora needs at least one target")
        for name in t.lora_targets:
            if name not in LORA_TARGETS:
                raise ConfigError(f"{prefix}.lora_targets", name, f"unknown projection; use {', '.join(LORA_TARGETS)}")
        if t.freeze_layers not in ("", "none"):
            raise ConfigError(f"{prefix}.freeze_layers", t.freeze_layers, "applies to adapt=all only (LoRA freezes the base)")


def validate_phased(t: PhasedConfig, prefix: str = "eval.phased") -> None:
    for key in ("chunk", "window", "batch_docs", "lora_rank", "global_chunk_tokens"):
        if getattr(t, key) < 1:
            raise ConfigError(f"{prefix}.{key}", getattr(t, key), "must be positive")
    if t.window < t.chunk:
        raise ConfigError(f"{prefix}.window", t.window, f"must hold a chunk ({prefix}.chunk={t.chunk})")
    for name in t.lora_targets:
        if name not in PHASED_TARGETS:
            raise ConfigError(f"{prefix}.lora_targets", name, f"unknown adapter; use {', '.join(PHASED_TARGETS)}")
    for key in ("lr", "weight_decay", "global_lr", "eps"):
        if not getattr(t, key) >= 0:
            raise ConfigError(f"{prefix}.{key}", getattr(t, key), "must be >= 0")
    for key in ("beta1", "beta2", "global_momentum"):
        if not 0 <= getattr(t, key) < 1:
            raise ConfigError(f"{prefix}.{key}", getattr(t, key), "must be in [0, 1)")
    if t.reset not in PHASED_RESETS:
        raise ConfigError(f"{prefix}.reset", t.reset, f"must be one of {', '.join(PHASED_RESETS)}")
    if t.phases < 0 or t.prefix_docs < 0:
        key = "phases" if t.phases < 0 else "prefix_docs"
        raise ConfigError(f"{prefix}.{key}", getattr(t, key), "must be >= 0")
    seq = t.global_seq_len or t.window
    if seq < 1 or seq > t.global_chunk_tokens:
        raise ConfigError(f"{prefix}.global_seq_len", t.global_seq_len,
                          f"must be positive and fit a global chunk ({prefix}.global_chunk_tokens={t.global_chunk_tokens})")
    if t.global_grad_clip is not None and not t.global_grad_clip > 0:
        raise ConfigError(f"{prefix}.global_grad_clip", t.global_grad_clip, "must be positive (or null)")


def check_ttt_model(cfg: EvalConfig, arch: ArchConfig, prefix: str = "eval") -> None:
    """TTT settings that depend on the model: the blocks ``freeze_layers`` names exist, and a LoRA ``head``
    target has an untied head (a tied head has no ``lm_head`` projection)."""
    t = cfg.ttt
    if t is None:
        return
    ttt_frozen_prefixes(cfg, arch.num_layers, prefix)
    if t.adapt == "lora" and "head" in t.lora_targets and arch.tie_embeddings:
        raise ConfigError(f"{prefix}.ttt.lora_targets", "head",
                          "this model ties its head to the embedding, so it has no 'lm_head' projection")


def ttt_frozen_prefixes(cfg: EvalConfig, num_layers: int, prefix: str = "eval") -> tuple[str, ...]:
    """The table TTT's kernel reads (:func:`golf.kernel.ttt.prepare_adaptation`): the parameter name
    prefixes ``blocks.<i>.`` of the blocks ``ttt.freeze_layers`` selects in a ``num_layers``-block model
    (``adapt=all``; empty otherwise)."""
    t = cfg.ttt
    if t is None or t.adapt != "all":
        return ()
    return tuple(f"blocks.{i}." for i in parse_layers(t.freeze_layers, num_layers, f"{prefix}.ttt.freeze_layers"))
