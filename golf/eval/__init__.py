"""Evaluation: exact val_bpb with standard or sliding windows."""

from golf.eval.bpb import BPBAccumulator, EvalResult
from golf.eval.config import EvalConfig, validate_eval
from golf.eval.windows import evaluate, evaluate_sliding, evaluate_standard, sliding_windows

__all__ = [
    "BPBAccumulator",
    "EvalConfig",
    "EvalResult",
    "evaluate",
    "evaluate_sliding",
    "evaluate_standard",
    "sliding_windows",
    "validate_eval",
]
