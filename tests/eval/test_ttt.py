"""Score-first TTT: the plan matches the record, lr=0 equals sliding, score-before-update, LoRA, no drift."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from golf.config.errors import ConfigError
from golf.dist import DistInfo
from golf.eval import EvalConfig, TTTConfig, ttt_frozen_prefixes, validate_eval
from golf.kernel import ttt
from golf.kernel.evaluate import evaluate_sliding
from golf.kernel.ttt import ScoreLedger, chunk_lr, plan_chunks, prepare_adaptation
from tests.eval.test_windows import TinyCausalLM
from tests.eval.ttt_helpers import EventLog, check_score_first, evaluator, ttt_config

CPU = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def stream(val_prefix_shard, sp_model_path):
    from golf.data import read_shard
    from golf.kernel.data import byte_tables, piece_bytes

    tokens = read_shard(val_prefix_shard)[:301].to(torch.int64)
    return tokens, piece_bytes(byte_tables(sp_model_path, 1024), tokens)


def test_plan_of_the_record_matches_spec_6_4():
    """40,540,160 targets, C=32768, W=2048, S=64: 1238 chunks holding 481 / 512 ... / 96 windows."""
    chunks = plan_chunks(40_540_160, 2048, 64, 32768, 2048)  # (windows, scored span, trained span)
    assert len(chunks) == 1238
    sizes = [len(windows) for windows, _, _ in chunks]
    assert sizes[0] == 481 and set(sizes[1:-1]) == {512} and sizes[-1] == 96
    assert sum(sizes) == 633_409
    assert all((train[1] - train[0]) // 2048 == 16 for _, _, train in chunks[:-1])  # 16 sequences per chunk
    assert chunks[-1][2] is None  # the last chunk (6,144 tokens) is scored only
    assert chunks[5][2] == (5 * 32768, 6 * 32768) and chunks[5][1] == (5 * 32768, 6 * 32768)
    assert 1237 * 3 == sum(3 for _, _, train in chunks if train)  # 3,711 SGD steps


def test_cosine_lr_over_chunks_is_the_records():
    cfg = TTTConfig()
    assert chunk_lr(cfg, 0, 1238) == 0.005
    assert chunk_lr(cfg, 1236, 1238) == pytest.approx(0.005 * 0.5 * (1 + math.cos(math.pi * 1236 / 1237)))
    assert chunk_lr(cfg, 1236, 1238) == pytest.approx(8.06e-9, rel=1e-2)  # "≈8e−9 at chunk 1236"
    assert chunk_lr(cfg, 1237, 1238) == pytest.approx(0.0, abs=1e-20)


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_lr_zero_ttt_equals_sliding_exactly(stream, optimizer):
    tokens, nbytes = stream
    model = TinyCausalLM()
    # one window per forward: the same forwards and the same float64 additions as the sliding pass
    cfg = ttt_config(batch_windows=1, lr=0.0, optimizer=optimizer)
    ttt = evaluator(cfg, tokens, nbytes)(model)
    ref = evaluate_sliding(model.eval(), tokens, nbytes, seq_len=32, stride=8, batch_windows=1, dist=CPU)
    assert ttt.val_loss == ref.val_loss and ttt.val_bpb == ref.val_bpb
    assert (ttt.val_tokens, ttt.val_bytes) == (ref.val_tokens, ref.val_bytes) == (300, ref.val_bytes)
    assert ttt.extra["ttt_steps"] > 0  # the updates happened, with lr 0


def test_ttt_with_lr_changes_the_score_but_never_the_callers_weights(stream):
    tokens, nbytes = stream
    model = TinyCausalLM().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    result = evaluator(ttt_config(lr=0.5, sliding_first=True), tokens, nbytes)(model)
    assert result.val_bpb != result.extra["sliding_val_bpb"]
    assert result.extra["ttt_gain_bpb"] == pytest.approx(result.val_bpb - result.extra["sliding_val_bpb"])
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)  # bit-identical
    assert {n: p.requires_grad for n, p in model.named_parameters()} == grads and model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("seq_len,stride,chunk,train_len,n", [
    (32, 8, 64, 16, 300),   # stride divides the chunk; tail window
    (32, 6, 40, 16, 300),   # windows cut by chunk boundaries (6 does not divide 40)
    (32, 24, 20, 8, 299),   # stride > chunk: chunks without windows of their own
    (16, 5, 37, 37, 200),   # training sequence = the chunk; odd sizes everywhere
])
def test_events_prove_score_before_update_and_once_only(stream, seq_len, stride, chunk, train_len, n):
    tokens, nbytes = stream
    log = EventLog()
    cfg = EvalConfig(name="t", kind="ttt", seq_len=seq_len, stride=stride, batch_windows=3,
                     ttt=TTTConfig(chunk_tokens=chunk, epochs=1, lr=0.01, seq_len=train_len, batch_seqs=2,
                                   sliding_first=False))
    evaluator(cfg, tokens[: n + 1], nbytes, on_event=log)(TinyCausalLM())
    check_score_first(log.events, n, chunk)
    assert any(k == "train" for k, *_ in log.events)
    cut = [e for e in log.events if e[0] == "score" and e[2] // chunk != (e[3] - 1) // chunk]
    if stride % chunk and chunk % stride:
        assert cut, "this case must have a window cut by a chunk boundary"


def test_ledger_refuses_training_before_scoring_and_double_scoring():
    ledger = ScoreLedger(10, torch.device("cpu"))
    ledger.scored(0, 4, [(0, 4)])
    ledger.trained(0, 4)
    with pytest.raises(AssertionError, match="training on a target before it was scored"):
        ledger.trained(2, 6)
    with pytest.raises(AssertionError, match="a target was scored twice"):
        ledger.scored(3, 6, [(3, 6)])
    ledger = ScoreLedger(4, torch.device("cpu"))
    ledger.scored(0, 3, [(0, 3)])
    with pytest.raises(AssertionError, match="a target was not scored exactly once"):
        ledger.finish()


def tiny_gpt():
    from golf.config.validate import load_config
    from golf.model import build_model
    from tests.helpers import TINY, compose_config

    torch.manual_seed(0)
    model = build_model(load_config(compose_config(TINY)).arch)  # 2 layers, d=32, 2 heads of 16, 1 KV head
    with torch.no_grad():  # away from the zero-initialized outputs, so every projection gets gradients
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_lora_adds_exactly_the_adapters_and_leaves_the_base_untouched(stream, monkeypatch):
    tokens, nbytes = stream
    base = tiny_gpt()
    cfg = ttt_config(lr=0.5, adapt="lora", lora_rank=3, lora_targets=["q", "v"])
    copy_ = copy.deepcopy(base)
    params = prepare_adaptation(copy_, cfg.ttt)
    # per layer: q 32->32 adds 3·(32+32) = 192, v 32->16 adds 3·(32+16) = 144; two layers
    assert sum(p.numel() for p in params) == 2 * (192 + 144)
    assert sum(p.numel() for p in copy_.parameters()) == sum(p.numel() for p in base.parameters()) + 672
    assert [n for n, p in copy_.named_parameters() if p.requires_grad] == [
        f"blocks.{i}.attn.{m}.lora.{ab}" for i in (0, 1) for m in ("c_q", "c_v") for ab in "AB"]
    with torch.no_grad():  # B = 0: the adapted model starts equal to the base one
        assert torch.equal(copy_(tokens[None, :32]), base(tokens[None, :32]))

    adapted = []  # the evaluator's private copy, as handed to prepare_adaptation
    real = ttt.prepare_adaptation
    monkeypatch.setattr(ttt, "prepare_adaptation", lambda model, *a: adapted.append(model) or real(model, *a))
    result = evaluator(cfg, tokens, nbytes)(base)
    (adapted,) = adapted
    base_state = base.state_dict()
    for name, value in adapted.state_dict().items():
        if ".lora." not in name:
            assert torch.equal(value, base_state[name]), name  # base weights untouched
    assert adapted.blocks[0].attn.c_q.lora.B.abs().sum() > 0  # the adapters did train
    plain = evaluate_sliding(base.eval(), tokens, nbytes, seq_len=32, stride=8, batch_windows=4, dist=CPU)
    assert result.val_bpb != plain.val_bpb


def test_freeze_layers_table_and_bad_lora_targets():
    from golf.config.validate import load_config
    from tests.helpers import TINY, compose_config

    class Blocks(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))
            self.head = torch.nn.Linear(4, 4)

    m = Blocks()
    frozen = ttt_frozen_prefixes(EvalConfig(kind="ttt", stride=8, ttt=TTTConfig(freeze_layers="first:2")), 3)
    assert frozen == ("blocks.0.", "blocks.1.")
    assert ttt_frozen_prefixes(EvalConfig(kind="ttt", stride=8, ttt=TTTConfig()), 3) == ()
    trained = prepare_adaptation(m, TTTConfig(), frozen)
    assert [n for n, p in m.named_parameters() if p.requires_grad] == ["blocks.2.weight", "blocks.2.bias",
                                                                         "head.weight", "head.bias"]
    assert len(trained) == 4
    with pytest.raises(ConfigError, match=r"eval\.ttt\.freeze_layers='first:4'"):  # a 2-layer model
        load_config(compose_config([*TINY, "eval=ttt", "eval.ttt.freeze_layers=first:4"]))
    with pytest.raises(ConfigError, match=r"eval\.ttt\.lora_targets='head'"):  # a tied head has no lm_head
        load_config(compose_config([*TINY, "eval=ttt", "eval.ttt.adapt=lora", "eval.ttt.lora_targets=[q,head]"]))


@pytest.mark.parametrize("change,key", [
    (dict(ttt=None), "eval.ttt"),
    (dict(stride=None), "eval.stride"),
    (dict(ttt=TTTConfig(chunk_tokens=0)), "eval.ttt.chunk_tokens"),
    (dict(ttt=TTTConfig(optimizer="lion")), "eval.ttt.optimizer"),
    (dict(ttt=TTTConfig(adapt="lora", lora_targets=["qq"])), "eval.ttt.lora_targets"),
    (dict(ttt=TTTConfig(grad_clip=0.0)), "eval.ttt.grad_clip"),
    (dict(ttt=TTTConfig(momentum=1.0)), "eval.ttt.momentum"),
    (dict(ttt=TTTConfig(seq_len=4096, chunk_tokens=2048)), "eval.ttt.chunk_tokens"),
    (dict(ttt=TTTConfig(chunk_tokens=32)), "eval.ttt.chunk_tokens"),  # shorter than the 64-token window
])
def test_bad_ttt_settings_are_one_named_error(change, key):
    cfg = EvalConfig(name="t", kind="ttt", seq_len=64, stride=16, ttt=TTTConfig())
    for k, v in change.items():
        setattr(cfg, k, v)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + "="):
        validate_eval(cfg, window=64)
    with pytest.raises(ConfigError, match=r"eval\.ttt="):
        validate_eval(EvalConfig(kind="sliding", stride=8, ttt=TTTConfig()))


def test_eval_presets_are_the_records_settings():
    from golf.config.validate import load_config
    from tests.helpers import TINY, compose_config

    pr = load_config(compose_config(["eval=pr1493"])).eval
    assert (pr.kind, pr.seq_len, pr.stride, pr.batch_windows) == ("ttt", 2048, 64, 32)
    t = pr.ttt
    assert (t.chunk_tokens, t.epochs, t.lr, t.schedule, t.optimizer, t.momentum, t.weight_decay, t.grad_clip,
            t.adapt, t.freeze_layers, t.seq_len) == (32768, 3, 0.005, "cosine", "sgd", 0.9, 0.0, 1.0, "all", "none", None)
    assert pr.ttt.sliding_first  # the record's quantized_sliding_window, then its TTT score
    assert load_config(compose_config(["experiment=pr1493"])).eval == load_config(compose_config(["eval=pr1493"])).eval
    generic = load_config(compose_config([*TINY, "eval=ttt"])).eval
    assert generic.kind == "ttt" and generic.seq_len is None and generic.ttt == TTTConfig()  # the defaults
    with pytest.raises(ConfigError, match=r"eval\.ttt\.chunk_tokens="):  # 64-token window, 32-token chunks
        load_config(compose_config([*TINY, "eval=ttt", "eval.ttt.chunk_tokens=32"]))
