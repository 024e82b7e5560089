"""Post-training quantization, packing and compression into the 16,000,000-byte artifact, plus QAT.

The techniques themselves run in the kernel (golf.kernel.quantize, golf.kernel.gptq,
golf.kernel.artifact); this package is the lab around them: config, routing tables, validation, reports.

Public API (see each module for the technique and its sources):
    blob, report = export_state_dict(state_dict, cfg, model.param_roles)    # golf.quant.export
    state_dict = load_artifact(blob)                      # validated; load_artifact(blob, expect=model.state_dict())
    check_budget(artifact_bytes, cfg)                     # golf.quant.report
    estimate_artifact_bytes(model_or_shapes, cfg)         # golf.quant.estimate
    qat = golf.quant.qat.apply_qat(model, cfg.qat)        # golf.quant.qat
"""

from golf.quant.config import QATConfig, QuantConfig, validate_quant
from golf.quant.estimate import estimate_artifact_bytes
from golf.quant.export import export_state_dict, load_artifact
from golf.quant.report import (
    ESTIMATE_TOLERANCE,
    BudgetExceededError,
    BudgetWarning,
    QuantReport,
    check_budget,
    check_estimate,
)
from golf.quant.validate_artifact import ArtifactError

__all__ = [
    "ArtifactError",
    "BudgetExceededError",
    "BudgetWarning",
    "QATConfig",
    "QuantConfig",
    "QuantReport",
    "check_budget",
    "check_estimate",
    "ESTIMATE_TOLERANCE",
    "estimate_artifact_bytes",
    "export_state_dict",
    "load_artifact",
    "validate_quant",
]
