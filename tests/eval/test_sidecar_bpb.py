"""val_bpb on CaseOps data (data=demo_caseops): every evaluator divides by the byte sidecar's original bytes.

The reference is computed here by hand, target by target: its nll given the context the evaluator defines,
summed in float64, over ln 2 times the sum of the sidecar entries of the scored targets read straight from
the sidecar files (spec frontier-1855 §2.4: val_bpb = Σ nll / (ln 2 · Σ sidecar[t])).
"""

from __future__ import annotations

import math

import pytest
import torch

from golf.config.validate import load_config
from golf.data.paths import prepare_data
from golf.data.shards import list_shards, read_shard
from golf.dist import DistInfo
from golf.eval import EvalConfig
from golf.kernel.data import byte_tables, load_validation_tokens, piece_bytes, validation_bytes
from golf.kernel.evaluate import evaluate_sliding, evaluate_standard
from tests.eval.test_windows import TinyCausalLM, context_start
from tests.eval.ttt_helpers import evaluator, ttt_config
from tests.helpers import compose_config

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
N, W, S = 320, 32, 8  # scored targets, window, stride


@pytest.fixture(scope="module")
def caseops():
    """The demo_caseops validation stream's first N targets, its evaluator bytes, and the sidecar as written."""
    cfg = load_config(compose_config(["data=demo_caseops"]))
    paths = prepare_data(cfg.data)
    tokens = load_validation_tokens(paths.val_pattern, 1)[:N + 1].to(torch.int64)
    nbytes = validation_bytes(cfg.data, paths, tokens, cfg.arch.vocab_size)
    sidecar = torch.cat([read_shard(f) for f in list_shards(paths.val_bytes_pattern)]).to(torch.int64)[:N + 1]
    return cfg, paths, tokens, nbytes, sidecar


def hand_bpb(model, tokens, sidecar, context) -> tuple[float, float, int]:
    """(val_loss, val_bpb, bytes): target j predicted from ``tokens[context(j):j]``."""
    nll = 0.0
    with torch.no_grad():
        for j in range(1, N + 1):
            logits = model(tokens[context(j):j][None])[0, -1].double()
            nll += float(torch.logsumexp(logits, 0) - logits[tokens[j]])
    total = int(sidecar[1:N + 1].sum())
    return nll / N, nll / (math.log(2) * total), total


def test_the_evaluator_bytes_are_the_sidecars_not_the_piece_tables(caseops):
    cfg, paths, tokens, nbytes, sidecar = caseops
    assert cfg.data.text_transform == "caseops" and nbytes.dtype == torch.int32
    assert nbytes.tolist() == sidecar.tolist()
    operators = (tokens >= 4) & (tokens <= 7)
    assert operators[1:].any() and (nbytes[operators] == 0).all()  # scored, worth 0 bytes
    assert (nbytes[tokens == 1] == 0).all()  # BOS
    # the piece tables would credit the operators' surfaces (3 UTF-8 bytes each): more bytes, a lower bpb
    tables = piece_bytes(byte_tables(paths.tokenizer_path, cfg.arch.vocab_size), tokens)
    assert int(tables[1:].sum()) > int(nbytes[1:].sum())


def test_standard_bpb_is_hand_computed_over_sidecar_bytes(caseops):
    _, _, tokens, nbytes, sidecar = caseops
    model = TinyCausalLM().eval()
    res = evaluate_standard(model, tokens, nbytes, seq_len=W, batch_tokens=3 * W, dist=CPU)
    loss, bpb, total = hand_bpb(model, tokens, sidecar, lambda j: (j - 1) // W * W)
    assert (res.val_tokens, res.val_bytes) == (N, total)
    assert res.val_loss == pytest.approx(loss, rel=1e-6) and res.val_bpb == pytest.approx(bpb, rel=1e-6)


def test_sliding_bpb_is_hand_computed_over_sidecar_bytes(caseops):
    _, _, tokens, nbytes, sidecar = caseops
    model = TinyCausalLM().eval()
    res = evaluate_sliding(model, tokens, nbytes, seq_len=W, stride=S, batch_windows=3, dist=CPU)
    loss, bpb, total = hand_bpb(model, tokens, sidecar, lambda j: context_start(j, N, W, S))
    assert (res.val_tokens, res.val_bytes) == (N, total)
    assert res.val_loss == pytest.approx(loss, rel=1e-6) and res.val_bpb == pytest.approx(bpb, rel=1e-6)


def test_ttt_bpb_is_over_sidecar_bytes(caseops):
    """With lr 0, score-first TTT scores exactly the sliding windows: the hand value; with a real lr the
    score changes, the bytes (the same scored targets) do not."""
    _, _, tokens, nbytes, sidecar = caseops
    loss, bpb, total = hand_bpb(TinyCausalLM().eval(), tokens, sidecar, lambda j: context_start(j, N, W, S))
    frozen = evaluator(ttt_config(seq_len=W, stride=S, lr=0.0), tokens, nbytes)(TinyCausalLM())
    assert (frozen.val_tokens, frozen.val_bytes) == (N, total) and frozen.extra["ttt_steps"] > 0
    assert frozen.val_loss == pytest.approx(loss, rel=1e-6) and frozen.val_bpb == pytest.approx(bpb, rel=1e-6)
    adapted = evaluator(ttt_config(seq_len=W, stride=S, lr=0.5), tokens, nbytes)(TinyCausalLM())
    assert (adapted.val_tokens, adapted.val_bytes) == (N, total) and adapted.val_bpb != frozen.val_bpb
    assert adapted.val_bpb == pytest.approx(adapted.val_loss * N / (math.log(2) * total), rel=1e-12)


def test_max_tokens_cuts_the_bytes_with_the_tokens(caseops):
    from golf.kernel.evaluator import build_evaluator

    _, _, tokens, nbytes, sidecar = caseops
    cfg = EvalConfig(kind="sliding", seq_len=W, stride=S, max_tokens=100)
    res = build_evaluator(cfg, tokens=tokens, nbytes=nbytes, seq_len=W, dist=CPU)(
        torch.nn.Module(), forward=lambda x: torch.zeros(*x.shape, 1024))
    assert (res.val_tokens, res.val_bytes) == (100, int(sidecar[1:101].sum()))
    assert res.val_bpb == pytest.approx(100 * math.log2(1024) / int(sidecar[1:101].sum()), rel=1e-7)


def test_uniform_model_on_the_whole_caseops_val_split(caseops):
    """The whole demo_caseops validation split: a uniform predictor scores log2(V)·targets / Σ sidecar."""
    cfg, paths, _, _, _ = caseops
    tokens = load_validation_tokens(paths.val_pattern, 1)
    nbytes = validation_bytes(cfg.data, paths, tokens, 1024)
    sidecar = torch.cat([read_shard(f) for f in list_shards(paths.val_bytes_pattern)]).to(torch.int64)
    res = evaluate_standard(lambda x: torch.zeros(*x.shape, 1024), tokens, nbytes, seq_len=1, batch_tokens=1 << 16,
                            dist=CPU)
    n = len(tokens) - 1
    assert (res.val_tokens, res.val_bytes) == (n, int(sidecar[1:].sum()))
    assert res.val_bpb == pytest.approx(10.0 * n / int(sidecar[1:].sum()), rel=1e-7)
