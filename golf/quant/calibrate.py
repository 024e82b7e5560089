"""Calibration: the export stage that runs the exported model over calibration inputs and collects,
for every weight a GPTQ scheme quantizes, the Hessian proxy H = Σ XᵀX (fp32) of the inputs X that the
weight multiplies (DESIGN principle 6: a stage that needs data declares it — ``quant.calibration`` —
and is handed the model and a source; it never reaches into the training loop).

* **Sites.** A Linear weight's X is its module's input (a forward hook); the tied output embedding's
  X is the output of the model's ``final_norm`` (the head's input), as in the #1394 lineage (spec
  §5.1). A tensor routed to GPTQ with no such site is a :class:`ConfigError`, raised at build time.
  A module called several times per forward (depth recurrence) adds every call's inputs.
* **Sources.** ``train``: the first ``batches`` batches of a fresh training stream, i.e. the sequences
  the first training steps saw (#1493). ``generated``: sequences sampled autoregressively from the
  model itself at ``temperature`` from ``start_token`` (PR #1019, "AR self-generated GPTQ
  calibration": 64 × 2048 tokens at 0.8), so no data is read after training. Validation data is never
  a source (refused by :func:`golf.quant.config.validate_calibration`).
* **Ranks.** ``reduce=all_reduce`` sums every rank's H (and batch counts); ``reduce=local`` is the
  record as it ran: no reduction, the main rank (which writes the artifact) uses its own H.
* H is divided by the number of batches (spec §5.1; GPTQ is invariant to H's scale except through
  relative damping, so this only keeps magnitudes readable).
The model runs in ``eval()`` under ``no_grad`` without autocast (the record: eager, no autocast).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.config.errors import ConfigError
from golf.dist import DistInfo, all_reduce_
from golf.logging.progress import Progress
from golf.quant.config import CalibrationConfig, CalibrationSource, HessianReduce, QuantConfig
from golf.quant.export import uses_gptq
from golf.quant.routing import route_state_dict


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


def hessian_sites(model: nn.Module, names: list[str]) -> dict[str, tuple[nn.Module, str]]:
    """name → (module, "input" | "output") whose activation is the X that weight multiplies."""
    modules = dict(model.named_modules())
    tied_head = getattr(model, "lm_head", True) is None and isinstance(getattr(model, "final_norm", None), nn.Module)
    sites = {}
    for name in names:
        owner, _, leaf = name.rpartition(".")
        module = modules.get(owner)
        if leaf == "weight" and isinstance(module, nn.Linear):
            sites[name] = (module, "input")
        elif leaf == "weight" and tied_head and module is getattr(model, "tok_emb", None):
            sites[name] = (model.final_norm, "output")
        else:
            raise ConfigError("quant.rules", name, "is routed to a GPTQ scheme, but no layer input multiplies it "
                              "(only Linear weights and a tied output embedding can be calibrated); "
                              "route it to a round-to-nearest scheme")
    return sites


def check_calibration(model: nn.Module, cfg: QuantConfig) -> None:
    """Raise :class:`ConfigError` now (before training) if the export could not calibrate this model."""
    if cfg.calibration is None:
        return
    hessian_sites(model, gptq_tensor_names(model, cfg))
    vocab = model.tok_emb.num_embeddings if isinstance(getattr(model, "tok_emb", None), nn.Embedding) else None
    if cfg.calibration.source == CalibrationSource.generated.value and vocab is not None \
            and cfg.calibration.start_token >= vocab:
        raise ConfigError("quant.calibration.start_token", cfg.calibration.start_token,
                          f"is not a token id of the {vocab}-token vocabulary")


def collect_hessians(model: nn.Module, sites: dict[str, tuple[nn.Module, str]], batches: Iterator[Tensor],
                     bar: Progress | None = None) -> tuple[dict[str, Tensor], int, int]:
    """Run ``model`` over ``batches`` (input ids) with forward hooks; returns (Σ XᵀX per name, batches, tokens).
    ``bar`` (optional) advances by one per batch.

    Hooks record only during the collection forward of each batch, so a source may itself run the
    model (generation) between batches."""
    device = next(model.parameters()).device
    params = dict(model.named_parameters(remove_duplicate=False))
    hessians = {name: torch.zeros(params[name].shape[1], params[name].shape[1], dtype=torch.float32, device=device)
                for name in sites}
    recording = [False]

    def hook_for(name: str, where: str):
        def hook(module, inputs, output):
            if recording[0]:
                x = (inputs[0] if where == "input" else output).detach()
                x = x.reshape(-1, x.shape[-1]).float()  # [tokens, cols]
                hessians[name].addmm_(x.T, x)
        return hook

    handles = [module.register_forward_hook(hook_for(name, where)) for name, (module, where) in sites.items()]
    was_training = model.training
    model.eval()
    count = tokens = 0
    try:
        with torch.no_grad():
            for ids in batches:
                recording[0] = True
                model(ids.to(device))
                recording[0] = False
                count += 1
                tokens += ids.numel()
                if bar is not None:
                    bar.update(count, tokens=tokens)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return hessians, count, tokens


def train_batches(loader, n: int, batch_tokens: int, seq_len: int) -> Iterator[Tensor]:
    """The next ``n`` training inputs of ``loader`` (this rank's share of ``batch_tokens`` each)."""
    for _ in range(n):
        x, _ = loader.next_batch(batch_tokens, seq_len, 1)
        yield x


def generated_batches(model: nn.Module, n: int, seqs: int, seq_len: int, cal: CalibrationConfig, rank: int = 0,
                      autocast: Callable = contextlib.nullcontext) -> Iterator[Tensor]:
    """``n`` batches of ``seqs`` sequences sampled from the model (PR #1019), one token at a time."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(cal.seed + rank)
    for _ in range(n):
        ids = torch.full((seqs, 1), cal.start_token, dtype=torch.int64, device=device)
        for _ in range(seq_len - 1):
            with torch.no_grad(), autocast():
                logits = model(ids)[:, -1].float()  # [seqs, vocab]
            probs = F.softmax(logits / cal.temperature, dim=-1)
            ids = torch.cat([ids, torch.multinomial(probs, 1, generator=gen)], dim=1)
        yield ids


def calibrate(model: nn.Module, cfg: QuantConfig, dist: DistInfo, *, train_loader: Callable[[], object],
              batch_tokens: int, seq_len: int, autocast: Callable | None = None) -> Calibration | None:
    """Hessians for every GPTQ-routed tensor of ``model`` (None on ranks whose H is not used).

    ``train_loader`` makes a fresh training loader (the start of the stream); ``batch_tokens`` and
    ``seq_len`` are the training values, used where ``quant.calibration`` leaves them unset."""
    cal = cfg.calibration
    if cal is None:
        raise ConfigError("quant.calibration", None, "the quant schemes use gptq, which needs calibration inputs")
    sites = hessian_sites(model, gptq_tensor_names(model, cfg))
    if cal.reduce is HessianReduce.local and not dist.is_main:
        return None  # the record's per-rank Hessians: only the main rank's are used
    tokens_per_batch = cal.batch_tokens or batch_tokens
    length = cal.seq_len or seq_len
    unit = length * dist.world_size
    if tokens_per_batch % unit:
        raise ConfigError("quant.calibration.batch_tokens", tokens_per_batch,
                          f"must be a multiple of seq_len x world_size = {length} x {dist.world_size}")
    t0 = time.perf_counter()
    if cal.source == CalibrationSource.train.value:
        batches = train_batches(train_loader(), cal.batches, tokens_per_batch, length)
    else:
        batches = generated_batches(model, cal.batches, tokens_per_batch // unit, length, cal, dist.rank,
                                    autocast or contextlib.nullcontext)
    with Progress("calibrate", total=cal.batches, unit="batch", every=max(1, math.ceil(cal.batches / 10)),
                  enabled=dist.is_main) as bar:
        hessians, count, tokens = collect_hessians(model, sites, batches, bar)
    total = count
    if cal.reduce is HessianReduce.all_reduce:
        for h in hessians.values():
            all_reduce_(h)
        device = next(model.parameters()).device
        total = int(all_reduce_(torch.tensor([count], dtype=torch.float64, device=device)).item())
    for h in hessians.values():
        h.div_(max(total, 1))
    return Calibration(hessians, total, tokens, round(time.perf_counter() - t0, 3))
