"""The forward's bf16 ops as the official script and the records compute them (bf16 autocast works on a
CPU): the logit soft-cap in the stream's dtype (``arch.logit_softcap_fp32`` restores golf's fp32 cap) and
#1493's gated skip merge as ``torch.lerp`` with the gate's sigmoid in the stream's dtype
(``arch.skips.merge=lerp``; ``mix`` is #507's g·x + (1−g)·w·skip with an fp32 sigmoid)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.model import build_model
from tests.helpers import TINY, compose_config


def _model(*overrides):
    cfg = load_config(compose_config([*TINY, *overrides]))
    torch.manual_seed(0)
    return cfg, build_model(cfg.arch).eval()


def _bf16():
    return torch.autocast("cpu", torch.bfloat16)


@pytest.mark.parametrize("fp32", [False, True])
def test_logit_softcap_in_the_streams_dtype(fp32):
    cfg, model = _model(f"arch.logit_softcap_fp32={fp32}")
    seen = []
    model.final_norm.register_forward_hook(lambda mod, i, o: seen.append(o))
    ids = torch.randint(0, cfg.arch.vocab_size, (2, 16))
    targets = torch.randint(0, cfg.arch.vocab_size, (2, 16))
    with torch.no_grad(), _bf16():
        logits = model(ids)
        loss = model(ids, targets)
        raw = F.linear(seen[0], model.tok_emb.weight.to(seen[0].dtype))  # the head's bf16 output
    assert raw.dtype == torch.bfloat16
    cap = cfg.arch.logit_softcap
    capped = cap * torch.tanh((raw.float() if fp32 else raw) / cap)  # the record: bf16 tanh, then .float()
    assert capped.dtype == (torch.float32 if fp32 else torch.bfloat16)
    assert logits.dtype == torch.float32 and torch.equal(logits, capped.float())
    assert torch.equal(loss, F.cross_entropy(capped.float().reshape(-1, capped.size(-1)), targets.reshape(-1)))
    if not fp32:  # the bf16 cap rounds: not the fp32 one
        assert not torch.equal(logits, cap * torch.tanh(raw.float() / cap))


@pytest.mark.parametrize("merge", ["lerp", "mix"])
def test_gated_skip_merge_as_written(merge):
    # a bf16 stream (bf16 embedding under autocast): 1 encoder block whose output the decoder block merges
    cfg, model = _model("arch.skips.kind=gated", f"arch.skips.merge={merge}", "arch.embedding_dtype=bfloat16")
    with torch.no_grad():
        model.skip_gates.normal_(0, 2)
        model.skip_weights.uniform_(0.3, 1.7)
    pushed, merged = [], []
    model.blocks[0].register_forward_hook(lambda mod, i, o: pushed.append(o))
    model.blocks[1].register_forward_pre_hook(lambda mod, args: merged.append(args[0]))
    with torch.no_grad(), _bf16():
        model(torch.randint(0, cfg.arch.vocab_size, (2, 16)))
    e, w, gate = pushed[0], model.skip_weights[0], model.skip_gates[0]
    assert e.dtype == torch.bfloat16
    lerp = torch.lerp(w.to(e.dtype) * e, e, torch.sigmoid(gate.to(e.dtype)))
    g = torch.sigmoid(gate).to(e.dtype)
    mix = g * e + (1.0 - g) * (w.to(e.dtype) * e)
    assert torch.equal(merged[0], lerp if merge == "lerp" else mix)
    assert not torch.equal(lerp, mix)  # the option decides bits


def test_presets_and_checks():
    assert load_config(compose_config(["experiment=pr1493"])).arch.skips.merge == "lerp"
    assert load_config(compose_config(["experiment=pr507"])).arch.skips.merge == "mix"
    with pytest.raises(ConfigError, match="arch.skips.merge='sum': must be mix or lerp"):
        load_config(compose_config([*TINY, "arch.skips.merge=sum"]))
