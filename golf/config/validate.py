"""From a composed Hydra config to a validated :class:`GolfConfig`, or one clear :class:`ConfigError`.

``load_config`` merges the composed config into the typed schema (unknown key, wrong type and missing
value errors name the key), converts it to dataclasses, then :func:`validate` runs each group's checks,
the cross-group ones, and resolves the policy tables on a meta model (:mod:`golf.config.policies`). All of this happens before any data is read or any job is queued.

Without a training clock (``train.max_wallclock_s`` null, as at ``scale=cpu``) every fraction of the
clock becomes the same fraction of ``train.iterations``: the LR schedule and the depth loop do so
themselves; a QAT switch at ``start_fraction`` of the clock is rewritten here (:func:`qat_by_steps`).
"""

from __future__ import annotations

import dataclasses
import math

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from golf.averaging.config import validate_averaging
from golf.config.errors import ConfigError
from golf.config.policies import check_policies
from golf.config.schema import GolfConfig
from golf.data.config import validate_data, validate_packing
from golf.eval.config import check_ttt_model, validate_eval
from golf.kernel.optim import lr_multiplier
from golf.logging.config import validate_logger
from golf.microbatch import check_micro_batch_tokens
from golf.model.config import validate_arch
from golf.optim.config import validate_optimizer
from golf.quant.config import QATSchedule, needs_calibration, validate_quant


def _schema_error(err: OmegaConfBaseException, composed) -> ConfigError:
    key = getattr(err, "full_key", None) or "<config>"
    msg = getattr(err, "msg", None) or str(err)
    msg = msg.splitlines()[0] if msg else type(err).__name__
    value = getattr(err, "value", None)
    if value is None and key != "<config>":  # an unknown key: the error carries no value, the input does
        try:
            value = OmegaConf.select(OmegaConf.create(composed) if isinstance(composed, dict) else composed,
                                     key, default=None, throw_on_missing=False)
        except OmegaConfBaseException:
            value = None
    return ConfigError(key, value, msg)


def check_finite(node, prefix: str = "") -> None:
    """Every float in a config (dataclass tree, lists included) is finite: NaN or inf would train
    silently into a non-finite score. Raises :class:`ConfigError` naming the first such key."""
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            check_finite(getattr(node, f.name), f"{prefix}{f.name}.")
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            check_finite(v, f"{prefix.rstrip('.')}[{i}].")
    elif isinstance(node, dict):
        for k, v in node.items():
            check_finite(v, f"{prefix}{k}.")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(prefix.rstrip("."), node, "must be a finite number")


def load_config(composed: DictConfig | dict, world_size: int | None = None) -> GolfConfig:
    """Merge into the schema, resolve, convert and validate. Raises :class:`ConfigError`."""
    if OmegaConf.is_config(composed):  # plain data: a key Hydra added below a typed node (+arch.bogus=1)
        composed = OmegaConf.to_container(composed, resolve=False)  # is then refused by the schema
    try:
        merged = OmegaConf.merge(OmegaConf.structured(GolfConfig), composed)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        raise _schema_error(err, composed) from None
    validate(cfg, world_size if world_size is not None else cfg.nproc_per_node)
    return cfg


