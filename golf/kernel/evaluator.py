"""The evaluator interface: built once for a run, handed the model to score.

``build_evaluator(cfg.eval, tokens, nbytes, seq_len, dist, ...)`` fixes everything but the model (the
stream and the bytes of its tokens, window, ranks, precision); ``evaluator(model, forward=None)`` runs the model in
eval mode (its train/eval mode is put back) through ``forward`` (an equivalent callable, e.g. its
compiled form), else the one registered with ``use_forward``, else the model itself (compiled once
when ``compile_model``). ``plain()`` is the same scorer without adaptation (TTT's is the sliding one).
Standard and sliding evaluation change nothing; score-first TTT (:mod:`golf.kernel.ttt`) and per-document
phased LoRA TTT (:mod:`golf.kernel.phased`, whose plain form is the standard scorer) adapt a private
copy, so the weights exported or scored elsewhere are the same before and after.

``progress``, when given, is called ``progress(kind, done, total, sums)`` after each batch (or TTT chunk):
the lab's display; ``sums`` are this rank's running float64 [nll, targets, bytes].
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch

from golf.kernel.evaluate import EvalResult, evaluate_sliding, evaluate_standard
from golf.kernel.phased import phased_evaluate
from golf.kernel.ttt import ttt_evaluate

if TYPE_CHECKING:
    from golf.eval.config import EvalConfig


class Evaluator:
    """``evaluator(model, forward=None) -> EvalResult`` (module doc); ``score(forward, model)`` scores."""

    def __init__(self, score, compile_model: bool, forwards: dict, plain: Evaluator | None = None):
        self.score, self.compile_model, self.forwards, self.base = score, compile_model, forwards, plain or self

    def plain(self) -> Evaluator:
        """The evaluator that scores the same windows without changing anything."""
        return self.base

    def use_forward(self, model, forward) -> Evaluator:
        """Score ``model`` through ``forward`` (e.g. the trainer's compiled module) from now on."""
        self.forwards[id(model)] = model, forward
        return self

    def __call__(self, model, forward=None) -> EvalResult:
        if forward is None:
            known, forward = self.forwards.get(id(model), (None, None))
            if known is not model:
                forward = torch.compile(model, fullgraph=True, dynamic=False) if self.compile_model else model
                self.use_forward(model, forward)
        training = model.training
        model.eval()
        try:
            return self.score(forward, model)
        finally:
            model.train(training)


def build_evaluator(cfg: EvalConfig, tokens, nbytes, seq_len, dist, autocast=contextlib.nullcontext,
                    compile_model=False, kind=None, progress=None, ttt_frozen=()) -> Evaluator:
    """The evaluator of ``cfg`` (``kind="standard"``: the standard one whatever ``cfg.kind``, as periodic
    validation uses). ``tokens`` are cut to ``cfg.max_tokens`` targets; ``nbytes``: the bytes of each
    token as a target, aligned with ``tokens`` (:func:`golf.kernel.data.validation_bytes`; it may run
    longer); ``ttt_frozen``: the name prefixes of the parameters TTT keeps frozen (the lab's table,
    :func:`golf.eval.config.ttt_frozen_prefixes`)."""
    if cfg.max_tokens is not None:
        tokens = tokens[:cfg.max_tokens + 1]
    kw = dict(tokens=tokens, nbytes=nbytes[:len(tokens)], seq_len=seq_len, dist=dist, autocast=autocast,
              progress=progress)
    forwards = {}  # id(model) -> (model, forward), shared with the plain form
    if cfg.kind == "standard" or cfg.kind == "phased" or kind == "standard":
        ev = Evaluator(lambda f, m: evaluate_standard(f, batch_tokens=cfg.batch_tokens, **kw), compile_model, forwards)
        if cfg.kind == "phased" and kind is None:
            ev = Evaluator(lambda f, m: phased_evaluate(m, m.cfg, cfg.phased, compile_model, **kw), compile_model,
                           forwards, ev)
    else:
        ev = Evaluator(lambda f, m: evaluate_sliding(f, stride=cfg.stride, batch_windows=cfg.batch_windows, **kw),
                       compile_model, forwards)
        if cfg.kind == "ttt":
            sliding = ev
            ev = Evaluator(lambda f, m: ttt_evaluate(m, f, cfg, sliding, compile_model, ttt_frozen, **kw),
                           compile_model, forwards, sliding)
    return ev
