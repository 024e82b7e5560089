"""Evaluation settings and the lab around the kernel's evaluators.

The evaluators themselves (exact val_bpb with standard or sliding windows, score-first test-time
training) are run code: :mod:`golf.kernel.evaluator`, :mod:`golf.kernel.evaluate`, :mod:`golf.kernel.ttt`.
Here: the ``eval`` config group and its checks (:mod:`golf.eval.config`), the table of parameters TTT
keeps frozen, the progress display the evaluators report to and the final evaluation's time against
``eval.budget_s`` (:mod:`golf.eval.progress`).
"""

from golf.eval.config import (
    EvalConfig,
    PhasedConfig,
    TTTConfig,
    check_ttt_model,
    ttt_frozen_prefixes,
    validate_eval,
)
from golf.eval.progress import EvalBudget, eval_progress

__all__ = ["EvalBudget", "EvalConfig", "PhasedConfig", "TTTConfig", "check_ttt_model", "eval_progress", "ttt_frozen_prefixes", "validate_eval"]
