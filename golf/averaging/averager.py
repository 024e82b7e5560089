"""When the averages update and which weights are exported: raw, EMA, SWA, or SWA over EMA snapshots.

The training loop calls ``start`` when timed training begins (after the compile warm-up restore),
``update`` after every optimizer step, and ``final_state_dict`` once at the end; the result (cast back
to the model's dtypes) goes to quantization. The SWA condition is the seeds': a snapshot when
``step % every == 0`` and ``lr_mul < lr_mul_below``, where ``step`` counts completed optimizer steps and
``lr_mul`` is the schedule multiplier of the step just taken (so tau refers to the warmdown ramp).
Export falls back as #1573 does: SWA with too few snapshots -> EMA if configured, else the raw weights.
The reported source string says which weights were actually exported.

Interacts with: ``golf.optim.schedule`` (lr_mul), checkpoints (``state_dict``), quantization (the export).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from golf.averaging.averages import Ema, SnapshotMean, float_entries
from golf.averaging.config import AveragingConfig


class Averager:
    def __init__(self, cfg: AveragingConfig, model: nn.Module):
        self.cfg = cfg
        self.model = model
        self.ema: Ema | None = None
        self.swa: SnapshotMean | None = None
        self.started = False

    def start(self, model: nn.Module) -> None:
        """Begin averaging from the model's current weights (EMA starts there, SWA starts empty)."""
        weights = float_entries(model.state_dict())
        if self.cfg.ema is not None:
            self.ema = Ema(self.cfg.ema.decay, weights)
        if self.cfg.swa is not None:
            self.swa = SnapshotMean(weights)
        self.started = True

    def update(self, model: nn.Module, step: int, lr_mul: float) -> None:
        """After optimizer step number ``step`` (1 after the first step), taken with multiplier ``lr_mul``."""
        if not self.started:
            raise RuntimeError("Averager.update called before Averager.start")
        if self.ema is None and self.swa is None:
            return
        weights = model.state_dict()
        if self.ema is not None:
            self.ema.update(weights)
        swa = self.cfg.swa
        if swa is not None and step % swa.every == 0 and lr_mul < swa.lr_mul_below:
            self.swa.add(self.ema.avg if swa.source == "ema" else weights)

    @property
    def num_snapshots(self) -> int:
        return self.swa.count if self.swa is not None else 0

    def _choose(self) -> tuple[dict[str, Tensor] | None, str]:
        export = self.cfg.export
        if export == "swa" and self.num_snapshots >= self.cfg.swa.min_snapshots:
            return self.swa.mean(), "swa_of_ema" if self.cfg.swa.source == "ema" else "swa"
        if export in ("swa", "ema") and self.ema is not None:
            return self.ema.avg, "ema"
        return None, "raw"

    def final_state_dict(self, model: nn.Module) -> tuple[dict[str, Tensor], str]:
        """The exported weights (a new dict in the model's dtypes and devices) and their source:
        ``raw``, ``ema``, ``swa`` or ``swa_of_ema``."""
        if not self.started and (self.cfg.ema is not None or self.cfg.swa is not None):
            raise RuntimeError("Averager.final_state_dict called before Averager.start")
        averaged, source = self._choose()
        out = {}
        for k, v in model.state_dict().items():
            src = averaged[k] if averaged is not None and k in averaged else v
            out[k] = src.detach().to(dtype=v.dtype, device=v.device, copy=True)
        return out, source

    def state_dict(self) -> dict[str, Any]:
        return {
            "ema": self.ema.avg if self.ema is not None else None,
            "swa_total": self.swa.total if self.swa is not None else None,
            "swa_count": self.num_snapshots,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the averages onto the model's devices (a resumed run needs no :meth:`start`)."""
        if not self.started:
            self.start(self.model)
        for key, target in (("ema", self.ema.avg if self.ema is not None else None),
                            ("swa_total", self.swa.total if self.swa is not None else None)):
            saved = state.get(key)
            if (target is None) != (saved is None) or (target is not None and set(target) != set(saved)):
                raise ValueError(f"averaging state '{key}' does not match this averaging configuration/model")
            for name, t in (target or {}).items():
                t.copy_(saved[name])
        if self.swa is not None:
            self.swa.count = int(state["swa_count"])


def build_averager(cfg: AveragingConfig | None, model: nn.Module) -> Averager:
    """The averager for ``cfg`` (None = no averaging, export the raw weights).

    ``model`` must be the bare module whose ``state_dict`` keys the exported weights, not a DDP or
    compiled wrapper. The averages are allocated by :meth:`Averager.start`, when timed training begins
    (or by :meth:`Averager.load_state_dict` when a run resumes).
    """
    if isinstance(model, nn.parallel.DistributedDataParallel) or hasattr(model, "_orig_mod"):
        raise ValueError("build_averager needs the bare model, not a DDP or torch.compile wrapper")
    return Averager(cfg if cfg is not None else AveragingConfig(), model)
