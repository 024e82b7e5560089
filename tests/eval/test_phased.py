"""Phased score-first LoRA TTT per document (golf.kernel.phased, PR #1855): documents, batches, the chunk
schedule, the adapters' placement and identity at reset, the global phases' training set, and the
compliance checks failing on wrong schedules."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch

import golf.kernel.phased as phased
from golf.config.validate import load_config
from golf.dist import DistInfo
from golf.eval import EvalConfig, PhasedConfig
from golf.kernel.evaluator import build_evaluator
from golf.kernel.model import build_gpt
from golf.kernel.phased import (
    DocLedger,
    DocLoRA,
    TapState,
    chunk_rows,
    doc_loss,
    find_docs,
    install_taps,
    phase_docs,
    plan_batches,
    plan_ranks,
)
from tests.helpers import compose_config

BOS = 1


def tiny_arch(**over):
    """#1855's model (looped blocks 3-5, two lanes from block 8, sparse gate, BOS smear) at width 32."""
    args = ["experiment=pr1855", "scale=cpu", "data=demo_caseops", "arch.model_dim=32", "arch.num_heads=2",
            "arch.num_kv_heads=1", "arch.vocab_size=288", "data.vocab_size=288"]
    return load_config(compose_config(args + [f"arch.{k}={v}" for k, v in over.items()])).arch


def tiny_model(seed=0, **over):
    """A tiny #1855 GPT, looped, with every weight perturbed (zero-init projections would hide blocks)."""
    torch.manual_seed(seed)
    m = build_gpt(tiny_arch(**over))
    m.set_topology(len(m.steps) - 1)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m.eval()


def stream(lens, seed=0, vocab=288):
    """Documents of ``lens`` tokens (each starting with BOS), back to back, then a final BOS."""
    g = torch.Generator().manual_seed(seed)
    parts = []
    for n in lens:
        parts += [torch.tensor([BOS]), torch.randint(2, vocab, (n - 1,), generator=g)]
    return torch.cat(parts + [torch.tensor([BOS])])


def phased_cfg(**kw) -> EvalConfig:
    settings = dict(chunk=8, window=24, batch_docs=2, lora_rank=4, lora_alpha=8.0, lr=0.01, phases=2,
                    prefix_docs=4, global_chunk_tokens=64, global_seq_len=16, global_lr=0.01)
    settings.update(kw)
    return EvalConfig(name="pr1855", kind="phased", seq_len=16, phased=PhasedConfig(**settings))


