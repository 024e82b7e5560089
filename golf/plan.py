"""A config's plan: the plain data the kernel runs on besides the config itself.

The lab resolves every rule over parameter roles once, on a model built on the meta device, into
literal per-parameter tables (DESIGN 5 and 11b), so neither a run nor its generated submission parses
a rule:

* ``groups``: parameter name → ``[optimizer group, lr multiplier, weight-decay multiplier]``;
* ``schemes``: tensor name → the export scheme that stores it (None: kept as it is);
* ``prune``: the tensors the export prunes (empty without ``quant.prune``);
* ``qat``: the weights fake-quantized during training and the scheme each follows;
* ``pergroup`` (only with ``quant.pergroup``): the matrices of each stream of the per-group container;
* ``micro_rows``: sequences per forward/backward on one rank (None: the official split; 1 with
  document-packed rows, one row per micro-step).

:func:`submission_of` generates (once per config in a process) the submission that the dry run, the
launchers' budget check and the run itself all count: its plan has ``micro_rows`` only when
``train.micro_batch_tokens`` is explicit, so the bytes do not depend on the machine that generates it.
"""

from __future__ import annotations

import copy

import torch

from golf.config.schema import GolfConfig
from golf.config.validate import grad_accum_steps
from golf.eval.config import ttt_frozen_prefixes
from golf.microbatch import parse_micro_batch_tokens, resolve_micro_rows
from golf.model import build_model
from golf.optim import groups_table
from golf.quant.qat import qat_table
from golf.quant.routing import pergroup_table, prune_table, schemes_table
from golf.submission import Submission, generate

_GENERATED: dict[str, Submission] = {}


def tables(cfg: GolfConfig, model=None) -> dict:
    """The per-parameter tables of ``cfg`` (``model``: its model, built on the meta device if not given)."""
    if model is None:
        with torch.device("meta"):
            model = build_model(cfg.arch)
    return {"groups": groups_table(model, cfg.optimizer), "schemes": schemes_table(model, cfg.quant),
            "prune": prune_table(model, cfg.quant), "qat": qat_table(model, cfg.quant),
            "ttt_frozen": ttt_frozen_prefixes(cfg.eval, cfg.arch.num_layers),
            **({"pergroup": pergroup_table(model, cfg.quant)} if cfg.quant.pergroup is not None else {})}


def run_plan(cfg: GolfConfig, dist) -> dict:
    """The plan a run on ``dist`` (its world size and device) executes."""
    with torch.device("meta"):
        model = build_model(cfg.arch)
    tc, bf16 = cfg.train, cfg.precision == "bf16" or (cfg.precision == "auto" and dist.device.type == "cuda")
    micro = 1 if cfg.data.packing is not None else resolve_micro_rows(  # packed: one row per micro-batch
        tc.micro_batch_tokens, arch=cfg.arch, model=model, batch_tokens=tc.batch_tokens, seq_len=tc.seq_len,
        world_size=dist.world_size, accum=grad_accum_steps(cfg, dist.world_size), device=dist.device, bf16=bf16)
    return {**tables(cfg, model), "micro_rows": micro}


def submission_plan(cfg: GolfConfig) -> dict:
    tokens = parse_micro_batch_tokens(cfg.train.micro_batch_tokens)
    micro = 1 if cfg.data.packing is not None else None if tokens is None else tokens // cfg.train.seq_len
    return {**tables(cfg), "micro_rows": micro}


def submission_of(cfg: GolfConfig) -> Submission:
    """The generated submission of ``cfg`` (cached by its resolved config)."""
    from omegaconf import OmegaConf

    key = OmegaConf.to_yaml(OmegaConf.structured(cfg))
    if key not in _GENERATED:
        plan = submission_plan(cfg)
        _GENERATED[key] = generate(_schemes_in_use(cfg, plan), plan)
    return _GENERATED[key]


def _schemes_in_use(cfg: GolfConfig, plan: dict) -> GolfConfig:
    """``cfg`` with only the export schemes its table routes a tensor to: the script's config carries no
    other, and the fields the used ones agree on fold into its code."""
    used = set(plan["schemes"].values())
    out = copy.deepcopy(cfg)
    out.quant.schemes = {k: v for k, v in cfg.quant.schemes.items() if k in used}
    return out
