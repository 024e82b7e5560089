"""The lab's side of calibration, the export stage that collects GPTQ's Hessians (DESIGN principle 6: a
stage that needs data declares it — ``quant.calibration`` — and is handed the model and a source; it
never reaches into the training loop). The collection itself (sites, sources, reduction) is the run
kernel's :func:`golf.kernel.gptq.calibrate`; here: the checks that refuse a config before training, the
progress line and the cost the run records.

* A tensor routed to GPTQ must have a site: a Linear weight (its module's input), or the tied output
  embedding (the output of the model's ``final_norm``, the head's input; #1394 lineage, spec §5.1);
  anything else is a :class:`ConfigError`, raised at build time.
* ``source=generated`` needs a ``start_token`` of the vocabulary; ``batch_tokens`` must split into
  whole sequences on every rank. Validation data is never a source (refused by
  :func:`golf.quant.config.validate_calibration`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

from torch import Tensor, nn

from golf.config.errors import ConfigError
from golf.dist import DistInfo
from golf.kernel.gptq import calibrate as collect
from golf.logging.progress import Progress
from golf.quant.config import CalibrationSource, HessianReduce, QuantConfig
from golf.quant.routing import route_state_dict, schemes_table, uses_gptq


@dataclass
class Calibration:
    """What the calibration stage hands the quantizer: name → H [cols, cols] (fp32), and its cost."""

    hessians: dict[str, Tensor]
    batches: int   # batches behind H (summed over ranks when all-reduced)
    tokens: int    # tokens this rank ran through the model
    seconds: float


def gptq_tensor_names(model: nn.Module, cfg: QuantConfig) -> list[str]:
    """Names of the model's tensors that the quant config routes to a GPTQ scheme."""
    routes = route_state_dict(model.state_dict(), cfg, model.param_roles)
    return [n for n, r in routes.items() if uses_gptq(r)]


def check_calibration(model: nn.Module, cfg: QuantConfig) -> None:
    """Raise :class:`ConfigError` now (before training) if the export could not calibrate this model."""
    if cfg.calibration is None:
        return
    modules = dict(model.named_modules())
    tied_head = getattr(model, "lm_head", True) is None and isinstance(getattr(model, "final_norm", None), nn.Module)
    for name in gptq_tensor_names(model, cfg):
        owner, _, leaf = name.rpartition(".")
        module = modules.get(owner)
        if leaf != "weight" or not (isinstance(module, nn.Linear)
                                    or tied_head and module is getattr(model, "tok_emb", None)):
            raise ConfigError("quant.rules", name, "is routed to a GPTQ scheme, but no layer input multiplies it "
                              "(only Linear weights and a tied output embedding can be calibrated); "
                              "route it to a round-to-nearest scheme")
    vocab = model.tok_emb.num_embeddings if isinstance(getattr(model, "tok_emb", None), nn.Embedding) else None
    if cfg.calibration.source == CalibrationSource.generated.value and vocab is not None \
            and cfg.calibration.start_token >= vocab:
        raise ConfigError("quant.calibration.start_token", cfg.calibration.start_token,
                          f"is not a token id of the {vocab}-token vocabulary")


def calibrate(model: nn.Module, cfg: QuantConfig, dist: DistInfo, *, train_loader: Callable[[], object],
              batch_tokens: int, seq_len: int, autocast: Callable | None = None) -> Calibration | None:
    """Hessians for every GPTQ-routed tensor of ``model`` (None on ranks whose H is not used).

    ``train_loader`` makes a fresh training loader (the start of the stream); ``batch_tokens`` and
    ``seq_len`` are the training values, used where ``quant.calibration`` leaves them unset."""
    cal = cfg.calibration
    if cal is None:
        raise ConfigError("quant.calibration", None, "the quant schemes use gptq, which needs calibration inputs")
    check_calibration(model, cfg)
    length = cal.seq_len or seq_len
    unit = length * dist.world_size
    if (cal.batch_tokens or batch_tokens) % unit:
        raise ConfigError("quant.calibration.batch_tokens", cal.batch_tokens or batch_tokens,
                          f"must be a multiple of seq_len x world_size = {length} x {dist.world_size}")
    table = schemes_table(model, cfg)
    seen = [0, 0]
    t0 = time.perf_counter()
    with Progress("calibrate", total=cal.batches, unit="batch", every=max(1, math.ceil(cal.batches / 10)),
                  enabled=dist.is_main) as bar:
        def tick(count: int, tokens: int) -> None:
            seen[:] = count, tokens
            bar.update(count, tokens=tokens)

        train = SimpleNamespace(batch_tokens=batch_tokens, seq_len=seq_len)  # what TrainConfig gives the kernel
        hessians = collect(model, cfg, train, dist, table, train_loader, autocast, tick)
    if hessians is None:
        return None
    total = seen[0] * (dist.world_size if cal.reduce is HessianReduce.all_reduce else 1)
    return Calibration(hessians, total, seen[1], round(time.perf_counter() - t0, 3))
