"""Document-aware attention (arch.attention.document; frontier-1855 §2.6): segments by hand, the record's
bucket-padded boundaries, exact attention against a brute force, and what a token's output depends on."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.kernel.segments import bound_starts, cu_seqlens, document_attention, segment_starts
from golf.model import build_model
from tests.helpers import TINY, compose_config

ROW = [5, 6, 1, 7, 8, 9, 10, 11, 1, 12]  # BOS at 2 and 8; no BOS at 0


def test_segments_by_hand():
    d = (1, 3)  # BOS id, longest segment
    # [0, 2): the row's start (mid-document); [2, 8) cut into [2, 5) and [5, 8); [8, 10)
    assert segment_starts(torch.tensor([ROW]), *d).tolist() == [[0, 0, 2, 2, 2, 5, 5, 5, 8, 8]]
    assert cu_seqlens(torch.tensor(ROW), *d, bucket=1).tolist() == [0, 2, 5, 8, 10]
    assert cu_seqlens(torch.tensor(ROW), *d, bucket=4).tolist() == [0, 2, 5, 8, 10, 10, 10, 10]  # padded with L
    assert cu_seqlens(torch.tensor(ROW), *d).tolist() == [0, 2, 5, 8] + [10] * 60  # 64 entries
    assert cu_seqlens(torch.tensor([1, 4, 4, 1]), *d, bucket=1).tolist() == [0, 3, 4]  # a row opening on BOS
    cu = cu_seqlens(torch.tensor(ROW), *d, bucket=4)
    assert cu.dtype == torch.int32 and bound_starts(cu, 10).tolist() == [0, 0, 2, 2, 2, 5, 5, 5, 8, 8]


@pytest.mark.parametrize("max_len", [1, 4, 7, 2048])
def test_record_boundaries_padded_or_not_give_the_same_segments(max_len):
    d = (1, max_len)
    g = torch.Generator().manual_seed(max_len)
    ids = torch.randint(0, 6, (4, 61), generator=g)  # BOS (1) about one token in six, sometimes at 0
    starts = segment_starts(ids, *d)
    for row, s in zip(ids, starts):
        for bucket in (1, 8, 64):
            cu = cu_seqlens(row, *d, bucket)
            assert len(cu) % bucket == 0
            assert torch.equal(bound_starts(cu, len(row)), s)
    assert ((starts <= torch.arange(61)) & (torch.arange(61) - starts < max_len)).all()


def brute_force(q, k, v, starts):
    """Query by query: softmax over the keys of its own segment up to itself (fp64)."""
    B, T, H, D = q.shape
    group = H // k.size(2)
    out = torch.zeros(B, T, H, D, dtype=torch.float64)
    for b in range(B):
        for i in range(T):
            j = slice(int(starts[b, i]), i + 1)
            for h in range(H):
                w = torch.softmax(k[b, j, h // group].double() @ q[b, i, h].double() / D ** 0.5, 0)
                out[b, i, h] = w @ v[b, j, h // group].double()
    return out


@pytest.mark.parametrize("T,max_len,heads,kv", [(12, 16, 2, 2), (16, 4, 4, 2), (23, 5, 4, 1), (9, 3, 2, 1)])
def test_attention_equals_brute_force(T, max_len, heads, kv):
    g = torch.Generator().manual_seed(T)
    ids = torch.randint(0, 5, (2, T), generator=g)
    q, k, v = (torch.randn(2, T, h, 8, generator=g) for h in (heads, kv, kv))
    starts = segment_starts(ids, 1, max_len)
    y = document_attention(q, k, v, starts, max_len)
    assert y.shape == q.shape
    torch.testing.assert_close(y.double(), brute_force(q, k, v, starts), rtol=1e-5, atol=1e-6)


def test_one_segment_is_plain_causal_attention():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 20, h, 8, generator=g) for h in (4, 2, 2))
    ids = torch.full((2, 20), 7)
    y = document_attention(q, k, v, segment_starts(ids, 1, 32), 32)
    ref = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True,
                                         enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(y, ref)


def test_bucket_padding_gives_the_same_outputs_as_unpadded():
    d = (1, 6)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 5, (1, 40), generator=g)
    q, k, v = (torch.randn(1, 40, h, 8, generator=g) for h in (4, 2, 2))
    outs = [document_attention(q, k, v, bound_starts(cu_seqlens(ids[0], *d, bucket), 40)[None], 6)
            for bucket in (1, 16, 64)]
    assert all(torch.equal(outs[0], o) for o in outs[1:])
    assert torch.equal(outs[0], document_attention(q, k, v, segment_starts(ids, *d), 6))


def tiny_model(max_len: int):
    cfg = load_config(compose_config([*TINY, f"+arch.attention.document={{max_len: {max_len}}}"]))
    torch.manual_seed(0)
    model = build_model(cfg.arch).eval()
    with torch.no_grad():  # away from the zero-initialized projections, so attention carries signal
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_a_tokens_output_ignores_everything_before_its_segment_start():
    """BOS at 10; the piece cut at 10 + 8 = 18; the row's own start at 0. Changing tokens before a
    segment start leaves every output from that start on bit for bit; changing one inside changes the
    outputs after it."""
    model = tiny_model(max_len=8)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(8, 1000, (1, 30), generator=g)
    ids[0, 10] = 1
    with torch.no_grad():
        base = model(ids)
        before_doc = ids.clone()
        before_doc[0, 3:10] = torch.randint(8, 1000, (7,), generator=g)
        assert torch.equal(model(before_doc)[0, 10:], base[0, 10:])
        assert not torch.allclose(model(before_doc)[0, 4:10], base[0, 4:10])
        before_piece = ids.clone()
        before_piece[0, 12:18] = torch.randint(8, 1000, (6,), generator=g)  # same document, earlier piece
        out = model(before_piece)
        assert torch.equal(out[0, 18:], base[0, 18:])
        inside = ids.clone()
        inside[0, 20] = 7
        out = model(inside)
        assert torch.equal(out[0, :20], base[0, :20]) and not torch.allclose(out[0, 21:26], base[0, 21:26])
        plain = load_config(compose_config(TINY)).arch  # without the mask the earlier document leaks in
        torch.manual_seed(0)
        unmasked = build_model(plain).eval()
        unmasked.load_state_dict(model.state_dict())
        assert not torch.allclose(unmasked(before_doc)[0, 10:], unmasked(ids)[0, 10:])


def test_config_checks():
    with pytest.raises(ConfigError, match="arch.attention.document.max_len=0"):
        load_config(compose_config([*TINY, "+arch.attention.document={max_len: 0}"]))
    # one BOS setting: data.bos_id, which the arch follows; an arch that disagrees is named
    with pytest.raises(ConfigError, match=r"data.bos_id=5000: must be a token id in \[0, vocab_size"):
        load_config(compose_config([*TINY, "data.bos_id=5000"]))
    with pytest.raises(ConfigError, match="arch.bos_id=2: differs from data.bos_id=1"):
        load_config(compose_config([*TINY, "arch.bos_id=2"]))
    cfg = load_config(compose_config([*TINY, "data.bos_id=3", "+arch.attention.document={max_len: 64}"]))
    assert cfg.arch.bos_id == 3


@pytest.mark.slow
def test_compiled_model_matches_eager_with_static_shapes():
    """The segment starts and the block mask are computed inside the graph with static shapes: one
    fullgraph compile serves every document layout (no recompile, no graph break)."""
    model = tiny_model(max_len=8).train()
    compiled = torch.compile(model, fullgraph=True, dynamic=False)
    g = torch.Generator().manual_seed(3)
    for n, bos in enumerate(([0, 5, 20], [13], [])):
        ids = torch.randint(8, 1000, (2, 32), generator=g)
        ids[:, bos] = 1
        y = torch.roll(ids, -1, 1)
        with torch._dynamo.config.patch(error_on_recompile=n > 0):  # other documents, the same graph
            torch.testing.assert_close(compiled(ids, y), model(ids, y), rtol=1e-5, atol=1e-5)
