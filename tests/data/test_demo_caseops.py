"""The embedded demo corpus as CaseOps data (data=demo_caseops): transform, operator tokenizer, sidecar."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from golf.config.validate import load_config
from golf.data.caseops_tokenizer import check_caseops_tokenizer, encode_caseops
from golf.data.config import DemoConfig
from golf.data.corpus import read_documents
from golf.data.demo import build_demo, demo_key, main
from golf.data.paths import prepare_data
from golf.data.shards import list_shards, read_shard
from golf.data.sidecar import load_validation_bytes
from golf.data.tokenizer import load_tokenizer
from golf.kernel.data import load_validation_tokens
from tests.helpers import compose_config

VOCAB, VAL_DOCS = 400, 15


def _cat(pattern):
    return torch.cat([read_shard(f) for f in list_shards(pattern)]).to(torch.int64).numpy()


@pytest.fixture(scope="module")
def built(tmp_path_factory, python_docs_jsonl):
    demo = DemoConfig(cache_dir=str(tmp_path_factory.mktemp("cache")), sources=[str(python_docs_jsonl)],
                      val_docs=VAL_DOCS, shard_tokens=30_000)
    return demo, build_demo(demo, VOCAB, "caseops")


def test_caseops_build_holds_transformed_documents_and_their_bytes(built, python_docs_jsonl):
    demo, build = built
    sp = load_tokenizer(build.tokenizer_path, VOCAB)
    check_caseops_tokenizer(sp, build.tokenizer_path)
    docs = read_documents(python_docs_jsonl)
    random.Random(demo.seed).shuffle(docs)
    val_tokens, val_bytes = encode_caseops(sp, docs[:VAL_DOCS], with_bytes=True)
    train_tokens, _ = encode_caseops(sp, docs[VAL_DOCS:], with_bytes=False)
    assert np.array_equal(_cat(build.val_pattern), val_tokens)
    assert np.array_equal(_cat(build.val_bytes_pattern), val_bytes)
    assert np.array_equal(_cat(build.train_pattern), train_tokens)
    assert len(list_shards(build.train_pattern)) > 1  # cut into shard_tokens shards like the other splits
    assert build.stats["bytes_val"] == int(val_bytes.sum()) == sum(len(d.strip().encode()) for d in docs[:VAL_DOCS])
    assert "_caseops" in build.tokenizer_path.name and "[0-9]" in build.val_pattern


def test_cache_key_tells_caseops_from_raw_text(built, capsys):
    demo, build = built
    assert demo_key(demo, VOCAB) == demo_key(demo, VOCAB, None) != demo_key(demo, VOCAB, "caseops")
    assert build.directory.name == demo_key(demo, VOCAB, "caseops")
    main(["--out", demo.cache_dir, "--source", demo.sources[0], "--vocab-size", str(VOCAB), "--val-docs",
          str(VAL_DOCS), "--shard-tokens", "30000", "--caseops"])
    assert f"val_bytes_pattern: {build.val_bytes_pattern}" in capsys.readouterr().out  # found in the cache


def test_demo_caseops_option_composes_and_prepares():
    """data=demo_caseops on the default sources (the Python documentation), as a run would prepare it
    (built in the user's demo cache on first use, as the other demo options)."""
    cfg = load_config(compose_config(["data=demo_caseops"]))
    assert cfg.data.text_transform == "caseops" and cfg.arch.vocab_size == cfg.data.vocab_size == 1024
    paths = prepare_data(cfg.data)
    assert paths.text_transform == "caseops" and paths.val_bytes_pattern is not None
    val = load_validation_tokens(paths.val_pattern, 1024).to(torch.int64)
    counts = load_validation_bytes(paths.val_bytes_pattern, val)
    assert counts.shape == val.shape and int(counts[val == 1].abs().sum()) == 0
    assert int(((val >= 4) & (val <= 7)).sum()) > 0  # operator tokens are in the stream
