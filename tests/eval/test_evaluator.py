"""The evaluator interface: standard and sliding evaluators are handed the model and change nothing."""

from __future__ import annotations

import pytest
import torch

from golf.dist import DistInfo
from golf.eval import EvalConfig
from golf.kernel.evaluate import evaluate_sliding, evaluate_standard
from golf.kernel.evaluator import build_evaluator
from tests.eval.test_windows import TinyCausalLM

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def stream(val_prefix_shard, sp_model_path):
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    tokens = read_shard(val_prefix_shard)[:2001].to(torch.int64)
    return tokens, piece_bytes(byte_tables(sp_model_path, 1024), tokens)


@pytest.mark.parametrize("kind", ["standard", "sliding"])
def test_evaluators_keep_the_exact_numerics_and_the_models_mode(stream, kind):
    tokens, nbytes = stream
    model = TinyCausalLM().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = EvalConfig(name=kind, kind=kind, seq_len=32, stride=8 if kind == "sliding" else None,
                     batch_tokens=256, batch_windows=5, max_tokens=1500)
    ev = build_evaluator(cfg, tokens=tokens, nbytes=nbytes, seq_len=32, dist=CPU)
    assert ev.plain() is ev
    result = ev(model)
    assert model.training  # put back as found
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    ref_model = TinyCausalLM().eval()
    if kind == "standard":
        ref = evaluate_standard(ref_model, tokens[:1501], nbytes, seq_len=32, batch_tokens=256, dist=CPU)
    else:
        ref = evaluate_sliding(ref_model, tokens[:1501], nbytes, seq_len=32, stride=8, batch_windows=5, dist=CPU)
    assert result == ref and result.to_dict() == ref.to_dict()
    assert result.val_tokens == (1472 if kind == "standard" else 1500)  # 46 whole windows of 32 / every target


def test_a_registered_forward_is_what_scores_the_model(stream):
    tokens, nbytes = stream
    model = TinyCausalLM()
    calls = []

    def forward(x):
        calls.append(x.shape)
        return model(x)

    ev = build_evaluator(EvalConfig(max_tokens=256), tokens=tokens, nbytes=nbytes, seq_len=32, dist=CPU)
    ev.use_forward(model, forward)
    assert ev(model) == ev(TinyCausalLM())  # the same weights, scored through the forward or directly
    assert len(calls) == 1  # only the registered model went through it
