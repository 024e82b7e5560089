"""Weight-averaging settings (the ``averaging`` config group): EMA, SWA and which weights are exported.

Default = the official baseline: no averaging, the raw final weights are exported.
"""

from __future__ import annotations

from dataclasses import dataclass

from golf.config.errors import ConfigError

EXPORT_SOURCES = ("raw", "ema", "swa")
SWA_SOURCES = ("raw", "ema")


@dataclass
class EmaConfig:
    """``ema <- decay*ema + (1-decay)*w`` after every optimizer step (spec §2.18)."""

    decay: float = 0.997


@dataclass
class SwaConfig:
    """Uniform average of snapshots taken every ``every`` steps while the lr multiplier is below ``lr_mul_below``.

    ``source`` is what is snapshotted: the raw weights (#295, #1573) or the EMA weights (#344's option).
    With fewer than ``min_snapshots`` snapshots at the end the export falls back to EMA (when configured)
    or the raw weights: the seeds apply SWA only from 2 snapshots (#295, #507, #1573), #344 from 1.
    """

    every: int = 50
    lr_mul_below: float = 0.4
    source: str = "raw"
    min_snapshots: int = 2


@dataclass
class AveragingConfig:
    name: str = "none"
    ema: EmaConfig | None = None
    swa: SwaConfig | None = None
    # the weights handed to quantization: raw | ema | swa
    export: str = "raw"


def validate_averaging(cfg: AveragingConfig, prefix: str = "averaging") -> None:
    if cfg.export not in EXPORT_SOURCES:
        raise ConfigError(f"{prefix}.export", cfg.export, f"must be one of {', '.join(EXPORT_SOURCES)}")
    if cfg.ema is not None and not 0.0 < cfg.ema.decay < 1.0:
        raise ConfigError(f"{prefix}.ema.decay", cfg.ema.decay, "must be in (0, 1)")
    if cfg.swa is not None:
        s = cfg.swa
        if s.every < 1:
            raise ConfigError(f"{prefix}.swa.every", s.every, "must be positive")
        if not 0.0 < s.lr_mul_below <= 1.0:
            raise ConfigError(f"{prefix}.swa.lr_mul_below", s.lr_mul_below, "must be in (0, 1]")
        if s.source not in SWA_SOURCES:
            raise ConfigError(f"{prefix}.swa.source", s.source, f"must be one of {', '.join(SWA_SOURCES)}")
        if s.source == "ema" and cfg.ema is None:
            raise ConfigError(f"{prefix}.swa.source", s.source, f"needs {prefix}.ema to be configured")
        if s.min_snapshots < 1:
            raise ConfigError(f"{prefix}.swa.min_snapshots", s.min_snapshots, "must be positive")
    if cfg.export == "ema" and cfg.ema is None:
        raise ConfigError(f"{prefix}.export", cfg.export, f"needs {prefix}.ema to be configured")
    if cfg.export == "swa" and cfg.swa is None:
        raise ConfigError(f"{prefix}.export", cfg.export, f"needs {prefix}.swa to be configured")
    if cfg.export == "raw" and (cfg.ema is not None or cfg.swa is not None):
        raise ConfigError(f"{prefix}.export", cfg.export,
                          "averages are configured but never used; export them or remove them")
    if cfg.export == "ema" and cfg.swa is not None:
        raise ConfigError(f"{prefix}.export", cfg.export, f"{prefix}.swa is configured but never used")
