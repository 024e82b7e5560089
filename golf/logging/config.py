"""Logger settings (the ``logger`` config group). The run directory is always written; W&B mirrors it."""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.config.errors import ConfigError

WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class WandbConfig:
    project: str = "golf"
    entity: str | None = None
    # offline (default: never needs the network), online, or disabled
    mode: str = "offline"
    # runs of one sweep share a group (default: the sweep directory's name, or the run name)
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    # where wandb writes its files; None = inside the run directory
    dir: str | None = None
    # seconds W&B may take to start (online: reach its server); past that the run goes on with the run
    # directory as its only record and one warning line
    init_timeout_s: float = 10.0


@dataclass
class LoggerConfig:
    name: str = "wandb"
    # None = run directory only
    wandb: WandbConfig | None = None
    # progress lines (golf.logging.progress): training prints its first 3 steps, every this many steps
    # and its last (0 = no training progress lines); a tqdm bar is drawn too when stderr is a terminal
    console_every: int = 50


def validate_logger(cfg: LoggerConfig, prefix: str = "logger") -> None:
    if cfg.wandb is not None and cfg.wandb.mode not in WANDB_MODES:
        raise ConfigError(f"{prefix}.wandb.mode", cfg.wandb.mode, f"must be one of {', '.join(WANDB_MODES)}")
    if cfg.wandb is not None and not cfg.wandb.init_timeout_s > 0:
        raise ConfigError(f"{prefix}.wandb.init_timeout_s", cfg.wandb.init_timeout_s, "must be positive")
    if cfg.console_every < 0:
        raise ConfigError(f"{prefix}.console_every", cfg.console_every, "must be >= 0")
