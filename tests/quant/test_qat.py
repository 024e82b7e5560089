"""STE QAT: stable names, straight-through gradients, schedules, and a switch that works compiled."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo.testing
from torch import nn

from golf.config.errors import ConfigError
from golf.kernel.qat import apply_qat as kernel_apply_qat
from golf.kernel.quantize import fake_quantize
from golf.quant.config import (
    ClipRule,
    QATConfig,
    QATSchedule,
    QuantConfig,
    RangeConvention,
    RuleConfig,
    ScaleFloor,
    ScalePrecision,
    SchemeConfig,
)
from golf.quant.qat import GATE, apply_qat, qat_table
from tests.helpers import roles_by_name

INT3 = SchemeConfig(bits=3, clip=ClipRule.rowmax, scale_floor=ScaleFloor.tiny, range=RangeConvention.full)
INT6 = SchemeConfig(bits=6, clip=ClipRule.rowmax, scale_floor=ScaleFloor.tiny)


class CastedLinear(nn.Linear):
    """Like the model's linears: fp32 weights cast to the input dtype in the forward."""

    def forward(self, x):
        return nn.functional.linear(x, self.weight.to(x.dtype))


class Attn(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_q = CastedLinear(d, d, bias=False)


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fc = nn.Linear(d, 2 * d, bias=False)
        self.proj = nn.Linear(2 * d, d, bias=False)


class Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.attn, self.mlp = Attn(d), Mlp(d)
        self.attn_scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        x = x + self.attn_scale * self.attn.c_q(x)
        return x + self.mlp.proj(torch.relu(self.mlp.fc(x)))


class Net(nn.Module):
    def __init__(self, d=16, layers=2):
        super().__init__()
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def _net(seed=0):
    torch.manual_seed(seed)
    net = Net()
    net.param_roles = roles_by_name(dict(net.named_parameters()))  # what a golf model labels itself
    return net


def _cfg(schedule=QATSchedule.always, rules=(("part=mlp", "int3"), ("*", "int6")), **kw):
    return QATConfig(schedule=schedule, schemes={"int3": INT3, "int6": INT6},
                     rules=[RuleConfig(p, s) for p, s in rules], **kw)


def _reference(net, x, quantized):
    """The forward with each selected weight replaced by its fake-quantized value (or not)."""
    def w(linear, scheme):
        return fake_quantize(linear._parameters["weight"], scheme) if quantized else linear._parameters["weight"]
    for b in net.blocks:
        x = x + b.attn_scale * (x @ w(b.attn.c_q, INT6).T)
        x = x + torch.relu(x @ w(b.mlp.fc, INT3).T) @ w(b.mlp.proj, INT3).T
    return x


def test_off_is_a_controller_that_does_nothing():
    off = apply_qat(_net(), None)
    assert not off.active and not off.update(0, 1.0, 0.0, None) and off.state_dict() == {}


def test_names_state_dict_and_parameters_are_unchanged():
    net = _net()
    names = [n for n, _ in net.named_parameters()]
    params = list(net.parameters())
    keys = list(net.state_dict())
    qat = apply_qat(net, _cfg())
    assert [n for n, _ in net.named_parameters()] == names
    assert all(a is b for a, b in zip(net.parameters(), params, strict=True))
    assert list(net.state_dict()) == keys  # the gate buffer is not persistent
    assert set(qat.modules) == {f"blocks.{i}.{m}" for i in range(2) for m in ("attn.c_q", "mlp.fc", "mlp.proj")}
    assert net.blocks[0].mlp.fc.qat_scheme.bits == 3 and net.blocks[0].attn.c_q.qat_scheme.bits == 6


def test_forward_uses_fake_quantized_weights_only_in_training_mode():
    net = _net()
    x = torch.randn(4, 16)
    raw = _reference(net, x, quantized=False)
    qat = apply_qat(net, _cfg())
    assert qat.active
    assert torch.allclose(net(x), _reference(net, x, quantized=True), atol=1e-6)
    assert not torch.allclose(net(x), raw, atol=1e-3)
    net.eval()
    assert torch.allclose(net(x), raw, atol=1e-6)


def test_straight_through_gradient():
    net = _net()
    apply_qat(net, _cfg(rules=(("*", "int3"),)))
    lin = net.blocks[0].mlp.fc
    x = torch.randn(5, 16)
    (lin(x) ** 2).sum().backward()
    w_q = fake_quantize(lin._parameters["weight"].detach(), INT3).requires_grad_(True)
    ((x @ w_q.T) ** 2).sum().backward()
    # d loss / d w equals d loss / d w_eff evaluated at the quantized weight
    assert torch.allclose(lin._parameters["weight"].grad, w_q.grad, atol=1e-6)


def test_schedules():
    lr = apply_qat(_net(), _cfg(QATSchedule.lr_below, lr_threshold=0.15))
    assert not lr.active
    assert lr.update(step=10, elapsed_s=1.0, lr_mul=0.5, max_wallclock_s=600) is False
    assert lr.update(step=11, elapsed_s=2.0, lr_mul=0.1, max_wallclock_s=600) is True
    assert lr.active and lr.update(step=12, elapsed_s=3.0, lr_mul=1.0, max_wallclock_s=600) is False
    net = _net()
    wall = apply_qat(net, _cfg(QATSchedule.wallclock_fraction, start_fraction=0.85))
    assert not wall.update(1, elapsed_s=509.0, lr_mul=1.0, max_wallclock_s=600)
    assert float(net.blocks[0].mlp.fc._buffers[GATE]) == 0.0
    assert wall.update(2, elapsed_s=510.0, lr_mul=1.0, max_wallclock_s=600) and wall.active
    assert float(net.blocks[0].mlp.fc._buffers[GATE]) == 1.0
    # (a wallclock_fraction schedule without a cap is refused by validation: tests/config/test_compose.py)


def test_state_dict_round_trip():
    qat = apply_qat(_net(), _cfg(QATSchedule.lr_below))
    qat.update(1, 1.0, 0.01, None)
    resumed = apply_qat(_net(), _cfg(QATSchedule.lr_below))
    resumed.load_state_dict(qat.state_dict())
    assert resumed.active and all(float(m._buffers[GATE]) == 1.0 for m in resumed.modules.values())


def test_min_numel_and_rules_that_select_nothing():
    net = _net()
    qat = apply_qat(net, _cfg(rules=(("*", "int6"),), min_numel=16 * 16))
    assert set(qat.modules) == {f"blocks.{i}.mlp.{m}" for i in range(2) for m in ("fc", "proj")}  # 512 > 256
    # a rule for a technique the model lacks selects nothing; a Linear no rule selects stays plain
    qat = apply_qat(_net(), _cfg(rules=(("family=bigram", "int6"), ("part=mlp & layer=1", "int6"))))
    assert set(qat.modules) == {"blocks.1.mlp.fc", "blocks.1.mlp.proj"}
    with pytest.raises(ConfigError) as err:
        apply_qat(_net(), _cfg(rules=(("part=mpl", "int6"),)))
    assert err.value.key == "quant.qat.rules[0].select"


def test_remove_restores_plain_modules():
    net = _net()
    x = torch.randn(3, 16)
    raw = net(x)
    qat = apply_qat(net, _cfg())
    qat.remove(net)
    assert type(net.blocks[0].attn.c_q) is CastedLinear and type(net.blocks[0].mlp.fc) is nn.Linear
    assert GATE not in dict(net.named_buffers(recurse=True)) and not qat.active
    assert torch.equal(net(x), raw)


def _switch_under_compile(backend):
    net = _net()
    x = torch.randn(4, 16)
    qat = apply_qat(net, _cfg(QATSchedule.lr_below, lr_threshold=0.15))
    compiled = torch.compile(net, backend=backend, fullgraph=True)
    before = compiled(x)
    assert torch.allclose(before, _reference(net, x, quantized=False), atol=1e-3)  # compilers reorder math
    assert qat.update(100, 500.0, 0.1, 600)  # the trainer's call; fills the gate buffers in place
    after = compiled(x)
    assert torch.allclose(after, _reference(net, x, quantized=True), atol=1e-3)
    assert (after - before).abs().max() > 0.05  # int3 weights change the output visibly


def test_switch_takes_effect_in_a_compiled_graph_without_recompiling():
    counter = torch._dynamo.testing.CompileCounterWithBackend("aot_eager")
    torch._dynamo.reset()
    _switch_under_compile(counter)
    assert counter.frame_count == 1  # one graph; the gate is an input, not a folded constant


@pytest.mark.slow
def test_switch_takes_effect_with_inductor():
    torch._dynamo.reset()
    _switch_under_compile("inductor")


def test_fake_quantized_weight_is_codes_times_the_fp32_scale_by_default():
    """#187/#295 (spec §6): w_q = q · s with s in fp32; ``fake_quant_scale=fp16`` uses the stored scale."""
    w = torch.zeros(16, 16)
    w[:, 0], w[:, 1] = 0.5, 0.1  # every row: rowmax 0.5, s = 0.5/31; 0.1/s = 6.2 → 6
    codes = torch.zeros(16, 16)
    codes[:, 0], codes[:, 1] = 31, 6
    for scale, s in ((ScalePrecision.fp32, torch.tensor(0.5) / 31), (ScalePrecision.fp16, 0.0161285400390625)):
        net = _net()
        net.blocks[0].attn.c_q.weight.data.copy_(w)
        apply_qat(net, _cfg(rules=(("*", "int6"),), fake_quant_scale=scale))
        assert net.blocks[0].attn.c_q.qat_scale is scale
        assert torch.equal(net.blocks[0].attn.c_q.weight, codes * s)


def test_kernel_entry_takes_the_quant_config_and_the_targets_table():
    """The run kernel's apply_qat: off (quant.qat null) is a controller that does nothing; on, it wraps
    exactly the table's weights with the table's schemes."""
    off = kernel_apply_qat(_net(), QuantConfig(qat=None), {})
    assert not off.active and not off.update(0, 1.0, 0.0, None) and off.state_dict() == {}
    net, cfg = _net(), _cfg()
    table = qat_table(net, QuantConfig(qat=cfg))
    assert table == {f"blocks.{i}.{m}.weight": s for i in range(2)
                     for m, s in (("attn.c_q", "int6"), ("mlp.fc", "int3"), ("mlp.proj", "int3"))}
    qat = kernel_apply_qat(net, QuantConfig(qat=cfg), table)
    assert qat.active and set(qat.modules) == {n.removesuffix(".weight") for n in table}
    assert net.blocks[1].mlp.proj.qat_scheme is cfg.schemes["int3"]


def test_percentile_targets_above_the_quantile_limit_are_refused():
    """torch.quantile takes at most 2^24 elements: a percentile QAT scheme on a larger Linear is refused
    when the targets are resolved (at validation, on the meta device), naming the rule."""
    with torch.device("meta"):
        net = nn.Module()
        net.big = nn.Linear(4097, 4097, bias=False)  # 16,785,409 > 2^24 elements
    net.param_roles = roles_by_name(dict(net.named_parameters()), kinds={"big.weight": "matrix"})
    pct = SchemeConfig(bits=6, clip=ClipRule.percentile, clip_quantile=0.999)
    cfg = QATConfig(schemes={"pct": pct, "max": INT6}, rules=[RuleConfig("*", "pct")])
    with pytest.raises(ConfigError) as err:
        qat_table(net, QuantConfig(qat=cfg))
    assert err.value.key == "quant.qat.rules[0].scheme"
    rowmax = QATConfig(schemes={"max": INT6}, rules=[RuleConfig("*", "max")])
    assert qat_table(net, QuantConfig(qat=rowmax)) == {"big.weight": "max"}
    assert qat_table(net, QuantConfig(qat=None)) == {}
