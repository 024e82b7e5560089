"""The learning-rate multiplier and the Muon momentum warmup, as pure functions of the step.

From the official baseline (spec §1.7). There is no lr warmup; the multiplier is 1 until the warmdown,
then falls linearly to 0. With a wall-clock cap the warmdown is estimated from the average step time:
``step_s = elapsed / step``, ``warmdown_s = warmdown_iters * step_s``, ``rem = max(cap - elapsed, 0)``
and the multiplier is ``rem / warmdown_s`` once ``rem <= warmdown_s``. Every group's lr is
``base_lr * lr_mul``. The ``wallclock_fraction`` kind of #1493 (frontier spec §4.4) uses the fraction of
the cap already spent, ``frac = elapsed / cap`` (``step / iterations`` without a cap):
``lr_mul = 1`` while ``frac < 1 - warmdown_frac``, then ``max((1 - frac) / warmdown_frac, min_lr_mul)``.
SWA (``lr_mul < tau``) and late QAT key off the same value, so they refer to the
warmdown ramp, not to a fraction of training.
"""

from __future__ import annotations

from golf.optim.config import MuonConfig, ScheduleConfig


def lr_multiplier(
    cfg: ScheduleConfig, step: int, elapsed_s: float, iterations: int, max_wallclock_s: float | None
) -> float:
    """The multiplier for optimizer step ``step`` (0-based) taken ``elapsed_s`` seconds into training.

    ``elapsed_s`` is the training clock (validation and compile warm-up excluded). A ``wallclock``
    schedule without a cap (``max_wallclock_s`` None or 0) counts iterations, as the official script.
    """
    if cfg.kind == "wallclock_fraction":
        frac = elapsed_s / max_wallclock_s if max_wallclock_s else step / iterations
        if frac < 1.0 - cfg.warmdown_frac:
            return 1.0
        return max((1.0 - frac) / cfg.warmdown_frac, cfg.min_lr_mul)
    if cfg.warmdown_iters <= 0:
        return 1.0
    if cfg.kind == "iterations" or not max_wallclock_s:
        if step >= iterations:
            return 0.0
        warmdown_start = max(iterations - cfg.warmdown_iters, 0)
        return max((iterations - step) / cfg.warmdown_iters, cfg.min_lr_mul) if step >= warmdown_start else 1.0
    step_s = elapsed_s / max(step, 1)
    warmdown_s = cfg.warmdown_iters * step_s
    remaining_s = max(max_wallclock_s - elapsed_s, 0.0)
    return max(remaining_s / max(warmdown_s, 1e-12), cfg.min_lr_mul) if remaining_s <= warmdown_s else 1.0


def muon_momentum(cfg: MuonConfig, step: int) -> float:
    """Muon momentum at ``step``: linear from ``momentum_warmup.start`` to ``momentum`` over its steps."""
    if cfg.momentum_warmup is None:
        return cfg.momentum
    frac = min(step / cfg.momentum_warmup.steps, 1.0)
    return (1.0 - frac) * cfg.momentum_warmup.start + frac * cfg.momentum
