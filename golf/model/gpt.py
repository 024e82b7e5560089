"""The GPT skeleton: embedding, input stage, the depth schedule of blocks, exits, tied soft-capped head.

Every technique is a part built elsewhere and run here generically:

    x  = tok_emb[ids] + input terms; pre-norm transforms; RMSNorm; post-norm transforms   -> x0
    for step in the depth schedule:
        (renorm) (modulation) (merge a U-Net skip) (+ per-layer stream inputs)
        x = blocks[step.layer](x, x0, ctx, per-layer value inputs)
        (push a skip) (record a tap)
    exits (subtract taps); RMSNorm; logits = x W_emb^T (tied) or lm_head(x); cap * tanh(logits / cap)
    with targets: the mean cross-entropy of those float32 logits (the training loss, spec §1.7)

The training loss is computed inside ``forward`` (as the official script does) so that a compiled model
fuses soft-cap and cross-entropy into its graph instead of writing the float32 logits out and reading
them back in eager kernels; evaluation calls ``forward(ids)`` for the logits.

Parts whose parameters live directly on the GPT (U-Net skip weights, exit scalars) are hosted: they
hand their parameters over at build time and read them back from the host in forward.
The forward has no data-dependent control flow and no training-phase flags: all branching is on the
static plan, so ``torch.compile(fullgraph=True)`` traces it once. A model with a depth loop
(:mod:`golf.model.loop`) holds two step sequences and runs the one its integer ``topology`` names;
only the loop's controller changes it, and a compiled model caches one graph per value.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.backout import build_exits
from golf.model.config import ArchConfig
from golf.model.depth import build_depth
from golf.model.init import output_linear
from golf.model.input_stage import build_input_parts
from golf.model.parallel_residual import block_class
from golf.model.plan import resolve_plan
from golf.model.roles import Label, Role, label_parameters
from golf.model.skips import build_skips


class FinalNorm(nn.Module):
    """The weightless RMSNorm before the output head: a module so that the head's input can be observed
    (calibration collects the tied embedding's Hessian from its output)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, (x.size(-1),))


class GPT(nn.Module):
    PARAM_ROLES = {"tok_emb.weight": Label("embedding", "core", "input"), "lm_head.weight": Label("head", "core", "exit")}

    def __init__(self, cfg: ArchConfig):
        super().__init__()
        plan = resolve_plan(cfg)
        self.logit_softcap = cfg.logit_softcap
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        parts = build_input_parts(cfg, plan)
        for name, module in parts.modules.items():
            self.add_module(name, module)
        self._terms, self._pre_norm, self._post_norm = tuple(parts.terms), tuple(parts.pre_norm), tuple(parts.post_norm)
        self._stream_inputs, self._value_inputs = tuple(parts.stream_inputs), tuple(parts.value_inputs)
        self.blocks = nn.ModuleList(block_class(layer)(cfg, layer) for layer in plan.layers)
        depth = build_depth(cfg, plan, with_skips=cfg.skips is not None)
        for name, module in depth.modules.items():
            self.add_module(name, module)
        self._schedules = (depth.steps,) if depth.looped_steps is None else (depth.steps, depth.looped_steps)
        self.topology = len(self._schedules) - 1  # built as exported: the looped topology when there is one
        self._skips = build_skips(cfg.skips, depth.num_skips, cfg.model_dim)
        self._exits = build_exits(cfg.backout)
        host_roles: dict[str, Label] = {}
        for part in (self._skips, *self._exits):
            if part is not None:
                for name, p in part.host_parameters().items():
                    self.register_parameter(name, p)
                    host_roles[name] = part.HOST_ROLES[name]
        self.final_norm = FinalNorm()
        self.lm_head = None if cfg.tie_embeddings else output_linear(cfg.model_dim, cfg.vocab_size)
        # every parameter's role (golf.model.roles), fixed at build time; policies select by these
        self.param_roles: dict[str, Role] = label_parameters(self, plan.encoder_layers, host_roles)

    def set_topology(self, index: int) -> None:
        """Run step sequence ``index`` from now on (0 plain, 1 looped); called by the loop's controller."""
        if not 0 <= index < len(self._schedules):
            raise ValueError(f"topology {index} does not exist (the model has {len(self._schedules)})")
        self.topology = index

    @property
    def layer_order(self) -> tuple[int, ...]:
        """The physical block of each application of the current topology, in order."""
        return self.layer_orders()[self.topology]

    def layer_orders(self) -> list[tuple[int, ...]]:
        """The block order of every topology (one without a depth loop; plain, then looped, with one)."""
        return [tuple(step.layer for step in steps) for steps in self._schedules]

    def _module(self, path: str) -> nn.Module:
        m = self
        for name in path.split("."):
            m = getattr(m, name)
        return m

    def _layer_inputs(self, names: tuple[str, ...], ids: Tensor) -> list[tuple[nn.Module, Tensor]]:
        return [(getattr(self, n), getattr(self, n)(ids)) for n in names]

    @staticmethod
    def _at_layer(inputs: list[tuple[nn.Module, Tensor]], layer: int) -> Tensor | None:
        total = None
        for module, base in inputs:
            if layer in module.layers:
                term = module.at_layer(base, layer)
                total = term if total is None else total + term
        return total

    def forward(self, input_ids: Tensor, targets: Tensor | None = None) -> Tensor:
        """``input_ids`` [B, T] int64 -> soft-capped logits [B, T, vocab] float32; with ``targets``
        [B, T] the scalar mean cross-entropy of those logits instead."""
        x = self.tok_emb(input_ids)
        if not torch.is_autocast_enabled(input_ids.device.type):
            x = x.float()  # a bf16 embedding (arch.embedding_dtype) starts an fp32 stream outside autocast
        for name in self._terms:
            x = x + getattr(self, name)(input_ids)
        for name in self._pre_norm:
            x = getattr(self, name)(x)
        x = F.rms_norm(x, (x.size(-1),))
        for name in self._post_norm:
            x = getattr(self, name)(x)
        x0 = x
        stream_inputs = self._layer_inputs(self._stream_inputs, input_ids)
        value_inputs = self._layer_inputs(self._value_inputs, input_ids)
        ctx: dict = {}
        skips: list[Tensor] = []
        taps: dict[str, Tensor] = {}
        for step in self._schedules[self.topology]:
            if step.renorm:
                x = F.rms_norm(x, (x.size(-1),))
            if step.pre is not None:
                x = self._module(step.pre)(x)
            if step.merge_skip is not None:
                x = self._skips.merge(self, x, skips.pop(), step.merge_skip)
            value_input = None
            if step.per_layer_inputs:
                extra = self._at_layer(stream_inputs, step.layer)
                if extra is not None:
                    x = x + extra
                value_input = self._at_layer(value_inputs, step.layer)
            x = self.blocks[step.layer](x, x0, ctx, value_input)
            if step.push_skip:
                skips.append(x)
            if step.tap is not None:
                taps[step.tap] = x
        for part in self._exits:
            x = part.apply(self, x, taps)
        x = self.final_norm(x)
        weight = self.tok_emb.weight if self.lm_head is None else self.lm_head.weight
        logits = F.linear(x, weight.to(x.dtype)).float()
        logits = self.logit_softcap * torch.tanh(logits / self.logit_softcap)
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))
