"""Byte accounting against hand-computed cases and the real validation prefix; tokenizer training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from golf.data.shards import read_shard
from golf.data.tokenizer import BOS_ID, TokenizerError, encode_documents, load_tokenizer, train_tokenizer
from golf.kernel.data import byte_tables, piece_bytes


@pytest.fixture(scope="module")
def sp(sp_model_path):
    return load_tokenizer(sp_model_path, 1024)


def test_lut_tables_for_special_byte_and_padding_ids(sp, sp_model_path):
    base, space, boundary = byte_tables(sp_model_path, vocab_size=1030)
    assert base.dtype == torch.int16 and base.numel() == space.numel() == boundary.numel() == 1030
    assert boundary[:4].all() and (base[:4] == 0).all()  # pad, bos, eos, unk
    assert not boundary[4:1024].any()
    assert (base[4:260] == 1).all() and not space[4:260].any()  # <0xNN>
    assert boundary[1024:].all() and (base[1024:] == 0).all()  # beyond the sp vocab
    assert sp.id_to_piece(939) == "\u2581" and base[939] == 0 and space[939]


def test_piece_bytes_hand_computed(sp, sp_model_path):
    tables = byte_tables(sp_model_path, vocab_size=1030)
    # pieces: <s> H ell o ▁ 2 ▁wor ▁“ <0xC3> ” <s> ▁wor [1027] ▁wor
    seq = [1, 981, 465, 943, 939, 976, 458, 502, 199, 1012, 1, 458, 1027, 458]
    assert [sp.id_to_piece(i) for i in seq[1:10]] == ["H", "ell", "o", "\u2581", "2", "\u2581wor", "\u2581“", "<0xC3>", "”"]
    expected = [0, 1, 3, 1, 1, 1, 4, 4, 1, 3, 0, 3, 0, 3]  # aligned with seq: the first token is no target
    # H=1 ell=3 o=1 ▁=0+1 2=1 ▁wor=3+1 ▁“=3+1 byte=1 ”=3 <s>=0 ▁wor after <s>=3+0 pad id=0 ▁wor after it=3+0
    t = torch.tensor(seq)
    got = piece_bytes(tables, t)
    assert got.dtype == torch.int32 and got.tolist() == expected
    u16 = t.to(torch.int32).to(torch.uint16)  # shards hold uint16 ids
    assert piece_bytes(tables, u16).tolist() == expected


def test_val_prefix_totals_match_data_md(sp_model_path, val_prefix_shard):
    tokens = read_shard(val_prefix_shard, 1024).to(torch.int64)
    assert tokens.numel() - 1 == 1_040_297
    assert int(piece_bytes(byte_tables(sp_model_path, 1024), tokens).sum()) == 2_504_867


def test_lut_bytes_equal_normalized_text_bytes_per_document(sp, sp_model_path, val_prefix_shard, verify_docs_path):
    tables = byte_tables(sp_model_path, 1024)
    tokens = read_shard(val_prefix_shard).to(torch.int64).numpy()
    starts = np.flatnonzero(tokens == BOS_ID)
    docs = [tokens[a + 1 : b].tolist() for a, b in zip(starts[:-1], starts[1:])]  # complete docs only
    raw = [json.loads(line)["text"] for line in verify_docs_path.read_text().splitlines()]
    docs += [sp.encode(text) for text in raw]
    assert len(docs) == 901 + 200
    for ids in docs:
        seq = torch.tensor([BOS_ID, *ids])
        assert int(piece_bytes(tables, seq).sum()) == len(sp.decode(ids).encode("utf-8"))


def test_encode_documents_bos_per_doc_no_eos(sp):
    assert encode_documents(sp, ["Hello world", "the cat"]) == [1, 981, 465, 943, 458, 401, 1, 941, 263, 274, 271]


def test_load_tokenizer_errors(tmp_path, sp_model_path):
    with pytest.raises(TokenizerError, match="tokenizer model not found: .*missing.model"):
        load_tokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(TokenizerError, match="bad.model is not a valid SentencePiece model"):
        load_tokenizer(bad)
    with pytest.raises(TokenizerError, match="has 1024 pieces but the configured vocab_size is 2048"):
        load_tokenizer(sp_model_path, 2048)


@pytest.fixture(scope="module")
def small_tokenizer(tmp_path_factory):
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)[:30]] + ["", "   ", "Year 2024 was \x00 fine."]
    return train_tokenizer(docs, tmp_path_factory.mktemp("tok") / "t", vocab_size=400)


def test_trained_model_has_the_official_settings(small_tokenizer):
    pb2 = pytest.importorskip("sentencepiece.sentencepiece_model_pb2")
    proto = pb2.ModelProto()
    proto.ParseFromString(small_tokenizer.read_bytes())
    t, n = proto.trainer_spec, proto.normalizer_spec
    assert t.model_type == pb2.TrainerSpec.BPE and t.vocab_size == 400
    assert t.byte_fallback and t.split_digits and not t.hard_vocab_limit
    assert abs(t.character_coverage - 0.999) < 1e-6
    assert (t.pad_id, t.bos_id, t.eos_id, t.unk_id) == (0, 1, 2, 3)
    assert n.name == "nmt_nfkc" and not n.add_dummy_prefix and n.remove_extra_whitespaces
    assert small_tokenizer.with_suffix(".vocab").is_file()


def test_trained_model_behaves_like_the_official_one(small_tokenizer):
    sp = load_tokenizer(small_tokenizer, 400)
    assert [sp.id_to_piece(i) for i in range(5)] == ["<pad>", "<s>", "</s>", "<unk>", "<0x00>"]
    assert all(sp.is_byte(i) for i in range(4, 260))
    pieces = sp.encode("2024\tis\n\nhere", out_type=str)
    assert pieces[:4] == ["2", "0", "2", "4"] and not pieces[0].startswith("\u2581")  # split digits, no dummy prefix
    assert sp.decode(sp.encode("a\t b\n\nc")) == "a b c"  # nmt_nfkc whitespace folding
    assert sp.encode("\u6f22", out_type=str) == ["<0xE6>", "<0xBC>", "<0xA2>"]  # byte fallback


def test_training_reports_coverage_problem(tmp_path):
    rng = np.random.default_rng(0)
    docs = ["".join(chr(c) for c in rng.integers(0x4E00, 0x9FFF, 300)) for _ in range(40)]
    with pytest.raises(TokenizerError, match="required_chars.*lower character_coverage \\(now 0.999\\)"):
        train_tokenizer(docs, tmp_path / "cjk", vocab_size=400)