def run_eval(cfg, tokens, model, rank=0, world=1):
    dist = DistInfo(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
    return build_evaluator(cfg, tokens=tokens, nbytes=torch.ones(len(tokens), dtype=torch.int32), seq_len=16,
                           dist=dist)(model)


# ----------------------------------------------------------------------------- documents and batches


def test_documents_cover_every_target_once_including_the_final_bos_targets():
    t = torch.tensor([1, 5, 6, 1, 7, 1, 1, 8, 9, 4])  # BOS at 0, 3, 5, 6; no BOS at the end
    docs = find_docs(t, BOS)
    assert docs == [(0, 4), (3, 3), (5, 2), (6, 4)]  # each through the next BOS; the last to the end
    targets = [p for s, n in docs for p in range(s, s + n - 1)]  # position p predicts token p + 1
    assert sorted(targets) == list(range(len(t) - 1))
    assert [t[s + n - 1].item() for s, n in docs[:-1]] == [1, 1, 1]  # the next BOS is each one's last target
    # a stream that does not start at a BOS, and one that ends with one (a document without targets)
    assert find_docs(torch.tensor([5, 6, 1, 7, 1]), BOS) == [(0, 3), (2, 3)]
    assert find_docs(torch.tensor([5, 6, 7]), BOS) == [(0, 3)]


def test_batches_are_length_sorted_and_the_queue_takes_the_longest_first():
    docs = [(0, 5), (5, 9), (14, 3), (17, 9), (26, 2)]
    batches, queue = plan_batches(docs, 2)
    assert batches == [[4, 2], [0, 1], [3]]  # by length, ties in stream order
    assert queue == [1, 2, 0]  # longest document first; ties keep batch order


def test_chunk_schedule_of_two_documents_of_100_and_7_tokens_by_hand():
    lens = torch.tensor([100, 7])  # 99 and 6 targets
    c, w = 48, 64
    rows = [tuple(x.tolist() for x in chunk_rows(lens, ci, c, w)) for ci in range(3)]
    # (window start, chunk end, first scored target) per document
    assert rows[0] == ([0, 0], [48, 6], [0, 0])
    assert rows[1] == ([32, 0], [96, 6], [48, 48])  # doc 2 has no chunk 1 (masked)
    assert rows[2] == ([35, 0], [99, 6], [96, 96])
    # what one batch scores and trains, chunk by chunk, through the evaluator's own loop
    tokens = stream([99, 6])  # BOS + 98, BOS + 5, BOS: documents of 100 and 7 tokens (each through the next BOS)
    assert find_docs(tokens, BOS) == [(0, 100), (99, 7)]
    events = []

    class Ledger(DocLedger):
        def scored(self, pos):
            events.append(("score", pos.tolist()))
            super().scored(pos)

        def trained(self, pos):
            events.append(("train", pos.tolist()))
            super().trained(pos)

    m = tiny_model()
    h = TapState()
    shapes = install_taps(m, h)
    h.lora = lora = DocLoRA(shapes, 2, 4, 8.0, torch.device("cpu"))
    lora.draw(torch.Generator().manual_seed(0))
    t = PhasedConfig(chunk=c, window=w, lr=0.01)
    sums = torch.zeros(3, dtype=torch.float64)
    ledger = Ledger(len(tokens) - 1)
    out = phased.score_batch(lambda x, y: doc_loss(m, m.cfg, h, x, y), lora, t, tokens.int(),
                             torch.ones(len(tokens), dtype=torch.int32), find_docs(tokens, BOS), sums, ledger,
                             torch.device("cpu"), contextlib.nullcontext)
    assert out == (3, 2)  # 3 forwards, 2 steps: the 7-token document's only chunk is its last
    d2 = 99  # the second document starts at stream position 99
    assert events == [
        ("score", list(range(0, 48)) + list(range(d2, d2 + 6))), ("train", list(range(0, 48))),
        ("score", list(range(48, 96))), ("train", list(range(48, 96))),
        ("score", list(range(96, 99))),  # the last chunk is scored, never trained
    ]
    assert sums[1].item() == 99 + 6 and sums[2].item() == 99 + 6


# ----------------------------------------------------------------------------- adapters


def _base_ce(m, x, y):
    logits = m(x)
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), y, reduction="none")


def test_lora_at_reset_gives_exactly_the_base_models_predictions():
    m = tiny_model()
    x = torch.randint(2, 288, (3, 20))
    y = torch.randint(2, 288, (3, 20))
    base = _base_ce(m, x, y)
    c = copy.deepcopy(m)
    h = TapState()
    shapes = install_taps(c, h)
    assert shapes["q"][0] == len(m.steps[m.topology]) == 17 and shapes["head"] == (1, 32, 288)
    h.lora = lora = DocLoRA(shapes, 3, 4, 8.0, torch.device("cpu"))
    lora.draw(torch.Generator().manual_seed(0))
    assert torch.equal(doc_loss(c, c.cfg, h, x, y), base)  # B = 0: exactly the base
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):  # in bf16 too: the head capped in bf16
        assert torch.equal(doc_loss(c, c.cfg, h, x, y), _base_ce(m, x, y))
    assert h.j == 16  # one slot per block application (looped blocks 3-5 three times)
    with torch.no_grad():
        lora.B["head"][0, 1].normal_()
    moved = doc_loss(c, c.cfg, h, x, y)
    assert torch.equal(moved[0], base[0]) and torch.equal(moved[2], base[2])  # per document
    assert not torch.equal(moved[1], base[1])
    h.lora = None
    assert torch.equal(_base_ce(c, x, y), base)  # adapters off: the tapped copy is the base


