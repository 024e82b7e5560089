"""Weight averaging (EMA, SWA) and the choice of the weights a run exports.

EMA (spec §2.18; records 03-20 XSA4 onward, #344, #187 at 0.997, #507 at 0.9985, #1493 at 0.9965):
``ema <- d*ema + (1-d)*w`` over every floating-point ``state_dict`` entry, in fp32 on the weights'
device. SWA (spec §2.19; #295 tau 0.4, #1573 tau 0.2, every 50 steps): a running fp32 sum of snapshots
and its count, the average ``sum / count``; a snapshot is taken after optimizer step ``step`` (1 after
the first) when ``step % every == 0`` and the step's lr multiplier is below ``lr_mul_below`` (so tau
refers to the warmdown ramp), of the raw weights (#295, #1573) or of the EMA (#344's option).

The loop calls ``start`` when timed training begins (after the compile warm-up is rolled back),
``update`` after every optimizer step and ``final_state_dict`` once at the end; its result (cast back to
the model's dtypes) goes to quantization. Export falls back as #1573 does: SWA with fewer than
``min_snapshots`` snapshots -> EMA if configured, else the raw weights; the returned source (``raw``,
``ema``, ``swa``, ``swa_of_ema``) says which weights were exported. :func:`build_averager` closes over
its config so the generator drops every average the recipe does not use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from golf.averaging.config import AveragingConfig


def build_averager(cfg: AveragingConfig, model, /):
    """The averager of ``cfg`` for the bare ``model`` (its ``state_dict`` keys the exported weights).
    The averages are allocated by ``start`` (or by ``load_state_dict`` when a run resumes)."""
    e = cfg.ema
    w = cfg.swa

    class Averager:
        ema = total = None  # name -> fp32 tensor: the EMA, the SWA sum
        num_snapshots = 0

        def start(self, model, /):
            """Average from the model's current weights on (EMA starts there, SWA empty)."""
            if e is not None or w is not None:
                f = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
                if e is not None:
                    self.ema = {k: v.detach().float().clone() for k, v in f.items()}
                if w is not None:
                    self.total = {k: torch.zeros_like(v, dtype=torch.float32) for k, v in f.items()}

        def update(self, model, step, lr_mul, /):
            """After optimizer step ``step`` (1 after the first), taken with multiplier ``lr_mul``."""
            if e is not None or w is not None:
                sd = model.state_dict()
                if e is not None:
                    avg = list(self.ema.values())
                    torch._foreach_mul_(avg, e.decay)
                    torch._foreach_add_(avg, [sd[k].float() for k in self.ema], alpha=1.0 - e.decay)
                if w is not None and step % w.every == 0 and lr_mul < w.lr_mul_below:
                    src = self.ema if w.source == "ema" else sd
                    torch._foreach_add_(list(self.total.values()), [src[k].float() for k in self.total])
                    self.num_snapshots += 1

        def final_state_dict(self, model, /):
            """The exported weights (a new dict in the model's dtypes and devices) and their source."""
            avg, source = {}, "raw"
            if cfg.export == "swa" and self.num_snapshots >= w.min_snapshots:
                avg = {k: v / self.num_snapshots for k, v in self.total.items()}
                source = "swa_of_ema" if w.source == "ema" else "swa"
            elif cfg.export != "raw" and e is not None:
                avg, source = self.ema, "ema"
            return {k: avg.get(k, v).to(v.dtype, copy=True) for k, v in model.state_dict().items()}, source

        def state_dict(self, /):
            return {"ema": self.ema, "swa_total": self.total, "swa_count": self.num_snapshots}

        def load_state_dict(self, state, /):
            """The averages onto the model's devices (a resumed run needs no ``start``)."""
            if e is not None or w is not None:
                self.start(model)
            if e is not None:
                for k, t in self.ema.items():
                    t.copy_(state["ema"][k])
            if w is not None:
                for k, t in self.total.items():
                    t.copy_(state["swa_total"][k])
                self.num_snapshots = state["swa_count"]

    return Averager()