def grad_accum_steps(cfg: GolfConfig, world_size: int) -> int:
    """Micro-steps per optimizer step: explicit, or the official ``8 // world_size`` (at least 1)."""
    if cfg.train.grad_accum_steps is not None:
        return cfg.train.grad_accum_steps
    return max(1, 8 // world_size)


def eval_seq_len(cfg: GolfConfig) -> int:
    return cfg.eval.seq_len or cfg.train.seq_len


def validate(cfg: GolfConfig, world_size: int = 1) -> None:
    """Every check, group by group and then across groups."""
    if cfg.nproc_per_node < 1:  # first: the batch checks below divide by the world size
        raise ConfigError("nproc_per_node", cfg.nproc_per_node, "must be >= 1")
    if world_size < 1:
        raise ConfigError("nproc_per_node", world_size, "the world size must be >= 1")
    check_finite(cfg)
    validate_data(cfg.data, "data")
    validate_arch(cfg.arch, "arch")
    validate_optimizer(cfg.optimizer, "optimizer")
    validate_quant(cfg.quant, "quant")
    if cfg.averaging is not None:
        validate_averaging(cfg.averaging, "averaging")
    validate_eval(cfg.eval, "eval", window=cfg.train.seq_len)
    check_ttt_model(cfg.eval, cfg.arch)
    validate_logger(cfg.logger, "logger")

    t = cfg.train
    for key in ("iterations", "batch_tokens", "seq_len"):
        if getattr(t, key) < 1:
            raise ConfigError(f"train.{key}", getattr(t, key), "must be positive")
    if t.grad_accum_steps is not None and t.grad_accum_steps < 1:
        raise ConfigError("train.grad_accum_steps", t.grad_accum_steps, "must be positive (or null for 8 // world)")
    if t.max_wallclock_s is not None and t.max_wallclock_s < 0:
        raise ConfigError("train.max_wallclock_s", t.max_wallclock_s, "must be >= 0 (or null for no cap)")
    if t.reserve_s < 0 or (t.max_wallclock_s and t.reserve_s >= t.max_wallclock_s):
        raise ConfigError("train.reserve_s", t.reserve_s, f"must be >= 0 and below train.max_wallclock_s={t.max_wallclock_s}")
    for key in ("warmup_steps", "val_every", "log_every"):
        if getattr(t, key) < 0:
            raise ConfigError(f"train.{key}", getattr(t, key), "must be >= 0")
    if t.checkpoint_every_s is not None and t.checkpoint_every_s <= 0:
        raise ConfigError("train.checkpoint_every_s", t.checkpoint_every_s, "must be positive (or null)")
    accum = grad_accum_steps(cfg, world_size)
    unit = t.seq_len * world_size * accum
    if t.batch_tokens % unit:
        raise ConfigError(
            "train.batch_tokens", t.batch_tokens,
            f"must be divisible by seq_len x world_size x grad_accum_steps = {t.seq_len} x {world_size} x {accum} = {unit}",
        )
    check_micro_batch_tokens(t.micro_batch_tokens, t.batch_tokens, t.seq_len, world_size)
    validate_packing(cfg.data, row_tokens=t.batch_tokens // (world_size * accum), micro_batch_tokens=t.micro_batch_tokens,
                     ntk_reference_len=cfg.arch.attention.rope.ntk_reference_len)
    if cfg.data.vocab_size != cfg.arch.vocab_size:
        raise ConfigError("arch.vocab_size", cfg.arch.vocab_size,
                          f"differs from data.vocab_size={cfg.data.vocab_size} (the tokenizer's vocabulary)")
    if cfg.data.bos_id != cfg.arch.bos_id:
        raise ConfigError("arch.bos_id", cfg.arch.bos_id,
                          f"differs from data.bos_id={cfg.data.bos_id} (the tokenizer's document start): set data.bos_id")
    cal = cfg.quant.calibration
    if cal is not None and needs_calibration(cfg.quant):  # checked here, not after training at the export
        tokens, length = cal.batch_tokens or t.batch_tokens, cal.seq_len or t.seq_len
        if tokens % (length * world_size):
            raise ConfigError("quant.calibration.batch_tokens" if cal.batch_tokens else "train.batch_tokens", tokens,
                              f"calibration batches must be a multiple of seq_len x world_size = {length} x "
                              f"{world_size} = {length * world_size} tokens")
    qat_by_steps(cfg)
    if cfg.device not in ("auto", "cpu", "cuda"):
        raise ConfigError("device", cfg.device, "must be auto, cpu or cuda")
    if cfg.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError("precision", cfg.precision, "must be auto, bf16 or fp32")
    check_policies(cfg)  # every parameter selected by the optimizer, quant and QAT tables (meta model)


def qat_by_steps(cfg: GolfConfig) -> None:
    """Without a training clock, QAT's ``wallclock_fraction`` switch becomes a switch at the same fraction
    of ``train.iterations``: at the first step ``s`` with ``s / iterations >= start_fraction``.

    The QAT controller reads the step only through the LR multiplier, which without a clock is a fixed
    function of the step (:func:`golf.kernel.optim.lr_multiplier`); so the switch is written as
    ``lr_below`` with the threshold ``lr_mul(s - 1)``, met first at step ``s`` (``always`` when ``s`` is 0).
    That needs the multiplier to fall between steps ``s - 1`` and ``s`` and to stay below from there on
    (inside the warmdown); otherwise the config is refused naming the step. Changes ``cfg`` in place."""
    qat, t = cfg.quant.qat, cfg.train
    if qat is None or qat.schedule is not QATSchedule.wallclock_fraction or t.max_wallclock_s:
        return
    # the first step whose fraction of the iterations reaches start_fraction (as the depth loop counts)
    switch = next(step for step in range(t.iterations + 1) if step / t.iterations >= qat.start_fraction)
    if switch == 0:
        qat.schedule = QATSchedule.always
        return
    lr = [lr_multiplier(cfg.optimizer.schedule, step, 0.0, t.iterations, None) for step in range(switch - 1, t.iterations)]
    threshold = lr[0]
    if threshold <= 0.0 or any(value >= threshold for value in lr[1:]):
        raise ConfigError("quant.qat.schedule", qat.schedule.name,
                          f"without train.max_wallclock_s, start_fraction={qat.start_fraction:g} falls at step {switch} "
                          f"of {t.iterations}, where the learning-rate multiplier does not fall (lr_mul {threshold:g}); "
                          "QAT follows the step only through it: start inside the warmdown, use lr_below, or set "
                          "train.max_wallclock_s")
    qat.schedule, qat.lr_threshold = QATSchedule.lr_below, threshold
