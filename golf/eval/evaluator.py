"""The evaluator interface: an object that is handed the model and returns its :class:`EvalResult`.

An evaluator owns whatever it changes. Standard and sliding evaluation only run the model under
``no_grad`` (and put back its train/eval mode); score-first test-time training
(:class:`golf.eval.ttt.TTTEvaluator`) adapts a private copy. The weights that are exported or scored
elsewhere are therefore the same before and after any evaluation.

    evaluator = build_evaluator(cfg.eval, tokens=val_tokens, luts=luts, seq_len=2048, dist=dist,
                                autocast=autocast, compile_model=True)
    result = evaluator(model)                # or evaluator(model, forward=compiled_model)
    prequant = evaluator.plain()(model)      # the same scorer without adaptation

Everything an evaluator needs besides the model (the token stream, byte tables, window length,
ranks, precision) is fixed when it is built, so the caller only decides *which model* is scored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from golf.dist import DistInfo
from golf.eval.bpb import EvalResult
from golf.eval.config import EvalConfig
from golf.eval.windows import Forward, evaluate_sliding, evaluate_standard


@dataclass
class EvalSetup:
    """What every evaluator is built with: the stream to score and how to run the model on it."""

    tokens: torch.Tensor  # the validation stream, ``len - 1`` targets (already cut to ``max_tokens``)
    luts: object  # golf.data.tokenizer.ByteLUTs on the evaluation device
    seq_len: int  # window length
    dist: DistInfo
    autocast: Callable = contextlib.nullcontext
    compile_model: bool = False  # torch.compile the scoring forward when the caller gives none
    # id(model) -> a callable equivalent to it (its compiled form), shared by the evaluators of one setup
    forwards: dict = field(default_factory=dict, repr=False)


class Evaluator:
    """Base class: ``evaluator(model, forward=None) -> EvalResult``.

    ``forward`` is an optional callable equivalent to ``model`` (its compiled form); without it the
    evaluator uses the one registered with :meth:`use_forward`, else ``model`` itself, compiled (once)
    when ``setup.compile_model`` is set.
    """

    kind = "abstract"

    def __init__(self, cfg: EvalConfig, setup: EvalSetup):
        self.cfg = cfg
        self.setup = setup

    @property
    def name(self) -> str:
        return self.cfg.name

    def __call__(self, model: nn.Module, *, forward: Forward | None = None) -> EvalResult:
        with scoring_mode(model):
            return self.score(model, forward or self.forward_of(model))

    def score(self, model: nn.Module, forward: Forward) -> EvalResult:
        raise NotImplementedError

    def plain(self) -> Evaluator:
        """The evaluator that scores the same windows without changing anything (itself, here)."""
        return self

    def use_forward(self, model: nn.Module, forward: Forward) -> Evaluator:
        """Score ``model`` through ``forward`` (e.g. the trainer's compiled module) from now on."""
        self.setup.forwards[id(model)] = (model, forward)
        return self

    def forward_of(self, model: nn.Module) -> Forward:
        """The registered forward of ``model``, else ``model`` (compiled once when so configured)."""
        known = self.setup.forwards.get(id(model))
        if known is not None and known[0] is model:
            return known[1]
        if not self.setup.compile_model:
            return model
        compiled = torch.compile(model, fullgraph=True, dynamic=False)
        self.use_forward(model, compiled)
        return compiled


@contextlib.contextmanager
def scoring_mode(model: nn.Module):
    """``model.eval()`` for the duration, then its previous train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


class StandardEvaluator(Evaluator):
    """Non-overlapping windows (the official baseline's ``eval_val``); see :func:`evaluate_standard`."""

    kind = "standard"

    def score(self, model: nn.Module, forward: Forward) -> EvalResult:
        s = self.setup
        return evaluate_standard(forward, s.tokens, s.luts, seq_len=s.seq_len, batch_tokens=self.cfg.batch_tokens,
                                 dist=s.dist, autocast=s.autocast)


class SlidingEvaluator(Evaluator):
    """Sliding windows, every target scored once; see :func:`evaluate_sliding`."""

    kind = "sliding"

    def score(self, model: nn.Module, forward: Forward) -> EvalResult:
        s = self.setup
        return evaluate_sliding(forward, s.tokens, s.luts, seq_len=s.seq_len, stride=self.cfg.stride,
                                batch_windows=self.cfg.batch_windows, dist=s.dist, autocast=s.autocast)


def build_evaluator(cfg: EvalConfig, *, tokens: torch.Tensor, luts, seq_len: int, dist: DistInfo,
                    autocast: Callable = contextlib.nullcontext, compile_model: bool = False,
                    kind: str | None = None) -> Evaluator:
    """The evaluator of ``cfg`` (or of ``kind``, e.g. ``"standard"`` for cheap periodic validation)."""
    kind = kind or cfg.kind
    if cfg.max_tokens is not None:
        tokens = tokens[: cfg.max_tokens + 1]
    setup = EvalSetup(tokens=tokens, luts=luts, seq_len=seq_len, dist=dist, autocast=autocast,
                      compile_model=compile_model)
    if kind == "standard":
        return StandardEvaluator(cfg, setup)
    if kind == "sliding":
        return SlidingEvaluator(cfg, setup)
    if kind == "ttt":
        from golf.eval.ttt import TTTEvaluator  # ttt.py subclasses Evaluator, so it is imported here, late

        return TTTEvaluator(cfg, setup)
    raise ValueError(f"unknown evaluation kind {kind!r}")
