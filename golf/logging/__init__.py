"""Run records: run directory files and the W&B mirror."""

from golf.logging.config import LoggerConfig, WandbConfig, validate_logger
from golf.logging.recorder import RunRecorder

__all__ = ["LoggerConfig", "RunRecorder", "WandbConfig", "validate_logger"]
