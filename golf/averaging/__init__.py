"""Weight averaging (EMA, SWA) and the choice of the exported weights."""

from golf.averaging.averager import Averager, build_averager
from golf.averaging.config import AveragingConfig, EmaConfig, SwaConfig, validate_averaging

__all__ = ["Averager", "AveragingConfig", "EmaConfig", "SwaConfig", "build_averager", "validate_averaging"]
