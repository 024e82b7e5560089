"""Weight averaging (EMA, SWA) and the choice of the exported weights: settings and the lab's entry.

The averages themselves run in the kernel (:mod:`golf.kernel.averaging`).
"""

from torch import nn

from golf.averaging.config import AveragingConfig, EmaConfig, SwaConfig, validate_averaging
from golf.kernel.averaging import build_averager as _build


def build_averager(cfg: AveragingConfig | None, model: nn.Module):
    """The kernel's averager for ``cfg`` (None = no averaging: the raw weights are exported).

    ``model`` must be the bare module whose ``state_dict`` keys the exported weights, not a DDP or
    compiled wrapper (ValueError otherwise).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        raise ValueError("build_averager needs the bare model, not a DDP or torch.compile wrapper")
    return _build(cfg if cfg is not None else AveragingConfig(), model)


__all__ = ["AveragingConfig", "EmaConfig", "SwaConfig", "build_averager", "validate_averaging"]
