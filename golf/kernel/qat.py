"""STE quantization-aware training: fake-quantized Linear weights with straight-through gradients.

In the training forward of each target Linear, ``w_eff = w + gate · stopgrad(Q(w) − w)``: the value of
the quantized weight, the gradient of w (spec §2.20; #187 and #295 from step 0, the 03-21/03-22
lineage, #344 and #1573 "late QAT"). Q is the export's per-row int-k quantization for the schemes QAT
takes (clip rowmax, percentile or SDClip; scale ``max(c/qmax, floor)``; codes rounded on the grid and
clamped to the range; the same codes bit for bit, tests/quant/test_qat.py), its codes times the fp32
scale as #187 and #295 trained (spec §6; ``fake_quant_scale=fp16`` multiplies by the fp16 scale the
artifact stores). Eval forwards see the raw weights, as in the records.

The switch is a tensor: each wrapped module holds a non-persistent 0-dim buffer ``qat_gate`` filled in
place (0 → 1), which a compiled graph reads as an input, so late QAT takes effect without recompiling
(the records' class-attribute flag was constant-folded by ``torch.compile``, so it never switched on;
spec §2.20, §5.4). Names stay stable: a target's class is swapped for a cached subclass whose
``weight`` property returns ``w_eff`` while the parameter stays in ``_parameters["weight"]``; state
dicts, averages and the export never see the gate. Apply before ``torch.compile`` and before building
the optimizers; ``remove`` restores the original classes (before export).

Schedules (it never switches off): ``always`` (#187, #295), ``lr_below`` (lr multiplier below
``lr_threshold``; 03-22 lineage, #1573), ``wallclock_fraction`` (training clock at ``start_fraction``
of the cap; #344). The targets table (weight name -> QAT scheme name) is resolved by the lab from role
rules (:func:`golf.quant.qat.qat_table`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from golf.kernel.quantize import fake_quantize

if TYPE_CHECKING:
    from golf.quant.config import QATConfig, QuantConfig

QAT_GATE = "qat_gate"
QAT_CLASSES = {}  # Linear class -> its fake-quantizing subclass


def qat_weight(m, /):
    w = m._parameters["weight"]
    if not m.training:
        return w
    return w + m._buffers[QAT_GATE].to(w.dtype) * (fake_quantize(w, m.qat_scheme, m.qat_scale) - w).detach()


class QatOff:
    """QAT off: the loop calls it like the real controller and nothing happens."""

    active = False

    def update(self, step, elapsed_s, lr_mul, max_wallclock_s):
        return False

    def remove(self, model, /):
        pass

    def state_dict(self, /):
        return {}

    def load_state_dict(self, state, /):
        pass


def qat_on(model, c: QATConfig, targets, /):
    """Wrap the target Linears and return the controller that switches them on."""
    mods = {}  # module name -> wrapped Linear
    for n, k in targets.items():
        name = n.rpartition(".")[0]
        mod = model.get_submodule(name)
        mod.register_buffer(QAT_GATE, torch.zeros((), device=mod._parameters["weight"].device), persistent=False)
        mod.qat_scheme, mod.qat_scale = c.schemes[k], c.fake_quant_scale
        cls = type(mod)
        if cls not in QAT_CLASSES:
            QAT_CLASSES[cls] = type("QAT" + cls.__name__, (cls,), {"weight": property(qat_weight), "_qat_base": cls})
        mod.__class__ = QAT_CLASSES[cls]
        mods[name] = mod

    class QAT:
        active = False
        modules = mods

        def set(self, on, /):
            self.active = on
            for mod in self.modules.values():  # looked up each time: model.to() replaces buffers
                mod._buffers[QAT_GATE].fill_(1.0 if on else 0.0)

        def update(self, step, elapsed_s, lr_mul, max_wallclock_s):
            """Switch on when due (``always`` is on from the start); True on the call that switched it on."""
            if c.schedule != "always" and not self.active and (
                    lr_mul < c.lr_threshold if c.schedule == "lr_below"
                    else elapsed_s >= c.start_fraction * max_wallclock_s):
                self.set(True)
                return True
            return False

        def remove(self, model, /):
            """Restore the original class of every Linear it wrapped (in ``model``) and drop its gate."""
            for mod in self.modules.values():
                mod.__class__ = mod._qat_base
                del mod._buffers[QAT_GATE], mod.qat_scheme, mod.qat_scale
            self.modules, self.active = {}, False

        def state_dict(self, /):
            return {"active": self.active}

        def load_state_dict(self, state, /):
            self.set(bool(state["active"]))

    q = QAT()
    if c.schedule == "always":
        q.set(True)
    return q


def apply_qat(model, cfg: QuantConfig, targets, /):
    """The QAT controller of ``cfg.qat`` (the quant config is taken whole so that a recipe without QAT
    keeps none of this code) over ``targets``: weight name -> scheme name of ``cfg.qat.schemes``.
    ``update(step, elapsed_s, lr_mul, max_wallclock_s)``, ``remove(model)``, ``active``, ``state_dict()``."""
    c = cfg.qat
    return QatOff() if c is None else qat_on(model, c, targets)
