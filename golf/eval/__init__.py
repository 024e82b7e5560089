"""Evaluation: exact val_bpb with standard or sliding windows, or score-first test-time training.

Callers build an :class:`Evaluator` once (:func:`build_evaluator`) and hand it the model to score.
"""

from golf.eval.bpb import BPBAccumulator, EvalResult
from golf.eval.compliance import ComplianceError, ScoreLedger
from golf.eval.config import EvalConfig, TTTConfig, validate_eval
from golf.eval.evaluator import EvalSetup, Evaluator, SlidingEvaluator, StandardEvaluator, build_evaluator
from golf.eval.windows import evaluate, evaluate_sliding, evaluate_standard, score_windows, sliding_windows

__all__ = [
    "BPBAccumulator",
    "ComplianceError",
    "EvalConfig",
    "EvalResult",
    "EvalSetup",
    "Evaluator",
    "ScoreLedger",
    "SlidingEvaluator",
    "StandardEvaluator",
    "TTTConfig",
    "build_evaluator",
    "evaluate",
    "evaluate_sliding",
    "evaluate_standard",
    "score_windows",
    "sliding_windows",
    "validate_eval",
]