@pytest.mark.parametrize("kind", ["o", "mlp"])
def test_o_and_mlp_adapters_are_bypasses_fed_by_the_normalised_block_input(kind):
    m = tiny_model()
    with torch.no_grad():  # attention (W_q/k/v/o) or MLP (W_up/W_down) output exactly zero
        for b in m.blocks:
            for w in ([b.attn.c_q, b.attn.c_k, b.attn.c_v, b.attn.proj] if kind == "o" else [b.mlp.fc, b.mlp.proj]):
                w.weight.zero_()
    x = torch.randint(2, 288, (2, 12))
    y = torch.randint(2, 288, (2, 12))
    h = TapState()
    c = copy.deepcopy(m)
    h.lora = lora = DocLoRA({kind: install_taps(c, h)[kind]}, 2, 4, 8.0, torch.device("cpu"))
    lora.draw(torch.Generator().manual_seed(0))
    base = doc_loss(c, c.cfg, h, x, y)
    with torch.no_grad():
        lora.B[kind].normal_()
    # an adapter on W_o or W_up would read a zero attention output / feed a zero W_down: no change. The
    # bypass reads the block's normalised input, so the output moves with W_o / W_up frozen.
    assert not torch.allclose(doc_loss(c, c.cfg, h, x, y), base)
    taps = [b.attn if kind == "o" else b.mlp for b in c.blocks]
    assert all(t.kind == kind and isinstance(t.base, type(getattr(m.blocks[0], "attn" if kind == "o" else "mlp")))
               for t in taps)
    # the slot's input is the module's input (the normalised, LN-scaled block input): record it
    seen = []
    taps[0].base.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    got = []
    orig = lora.delta
    lora.delta = lambda k, z, j: (got.append((k, z)) if k == kind and j == 0 else None) or orig(k, z, j)
    doc_loss(c, c.cfg, h, x, y)
    assert torch.equal([z for k, z in got][0], seen[0])


# ----------------------------------------------------------------------------- phases


def test_global_phase_trains_on_the_shortest_scored_documents():
    # 7 documents in batches of 2 by length: lengths 2..8 -> batches [[a,b],[c,d],[e,f],[g]]
    docs = [(0, 8), (8, 2), (10, 5), (15, 3), (18, 7), (25, 4), (29, 6)]
    batches, queue = plan_batches(docs, 2)
    assert batches == [[1, 3], [5, 2], [6, 4], [0]] and queue == [3, 2, 1, 0]
    # scored after the first 3 queue batches: [0], [6, 4], [5, 2] (lengths 8, 6, 7, 4, 5)
    assert phase_docs(batches, queue, 3, 3) == [5, 2, 6]  # the 3 shortest of those: 4, 5, 6 tokens
    assert phase_docs(batches, queue, 1, 1) == [0]
    t = PhasedConfig(chunk=2, window=4, batch_docs=2, phases=2, prefix_docs=5)
    cuts, bounds, owned, loads = plan_ranks(docs, batches, queue, t, 2)
    assert bounds == [2, 5] and cuts == [2, 3]  # 2 docs after 2 batches (1+2); 5 after 3 (1+2+2)
    assert [sum(o, []) for o in owned] != [] and sorted(sum(sum(owned, []), [])) == [0, 1, 2, 3]
    assert [len(o) for o in owned] == [3, 3]  # per rank: one list per segment between pauses
    for seg, (a, b) in enumerate(zip([0, 2, 3], [2, 3, 4])):  # each segment holds exactly its queue slice
        assert sorted(owned[0][seg] + owned[1][seg]) == sorted(queue[a:b])
    assert len(loads) == 3 and all(len(x) == 2 for x in loads)


def test_a_pause_that_would_follow_the_last_batch_is_dropped():
    docs = [(0, 3), (3, 3)]
    batches, queue = plan_batches(docs, 2)
    cuts, bounds, owned, _ = plan_ranks(docs, batches, queue, PhasedConfig(phases=3, prefix_docs=2500), 1)
    assert cuts == [] and bounds == [] and owned == [[[0]]]


# ----------------------------------------------------------------------------- compliance


def _tokens():
    return stream([30, 12, 25, 7, 40, 18, 9, 33], seed=1)


