"""The optimizer set a training loop steps: Muon + AdamW groups built from the routing table.

Official baseline (spec §1.6-1.7): each group's ``lr`` is ``base_lr * lr_mul`` every step, Muon's
momentum follows its warmup, gradients are optionally clipped to a global L2 norm over all parameters
(including ``frozen`` ones, as #507 clips over every parameter), then every optimizer steps.
``base_lr`` is the group's lr times the routing rule's ``lr_mul``; weight decay likewise uses ``wd_mul``.
Adam groups are ``torch.optim.AdamW`` (decoupled decay ``p <- p*(1 - lr*wd)``; with wd 0 it is Adam),
fused on CUDA as the official script.

Interacts with: ``golf.optim.groups`` (routing), ``golf.optim.muon``, ``golf.optim.schedule`` (the
``lr_mul`` the loop passes in and the momentum warmup).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from golf.optim.config import FROZEN_GROUP, MUON_GROUP, OptimizerConfig
from golf.optim.groups import Route, assign_groups, group_table
from golf.optim.muon import Muon
from golf.optim.schedule import muon_momentum


class OptimizerSet:
    """Muon and AdamW over one model's parameters; see :func:`build_optimizer`."""

    def __init__(self, model: nn.Module, cfg: OptimizerConfig, world_size: int = 1, rank: int = 0):
        self.cfg = cfg
        named = list(model.named_parameters())
        self.routes: list[Route] = assign_groups(dict(named), model.param_roles, cfg.rules)
        self._numels = {name: p.numel() for name, p in named}
        self._all_params = [p for _, p in named]

        # one torch param group per (group, lr_mul, wd_mul), in order of first appearance
        by_key: dict[tuple[str, float, float], list[torch.Tensor]] = defaultdict(list)
        for (_, p), r in zip(named, self.routes):
            by_key[(r.group, r.lr_mul, r.wd_mul)].append(p)
        muon_groups, adam_groups = [], []
        for (group, lr_mul, wd_mul), params in by_key.items():
            if group == FROZEN_GROUP:
                continue
            if group == MUON_GROUP:
                muon_groups.append(dict(params=params, base_lr=cfg.muon.lr * lr_mul,
                                        weight_decay=cfg.muon.weight_decay * wd_mul))
            else:
                g = cfg.adam_groups[group]
                adam_groups.append(dict(params=params, base_lr=g.lr * lr_mul, betas=tuple(g.betas), eps=g.eps,
                                        weight_decay=g.weight_decay * wd_mul))
        for g in muon_groups + adam_groups:
            g["lr"] = g["base_lr"]
        # the config is the source of truth for hyperparameters, also after loading a checkpoint
        self._hyper = [{k: v for k, v in g.items() if k != "params"} for g in muon_groups + adam_groups]

        self.muon = None
        if muon_groups:
            self.muon = Muon(
                muon_groups,
                momentum=muon_momentum(cfg.muon, 0),
                ns_steps=cfg.muon.ns_steps,
                ns_coefficients=cfg.muon.ns_coefficients,
                ns_dtype=cfg.muon.ns_dtype,
                ns_compile=cfg.muon.ns_compile,
                weight_decay_before=cfg.muon.weight_decay_timing == "before",
                row_normalize=cfg.muon.row_normalize,
                world_size=world_size,
                rank=rank,
            )
        self.adam = None
        if adam_groups:
            on_cuda = all(p.is_cuda for g in adam_groups for p in g["params"])
            self.adam = torch.optim.AdamW(adam_groups, fused=True if on_cuda else None)

    def _optimizers(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.muon, self.adam) if o is not None]

    def step(self, step: int, lr_mul: float) -> None:
        """Clip (if configured), set every lr to ``base_lr * lr_mul`` and Muon's momentum for ``step``, step."""
        if self.cfg.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self._all_params, self.cfg.grad_clip_norm)
        for opt in self._optimizers():
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_mul
        if self.muon is not None:
            self.muon.set_momentum(muon_momentum(self.cfg.muon, step))
        for opt in self._optimizers():
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._all_params:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        return {
            "muon": self.muon.state_dict() if self.muon is not None else None,
            "adam": self.adam.state_dict() if self.adam is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore optimizer state (moments, momentum buffers); hyperparameters stay those of the config."""
        for key, opt in (("muon", self.muon), ("adam", self.adam)):
            if (opt is None) != (state.get(key) is None):
                raise ValueError(f"optimizer state for '{key}' does not match this optimizer set")
            if opt is not None:
                opt.load_state_dict(state[key])
        groups = [g for opt in self._optimizers() for g in opt.param_groups]
        for g, hyper in zip(groups, self._hyper):
            g.update(hyper)

    def group_table(self) -> list[tuple[str, list[str], int]]:
        """(group label, parameter names, numel) per group, e.g. for the dry run."""
        return group_table(self.routes, self._numels)


def build_optimizer(model: nn.Module, cfg: OptimizerConfig, world_size: int = 1, rank: int = 0) -> OptimizerSet:
    """Route ``model``'s parameters by ``cfg.rules`` over their roles and build Muon and AdamW over them.

    ``model`` is the bare module (not the DDP or compiled wrapper), so parameter names match the rules.
    Raises :class:`golf.config.errors.ConfigError` when the rules and the model's parameters disagree.
    """
    return OptimizerSet(model, cfg, world_size=world_size, rank=rank)
