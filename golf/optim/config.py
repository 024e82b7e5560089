"""Optimizer settings (the ``optimizer`` config group): Muon, the Adam groups, the routing table, the schedule.

Defaults are the official baseline recipe (spec §1.6-1.7): Muon lr 0.04 with momentum 0.85 -> 0.95 over
500 steps and no weight decay; Adam betas (0.9, 0.95), eps 1e-8, tied-embedding lr 0.05, scalar lr 0.04,
untied-head lr 0.008; no gradient clipping; wall-clock warmdown over the last 1200 estimated steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.config.errors import ConfigError
from golf.rules import check_rules

# Reserved group names: ``muon`` is the Muon optimizer, ``frozen`` parameters get no optimizer at all.
MUON_GROUP = "muon"
FROZEN_GROUP = "frozen"
WEIGHT_DECAY_TIMINGS = ("before", "after")
SCHEDULE_KINDS = ("wallclock", "iterations", "wallclock_fraction")
GRAD_CLIP_SCOPES = ("averaged", "local")


@dataclass
class MomentumWarmupConfig:
    """Linear Muon momentum warmup: ``start`` at step 0 to ``muon.momentum`` at ``steps`` (and after)."""

    start: float = 0.85
    steps: int = 500


@dataclass
class MuonConfig:
    """Muon (momentum + Nesterov + Newton-Schulz orthogonalisation) for the matrices routed to ``muon``."""

    lr: float = 0.04
    # the momentum reached after warmup (the constant momentum when ``momentum_warmup`` is None)
    momentum: float = 0.95
    momentum_warmup: MomentumWarmupConfig | None = field(default_factory=MomentumWarmupConfig)
    # dtype of the momentum buffer: "float32", or "bfloat16" as #1855 (frontier-1855 spec §4.2, trap 7)
    momentum_dtype: str = "float32"
    # Newton-Schulz iterations and the quintic's (a, b, c)
    ns_steps: int = 5
    ns_coefficients: list[float] = field(default_factory=lambda: [3.4445, -4.7750, 2.0315])
    # Polar Express (#1787, #1855; frontier-1855 spec §4.2): one (a, b, c) per iteration, replacing
    # ns_coefficients; iteration k uses tuple k, and ns_steps beyond the list's length run the list once
    # (it is never extended, as the record's code); None = the fixed quintic
    ns_coefficients_per_step: list[list[float]] | None = None
    # dtype of the Newton-Schulz iteration: "auto" = bfloat16 on CUDA (as the records) and float32 on
    # CPU (CPUs without bf16 units run bf16 matmuls tens of times slower); or "bfloat16" / "float32"
    ns_dtype: str = "auto"
    # torch.compile the Newton-Schulz iteration (one graph per bucket shape). Off by default: on an H200
    # the baseline's three buckets take 1.79 ms per step eager and 2.13 ms compiled (bf16); the official
    # script's compiled per-matrix loop takes 43.8 ms. None = on for CUDA.
    ns_compile: bool | None = False
    # decoupled decay p <- p * (1 - lr * weight_decay), lr including the schedule and the rule's lr_mul
    weight_decay: float = 0.0
    # "before" the update (#295, #344, #1573) or "after" it (#507, #187)
    weight_decay_timing: str = "before"
    # MuonEq-R (#1394, #1493): scale each row of the Nesterov update to unit L2 norm before Newton-Schulz
    row_normalize: bool = False


@dataclass
class AdamGroupConfig:
    """One AdamW group (decoupled weight decay; with weight_decay 0 this is exactly Adam)."""

    lr: float = 0.04
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.0


@dataclass
class ParamRule:
    """Route the parameters selected by the role expression ``select`` (:mod:`golf.rules`) to ``group``.

    ``group`` is ``muon``, ``frozen`` or a key of ``adam_groups``. The group's lr and weight decay are
    multiplied by ``lr_mul`` and ``wd_mul`` for these parameters (e.g. #507's 2x decoder lr).
    """

    select: str = ""
    group: str = ""
    lr_mul: float = 1.0
    wd_mul: float = 1.0


@dataclass
class ScheduleConfig:
    """The lr multiplier (spec §1.7): linear warmdown to 0 over the last ``warmdown_iters`` steps.

    ``wallclock`` estimates the remaining steps from the average step time and the wall-clock cap (it
    falls back to ``iterations`` when the run has no cap, as the official script does); ``iterations``
    counts optimizer steps. ``warmdown_iters`` 0 keeps the multiplier at 1. ``wallclock_fraction``
    (#1394 lineage, #1493; frontier spec §4.4) decays linearly over the last ``warmdown_frac`` of the
    wall-clock cap (of the iterations without a cap), reaching 0 at the cap.
    """

    kind: str = "wallclock"
    warmdown_iters: int = 1200
    # wallclock_fraction: the final fraction of training over which the multiplier falls to 0
    warmdown_frac: float = 0.0
    # floor of the multiplier during the warmdown (the records' min_lr, a multiplier, not an lr)
    min_lr_mul: float = 0.0


def _baseline_groups() -> dict[str, AdamGroupConfig]:
    return {
        "tok": AdamGroupConfig(lr=0.05),
        "scalar": AdamGroupConfig(lr=0.04),
        "head": AdamGroupConfig(lr=0.008),
    }


def _baseline_rules() -> list[ParamRule]:
    return [
        ParamRule(select="kind=embedding,table", group="tok"),
        ParamRule(select="kind=head", group="head"),
        ParamRule(select="kind=matrix", group=MUON_GROUP),
        ParamRule(select="kind=control", group="scalar"),
    ]


@dataclass
class OptimizerConfig:
    name: str = "baseline"
    muon: MuonConfig = field(default_factory=MuonConfig)
    # named AdamW groups; the rules refer to them by key
    adam_groups: dict[str, AdamGroupConfig] = field(default_factory=_baseline_groups)
    # ordered routing table over parameter roles, first match wins; every parameter needs a rule
    rules: list[ParamRule] = field(default_factory=_baseline_rules)
    # clip the global L2 norm of all gradients to this before stepping (0 = off)
    grad_clip_norm: float = 0.0
    # which gradient the clip sees: "averaged" = the gradient averaged over ranks (DDP averages during
    # the backward; the official script, #1493); "local" = each rank's own gradient, then the optimizer
    # averages the clipped gradients, mean_r clip(g_r) (#1855, frontier-1855 spec §4.5; the run has no
    # DDP wrapper). One rank: the same.
    grad_clip_scope: str = "averaged"
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


def _check_unit(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(key, value, "must be in [0, 1)")


def validate_optimizer(cfg: OptimizerConfig, prefix: str = "optimizer") -> None:
    """Every check that needs no model (the routing table is checked against the model when built)."""
    m = cfg.muon
    if m.lr <= 0:
        raise ConfigError(f"{prefix}.muon.lr", m.lr, "must be positive")
    _check_unit(f"{prefix}.muon.momentum", m.momentum)
    if m.momentum_warmup is not None:
        _check_unit(f"{prefix}.muon.momentum_warmup.start", m.momentum_warmup.start)
        if m.momentum_warmup.steps < 1:
            raise ConfigError(f"{prefix}.muon.momentum_warmup.steps", m.momentum_warmup.steps,
                              "must be positive (or momentum_warmup null for a constant momentum)")
    if m.momentum_dtype not in ("float32", "bfloat16"):
        raise ConfigError(f"{prefix}.muon.momentum_dtype", m.momentum_dtype, "must be float32 or bfloat16")
    if m.ns_steps < 1:
        raise ConfigError(f"{prefix}.muon.ns_steps", m.ns_steps, "must be positive")
    if m.ns_dtype not in ("auto", "bfloat16", "float32"):
        raise ConfigError(f"{prefix}.muon.ns_dtype", m.ns_dtype, "must be auto, bfloat16 or float32")
    if len(m.ns_coefficients) != 3:
        raise ConfigError(f"{prefix}.muon.ns_coefficients", list(m.ns_coefficients), "must be three numbers (a, b, c)")
    per_step = m.ns_coefficients_per_step
    if per_step is not None and (not per_step or any(len(t) != 3 for t in per_step)):
        raise ConfigError(f"{prefix}.muon.ns_coefficients_per_step", [list(t) for t in per_step],
                          "must be a non-empty list of (a, b, c) triples")
    if m.weight_decay < 0:
        raise ConfigError(f"{prefix}.muon.weight_decay", m.weight_decay, "must be >= 0")
    if m.weight_decay_timing not in WEIGHT_DECAY_TIMINGS:
        raise ConfigError(f"{prefix}.muon.weight_decay_timing", m.weight_decay_timing,
                          f"must be one of {', '.join(WEIGHT_DECAY_TIMINGS)}")

    for name, g in cfg.adam_groups.items():
        key = f"{prefix}.adam_groups.{name}"
        if name in (MUON_GROUP, FROZEN_GROUP):
            raise ConfigError(key, name, f"'{MUON_GROUP}' and '{FROZEN_GROUP}' are reserved group names")
        if g.lr <= 0:
            raise ConfigError(f"{key}.lr", g.lr, "must be positive")
        if len(g.betas) != 2:
            raise ConfigError(f"{key}.betas", list(g.betas), "must be two numbers (beta1, beta2)")
        for i, beta in enumerate(g.betas):
            _check_unit(f"{key}.betas[{i}]", beta)
        if g.eps <= 0:
            raise ConfigError(f"{key}.eps", g.eps, "must be positive")
        if g.weight_decay < 0:
            raise ConfigError(f"{key}.weight_decay", g.weight_decay, "must be >= 0")

    check_rules(cfg.rules, f"{prefix}.rules")
    known = {MUON_GROUP, FROZEN_GROUP, *cfg.adam_groups}
    for i, rule in enumerate(cfg.rules):
        key = f"{prefix}.rules[{i}]"
        if rule.group not in known:
            raise ConfigError(f"{key}.group", rule.group, f"is not a group; known: {', '.join(sorted(known))}")
        if rule.lr_mul <= 0:
            raise ConfigError(f"{key}.lr_mul", rule.lr_mul, "must be positive")
        if rule.wd_mul < 0:
            raise ConfigError(f"{key}.wd_mul", rule.wd_mul, "must be >= 0")

    if cfg.grad_clip_norm < 0:
        raise ConfigError(f"{prefix}.grad_clip_norm", cfg.grad_clip_norm, "must be >= 0 (0 = off)")
    if cfg.grad_clip_scope not in GRAD_CLIP_SCOPES:
        raise ConfigError(f"{prefix}.grad_clip_scope", cfg.grad_clip_scope, f"must be one of {', '.join(GRAD_CLIP_SCOPES)}")
    s = cfg.schedule
    if s.kind not in SCHEDULE_KINDS:
        raise ConfigError(f"{prefix}.schedule.kind", s.kind, f"must be one of {', '.join(SCHEDULE_KINDS)}")
    if s.warmdown_iters < 0:
        raise ConfigError(f"{prefix}.schedule.warmdown_iters", s.warmdown_iters, "must be >= 0 (0 = no warmdown)")
    if s.kind == "wallclock_fraction" and not 0.0 < s.warmdown_frac <= 1.0:
        raise ConfigError(f"{prefix}.schedule.warmdown_frac", s.warmdown_frac,
                          "must be in (0, 1] with kind=wallclock_fraction")
    _check_unit(f"{prefix}.schedule.min_lr_mul", s.min_lr_mul)