def test_the_evaluator_runs_and_trains(monkeypatch):
    r = run_eval(phased_cfg(), _tokens(), tiny_model())
    assert r.val_tokens == len(_tokens()) - 1 and r.extra["ttt_docs"] == 8
    assert r.extra["ttt_steps"] > 0 and r.extra["ttt_phase_steps"] > 0
    assert r.extra["ttt_phase1_docs"] == 2 and r.extra["ttt_phase2_docs"] == 4


def test_compliance_fails_when_a_phase_trains_on_documents_not_yet_scored(monkeypatch):
    def unscored(batches, queue, cut, bound):  # the documents of batches still queued
        return [i for b in queue[cut:] for i in batches[b]][:bound]

    monkeypatch.setattr(phased, "phase_docs", unscored)
    with pytest.raises(AssertionError, match="not yet scored"):
        run_eval(phased_cfg(), _tokens(), tiny_model())


def test_compliance_fails_when_chunks_overlap(monkeypatch):
    right = phased.chunk_rows

    def overlapping(lens, ci, c, w):  # each chunk also rescores the last target of the one before
        ws, ce, lo = right(lens, ci, c, w)
        return ws, ce, (lo - 1).clamp(min=0)

    monkeypatch.setattr(phased, "chunk_rows", overlapping)
    with pytest.raises(AssertionError, match="scored twice"):
        run_eval(phased_cfg(), _tokens(), tiny_model())


def test_the_ledger_refuses_training_before_scoring():
    ledger = DocLedger(10)
    ledger.scored(torch.arange(0, 4))
    ledger.trained(torch.arange(0, 4))
    with pytest.raises(AssertionError, match="before it was scored"):
        ledger.trained(torch.arange(3, 6))


def test_the_evaluated_model_is_unchanged():
    m = tiny_model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    run_eval(phased_cfg(), _tokens(), m)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(type(b.attn).__name__ == "CausalSelfAttention" for b in m.blocks)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("override,key", [
    ("eval.phased.reset=a", "eval.phased.reset"),
    ("eval.phased.window=32", "eval.phased.window"),  # shorter than a chunk of 48
    ("eval.phased.lora_targets=[q,up]", "eval.phased.lora_targets"),
    ("eval.phased.beta1=1.0", "eval.phased.beta1"),
    ("eval.phased.global_seq_len=65536", "eval.phased.global_seq_len"),
    ("eval.kind=sliding", "eval.phased"),
])
def test_bad_phased_settings_name_their_key(override, key):
    from golf.config.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config(compose_config(["data=demo", "eval=pr1855", "eval.stride=64", override]))
    assert err.value.key == key


def test_kind_phased_needs_its_settings():
    from golf.config.errors import ConfigError

    with pytest.raises(ConfigError, match="eval=pr1855"):
        load_config(compose_config(["data=demo", "eval=standard", "eval.kind=phased"]))


@pytest.mark.slow
def test_compiled_it_traces_one_graph_per_batch_size_in_the_warm_up_and_scores_the_same(monkeypatch):
    graphs = []

    def backend(gm, example_inputs):  # dynamo's graphs, run as traced (no inductor on a CPU test)
        graphs.append(gm)
        return gm.forward

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: torch._dynamo.optimize(backend, dynamic=True)(fn))
    torch._dynamo.reset()
    tokens = stream([30, 12, 25, 7, 40, 18, 9, 33, 21], seed=1)  # 9 documents: batches of 4, 4 and 1
    cfg = phased_cfg(batch_docs=4)
    dist = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    nbytes = torch.ones(len(tokens), dtype=torch.int32)
    eager = build_evaluator(cfg, tokens=tokens, nbytes=nbytes, seq_len=16, dist=dist)(tiny_model())
    seen = []
    compiled = build_evaluator(cfg, tokens=tokens, nbytes=nbytes, seq_len=16, dist=dist, compile_model=True,
                               progress=lambda kind, *a: seen.append((kind, len(graphs))))(tiny_model())
    assert compiled.val_bpb == eager.val_bpb
    assert len(graphs) == 2 and seen[0] == ("warm-up", 2)  # no graph break; nothing compiles once timed
    assert compiled.extra["ttt_warmup_s"] > 0 and eager.extra["ttt_warmup_s"] == 0
