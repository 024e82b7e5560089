"""SentencePiece on CaseOps text: the record's tokenizer on the shared validation documents (its figures in
spec frontier-1855.md §9b), hand-checked byte counts, and a demo-sized CaseOps tokenizer."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from golf.data import caseops
from golf.data.caseops_tokenizer import check_caseops_tokenizer, encode_caseops, train_caseops_tokenizer
from golf.data.tokenizer import BOS_ID, TokenizerError, load_tokenizer, train_tokenizer


def _docs(path):
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _split_docs(tokens, counts):
    starts = np.flatnonzero(tokens == BOS_ID).tolist() + [tokens.size]
    return [(tokens[a:b], counts[a:b]) for a, b in zip(starts[:-1], starts[1:])]


@pytest.fixture(scope="module")
def caseops_sp(caseops_sp_path):
    return load_tokenizer(caseops_sp_path, 8192)


def test_record_tokenizer_on_the_validation_prefix(caseops_sp, val_prefix_docs_path):
    """Every document's sidecar sum is its UTF-8 length, and the totals are the spec's."""
    docs = _docs(val_prefix_docs_path)
    tokens, counts = encode_caseops(caseops_sp, docs, with_bytes=True)
    assert len(docs) == 901 and tokens.size == counts.size == 808_617
    assert int(counts.sum()) == sum(len(d.encode("utf-8")) for d in docs) == 2_504_310
    assert int(((tokens >= 4) & (tokens <= 7)).sum()) == 81_398  # operator tokens
    per_doc = _split_docs(tokens, counts)
    for doc, (ids, nbytes) in zip(docs, per_doc, strict=True):
        assert nbytes[0] == 0 and int(nbytes.sum()) == len(doc.encode("utf-8"))
        # these documents are already NFKC-normalized, so the pieces decode back to the text exactly
        assert caseops.decode(caseops_sp.decode(ids[1:].tolist())) == doc
    # the token stream does not depend on whether the byte counts are asked for
    first_50 = sum(ids.size for ids, _ in per_doc[:50])
    assert np.array_equal(encode_caseops(caseops_sp, docs[:50], with_bytes=False)[0], tokens[:first_50])


def test_raw_documents_count_what_the_tokenizer_keeps(caseops_sp, verify_docs_path):
    """Raw FineWeb text (newlines, runs of spaces): each sum is the UTF-8 length of the stripped text."""
    docs = _docs(verify_docs_path)
    tokens, counts = encode_caseops(caseops_sp, docs, with_bytes=True)
    for doc, (_, nbytes) in zip(docs, _split_docs(tokens, counts), strict=True):
        assert int(nbytes.sum()) == len(doc.strip().encode("utf-8"))
    leading = "  \n Tab\tSEPARATED  text \u3000"
    _, counts = encode_caseops(caseops_sp, [leading], with_bytes=True)
    assert int(counts.sum()) == len(leading.strip().encode("utf-8"))


def test_hand_counted_tokens(caseops_sp):
    # "中" is three byte pieces, the character's bytes on the one whose surface carries it; full-width
    # "Ａ" becomes "A" under NFKC (one byte piece) but stands for its 3 original bytes
    for text, expected in [("中", [0, 0, 0, 3]), ("Ａ", [0, 3])]:
        assert encode_caseops(caseops_sp, [text], with_bytes=True)[1].tolist() == expected
    # a literal operator character: ESC (0 bytes) then the operator piece, which stands for 3 bytes
    tokens, counts = encode_caseops(caseops_sp, [f"a{caseops.TITLE}"], with_bytes=True)
    assert tokens.tolist()[2:] == [7, 4] and counts.tolist() == [0, 1, 0, 3]
    tokens, counts = encode_caseops(caseops_sp, ["The NASA"], with_bytes=True)
    assert tokens.tolist()[:2] == [BOS_ID, 4] and 5 in tokens.tolist()  # TITLE ... ALLCAPS
    assert int(counts.sum()) == 8 and counts[tokens == 4].tolist() == [0] and counts[tokens == 5].tolist() == [0]


def test_plain_tokenizers_are_not_caseops_tokenizers(tmp_path, sp_model_path):
    with pytest.raises(TokenizerError, match=r"id 4 must be the reserved operator U\+E001"):
        check_caseops_tokenizer(load_tokenizer(sp_model_path), sp_model_path)


def test_trained_caseops_tokenizer_reserves_the_operators(tmp_path):
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)[:30]]
    model = train_caseops_tokenizer(docs, tmp_path / "co", 400)
    sp = load_tokenizer(model, 400)
    check_caseops_tokenizer(sp, model)
    assert sp.is_byte(8) and not sp.is_byte(7)  # byte pieces follow the four operators
    assert not any(re.search("[A-Z]", sp.id_to_piece(i)) for i in range(264, 400))  # no ASCII capital learned
    plain = train_tokenizer(docs, tmp_path / "plain", 400)
    with pytest.raises(TokenizerError, match="is not a CaseOps tokenizer"):
        check_caseops_tokenizer(load_tokenizer(plain), plain)
    _, counts = encode_caseops(sp, docs, with_bytes=True)
    assert int(counts.sum()) == sum(len(d.strip().encode("utf-8")) for d in docs)
