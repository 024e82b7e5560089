"""QAT's targets: which Linear weights are fake-quantized during training, and with which scheme.

The technique itself (STE fake quantization behind a tensor gate, its schedules) is the kernel's
(:mod:`golf.kernel.qat`); here the lab resolves ``QATConfig.rules`` (role expressions over the weights'
parameter roles, first match wins, :mod:`golf.rules`) into the plain table the kernel takes, and checks
it against the model before anything trains. A Linear weight that no rule selects, or with at most
``min_numel`` elements, is not fake-quantized.
"""

from __future__ import annotations

from torch import nn

from golf.config.errors import ConfigError
from golf.kernel.qat import QAT_GATE as GATE
from golf.kernel.qat import QatOff, qat_on
from golf.quant.config import ClipRule, QATConfig, QuantConfig
from golf.rules import first_match

__all__ = ["GATE", "apply_qat", "qat_table"]

QUANTILE_MAX_NUMEL = 1 << 24  # torch.quantile refuses larger inputs


def qat_table(model: nn.Module, cfg: QuantConfig, prefix: str = "quant") -> dict[str, str]:
    """Weight name -> QAT scheme name (a key of ``cfg.qat.schemes``) for every Linear weight that
    ``cfg.qat.rules`` selects, in the model's order; empty when QAT is off. Raises :class:`ConfigError`
    for a rule that does not parse or a weight its scheme cannot take."""
    return {} if cfg.qat is None else _targets(model, cfg.qat, f"{prefix}.qat")


def _targets(model: nn.Module, cfg: QATConfig, prefix: str) -> dict[str, str]:
    linears = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not hasattr(module, "_qat_base") \
                and module._parameters["weight"].numel() > cfg.min_numel:
            linears[f"{mod_name}.weight" if mod_name else "weight"] = module._parameters["weight"]
    matches = first_match(cfg.rules, {name: model.param_roles[name] for name in linears}, f"{prefix}.rules",
                          require_all=False)
    table = {}
    for name, match in matches.items():
        scheme = cfg.schemes[match.rule.scheme]
        if scheme.clip == ClipRule.percentile and scheme.clip_quantile < 1.0 \
                and linears[name].numel() > QUANTILE_MAX_NUMEL:
            raise ConfigError(f"{prefix}.rules[{match.index}].scheme", match.rule.scheme,
                              f"clips {name} ({linears[name].numel():,} elements) by percentile, which QAT "
                              f"computes for at most {QUANTILE_MAX_NUMEL:,}; use clip=rowmax or sdclip")
        table[name] = match.rule.scheme
    return table


def apply_qat(model: nn.Module, cfg: QATConfig | None, prefix: str = "quant.qat"):
    """Wrap the Linear weights ``cfg`` selects (:func:`qat_table`) and return the kernel's controller
    (``update``, ``remove``, ``active``, ``modules``, ``state_dict``); a no-op controller when ``cfg`` is
    None. Call before ``torch.compile`` and before building the optimizers."""
    return QatOff() if cfg is None else qat_on(model, cfg, _targets(model, cfg, prefix))
