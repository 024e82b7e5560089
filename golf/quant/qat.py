"""STE quantization-aware training: fake-quantized Linear weights with straight-through gradients.

In the forward of each selected Linear, ``w_eff = w + gate · stopgrad(Q(w) − w)``: the value of the
quantized weight Q(w), the gradient of w (spec §2.20; #187 and #295 from step 0, the 03-21/03-22
lineage, #344 and #1573 "late QAT"). Q is :func:`golf.quant.quantizer.fake_quantize` — the export's
own quantizer — with a scheme from ``QATConfig.schemes``: the codes times the fp32 scale, as #187 and
#295 trained (spec §6; ``fake_quant_scale=fp16`` multiplies by the scale the artifact stores instead).
As in the records, fake quantization applies only in training mode; eval forwards see the raw weights.

The switch is a tensor: every wrapped module holds a non-persistent 0-dim buffer ``qat_gate`` that the
controller fills in place (0 → 1). A compiled graph reads the buffer as an input, so the switch takes
effect without recompiling — unlike the records' class-attribute flag, which (per the 03-21 record)
``torch.compile`` constant-folded, so late QAT never switched on (spec §2.20, §5.4).

Parameter names stay stable: a selected module's class is swapped for a cached subclass whose
``weight`` property returns ``w_eff`` while the parameter itself stays in ``_parameters["weight"]``.
(``torch.nn.utils.parametrize`` would rename it to ``….parametrizations.weight.original``, breaking
optimizer name rules and state-dict keys.) The gate buffer is non-persistent, so state dicts, EMA/SWA
and the export never see it. Call :func:`apply_qat` before ``torch.compile`` and before building
optimizers; :meth:`QATController.remove` restores the original classes (before export).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from golf.kernel.quantize import fake_quantize
from golf.quant.config import QATConfig, QATSchedule, ScalePrecision, as_scheme
from golf.rules import first_match

GATE = "qat_gate"
_SUBCLASSES: dict[type, type] = {}


def _qat_weight(module: nn.Module) -> Tensor:
    w = module._parameters["weight"]
    if not module.training:
        return w
    gate = module._buffers[GATE]
    return w + gate.to(w.dtype) * (fake_quantize(w, module.qat_scheme, module.qat_scale) - w).detach()


def _qat_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``weight`` attribute is the fake-quantized parameter."""
    if cls not in _SUBCLASSES:
        _SUBCLASSES[cls] = type(f"QAT{cls.__name__}", (cls,), {"weight": property(_qat_weight),
                                                               "_qat_base": cls})
    return _SUBCLASSES[cls]


class QATController:
    """Owns the wrapped modules and turns fake quantization on when the schedule says so."""

    def __init__(self, cfg: QATConfig, modules: dict[str, nn.Module]):
        self.cfg = cfg
        self.modules = modules  # module name → wrapped Linear
        self._active = False
        if cfg.schedule is QATSchedule.always:
            self._set(True)

    @property
    def active(self) -> bool:
        return self._active

    def _set(self, on: bool) -> None:
        self._active = on
        for m in self.modules.values():  # looked up each time: model.to() replaces buffers
            m._buffers[GATE].fill_(1.0 if on else 0.0)

    def due(self, elapsed_s: float, lr_mul: float, max_wallclock_s: float | None) -> bool:
        """Whether the schedule asks for fake quantization at this point of training."""
        if self.cfg.schedule is QATSchedule.always:
            return True
        if self.cfg.schedule is QATSchedule.lr_below:
            return lr_mul < self.cfg.lr_threshold
        if not max_wallclock_s or max_wallclock_s <= 0:
            raise ValueError("quant.qat.schedule=wallclock_fraction needs a positive max_wallclock_s")
        return elapsed_s >= self.cfg.start_fraction * max_wallclock_s

    def update(self, step: int, elapsed_s: float, lr_mul: float, max_wallclock_s: float | None) -> bool:
        """Switch on when due (once on, it stays on). Returns True on the call that switched it on."""
        if self._active or not self.due(elapsed_s, lr_mul, max_wallclock_s):
            return False
        self._set(True)
        return True

    def state_dict(self) -> dict:
        """Checkpointed state: whether fake quantization is on."""
        return {"active": self._active}

    def load_state_dict(self, state: dict) -> None:
        self._set(bool(state["active"]))

    def remove(self, model: nn.Module) -> None:
        """Restore the original class of every QAT-wrapped Linear in ``model`` and drop its gate."""
        for module in model.modules():
            base = type(module).__dict__.get("_qat_base")
            if base is not None:
                module.__class__ = base
                del module._buffers[GATE]
                del module.qat_scheme, module.qat_scale
        self.modules = {}
        self._active = False


class NoQAT:
    """The controller when QAT is off: the training loop calls it like any other and nothing happens."""

    modules: dict[str, nn.Module] = {}
    active = False

    def update(self, step: int, elapsed_s: float, lr_mul: float, max_wallclock_s: float | None) -> bool:
        return False

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def remove(self, model: nn.Module) -> None:
        pass


def apply_qat(model: nn.Module, cfg: QATConfig | None, prefix: str = "quant.qat") -> QATController | NoQAT:
    """Wrap the Linear weights selected by ``cfg.rules``; a :class:`NoQAT` when QAT is off (``cfg`` is None).

    Rules are role expressions over the weights' parameter roles (``model.param_roles``, first match
    wins, :mod:`golf.rules`); a Linear weight no rule selects, or with at most ``cfg.min_numel``
    elements, is not fake-quantized.
    """
    if cfg is None:
        return NoQAT()
    linears: dict[str, nn.Module] = {}
    for mod_name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not hasattr(module, "_qat_base") \
                and module._parameters["weight"].numel() > cfg.min_numel:
            linears[f"{mod_name}.weight" if mod_name else "weight"] = module
    roles = {name: model.param_roles[name] for name in linears}
    matches = first_match(cfg.rules, roles, f"{prefix}.rules", require_all=False)
    modules: dict[str, nn.Module] = {}
    for pname, match in matches.items():
        module = linears[pname]
        weight = module._parameters["weight"]
        module.register_buffer(GATE, torch.zeros((), device=weight.device), persistent=False)
        module.qat_scheme = as_scheme(cfg.schemes[match.rule.scheme])  # a plain dataclass for the compiler
        module.qat_scale = ScalePrecision(cfg.fake_quant_scale)
        module.__class__ = _qat_class(type(module))
        modules[pname.removesuffix(".weight")] = module
    return QATController(cfg, modules)
