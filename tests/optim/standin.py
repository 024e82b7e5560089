"""A small module with the official baseline's parameter names, standing in for a real golf model."""

from __future__ import annotations

import torch
from torch import nn

from golf.model.roles import Label, label_parameters
from golf.optim.config import AdamGroupConfig, MuonConfig, OptimizerConfig, ParamRule
from tests.optim.quintic import COEFFS


class _Attn(nn.Module):
    PARAM_ROLES = {**{f"{n}.weight": Label("matrix", "core") for n in ("c_q", "c_k", "c_v", "proj")},
                   "q_gain": Label("control", "core")}

    def __init__(self, d: int, kv: int, heads: int):
        super().__init__()
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, kv, bias=False)
        self.c_v = nn.Linear(d, kv, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.q_gain = nn.Parameter(torch.full((heads,), 1.5))


class _Mlp(nn.Module):
    PARAM_ROLES = {"fc.weight": Label("matrix", "core"), "proj.weight": Label("matrix", "core")}

    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc = nn.Linear(d, hidden, bias=False)
        self.proj = nn.Linear(hidden, d, bias=False)


class _Block(nn.Module):
    PARAM_ROLES = {n: Label("control", "core") for n in ("attn_scale", "mlp_scale", "resid_mix")}

    def __init__(self, d: int, kv: int, heads: int, hidden: int):
        super().__init__()
        self.attn = _Attn(d, kv, heads)
        self.mlp = _Mlp(d, hidden)
        self.attn_scale = nn.Parameter(torch.ones(d))
        self.mlp_scale = nn.Parameter(torch.ones(d))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(d), torch.zeros(d))))


class StandIn(nn.Module):
    """tok_emb, blocks.{i}.attn.{c_q,c_k,c_v,proj}.weight, .attn.q_gain, .mlp.{fc,proj}.weight,
    .attn_scale, .mlp_scale, .resid_mix, skip_weights - the baseline's names and roles at toy sizes."""

    PARAM_ROLES = {"tok_emb.weight": Label("embedding", "core", "input")}

    def __init__(self, layers: int = 4, d: int = 16, kv: int = 8, heads: int = 2, hidden: int = 32, vocab: int = 32):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(_Block(d, kv, heads, hidden) for _ in range(layers))
        self.skip_weights = nn.Parameter(torch.ones(layers // 2, d))
        self.param_roles = label_parameters(self, layers // 2, {"skip_weights": Label("control", "unet", "middle")})


def fill_grads(model: nn.Module, seed: int) -> None:
    """Deterministic pseudo-gradients for every parameter."""
    gen = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen).to(p.dtype)


def seeded_model() -> StandIn:
    torch.manual_seed(0)
    return StandIn(layers=4)


def decoder_cfg() -> OptimizerConfig:
    """#507-style: decoder blocks (2, 3 of 4) at 2x lr in Muon and scalar Adam; AdamW decay on tok."""
    return OptimizerConfig(
        muon=MuonConfig(lr=0.02, weight_decay=0.04),
        adam_groups={"tok": AdamGroupConfig(lr=0.03, weight_decay=0.1), "scalar": AdamGroupConfig(lr=0.01)},
        rules=[
            ParamRule(select="kind=embedding", group="tok"),
            ParamRule(select="kind=matrix & place=decoder", group="muon", lr_mul=2.0),
            ParamRule(select="kind=matrix", group="muon"),
            ParamRule(select="place=decoder", group="scalar", lr_mul=2.0),
            ParamRule(select="place=encoder", group="scalar"),
            ParamRule(select="family=unet", group="frozen"),
        ],
    )


def bf16_muon(momentum=0.9, before=True, row_normalize=False, weight_decay=0.0) -> MuonConfig:
    """Muon settings with a constant momentum and the records' bf16 iteration (also on CPU)."""
    return MuonConfig(momentum=momentum, momentum_warmup=None, ns_steps=5, ns_coefficients=list(COEFFS),
                      ns_dtype="bfloat16", weight_decay=weight_decay,
                      weight_decay_timing="before" if before else "after", row_normalize=row_normalize)
