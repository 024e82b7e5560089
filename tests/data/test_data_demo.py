"""Demo corpus builder: split, shards, tokenizer, cache, concurrent builders; prepare_data."""

from __future__ import annotations

import json
import random
import threading

import pytest
import torch

from golf.config.errors import ConfigError
from golf.data.config import DataConfig, DemoConfig
from golf.data.corpus import CorpusError, read_documents
from golf.data.demo import build_demo, demo_key, main, publish
from golf.data.paths import prepare_data
from golf.data.shards import list_shards, read_shard, write_shard
from golf.data.tokenizer import BOS_ID, encode_documents, load_tokenizer
from golf.kernel.data import load_validation_tokens

VOCAB = 512


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A .txt file of paragraphs and a .jsonl file of documents, from the text that ships with Python."""
    from pydoc_data.topics import topics

    d = tmp_path_factory.mktemp("src")
    names = sorted(topics)
    txt = d / "reference.txt"
    txt.write_text("\n\n".join(topics[k] for k in names[:25]))
    jsonl = d / "more.jsonl"
    jsonl.write_text("\n".join(json.dumps({"text": topics[k]}) for k in names[25:40]) + "\n\n")
    return [str(txt), str(jsonl)]


def _demo(cache, sources, **kw):
    return DemoConfig(cache_dir=str(cache), sources=list(sources), **{"val_docs": 20, "shard_tokens": 20_000, **kw})


@pytest.fixture(scope="module")
def built(tmp_path_factory, sources):
    demo = _demo(tmp_path_factory.mktemp("cache"), sources)
    return demo, build_demo(demo, VOCAB)


def test_txt_paragraphs_and_jsonl_lines_are_documents(tmp_path):
    txt = tmp_path / "a.txt"
    txt.write_text("first para\nstill first\n\n  \n\nsecond\n \t\nthird\n")
    assert read_documents(txt) == ["first para\nstill first", "second", "third"]
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_text('{"text": "one"}\n\n{"text": "two\\nlines"}\n')
    assert read_documents(jsonl) == ["one", "two\nlines"]


@pytest.mark.parametrize("content,match", [('{"text": 1}\n', r"b\.jsonl:1: expected an object"),
                                           ('{"text": "a"}\n{oops\n', r"b\.jsonl:2: invalid JSON")])
def test_bad_jsonl_names_file_and_line(tmp_path, content, match):
    (tmp_path / "b.jsonl").write_text(content)
    with pytest.raises(CorpusError, match=match):
        read_documents(tmp_path / "b.jsonl")


def test_split_shards_and_tokenizer(built, sources):
    demo, build = built
    sp = load_tokenizer(build.tokenizer_path, VOCAB)
    docs = [d for s in sources for d in read_documents(s)]
    random.Random(demo.seed).shuffle(docs)
    val = torch.cat([read_shard(f, VOCAB) for f in list_shards(build.val_pattern)]).to(torch.int64)
    train_files = list_shards(build.train_pattern)
    train = torch.cat([read_shard(f, VOCAB) for f in train_files]).to(torch.int64)
    assert val.tolist() == encode_documents(sp, docs[:20])  # the first val_docs documents
    assert train.tolist() == encode_documents(sp, docs[20:])
    assert int((val == BOS_ID).sum()) == 20 and int((train == BOS_ID).sum()) == len(docs) - 20
    assert len(train_files) > 1 and all(read_shard(f).numel() == 20_000 for f in train_files[:-1])
    assert build.stats["docs_total"] == len(docs) and build.stats["tokens_train"] == train.numel()


def test_cache_hit_and_key(built, sources, tmp_path):
    demo, build = built
    stamp = (build.directory / "manifest.json").stat().st_mtime_ns
    again = build_demo(demo, VOCAB)
    assert again.directory == build.directory and again.stats == build.stats
    assert (build.directory / "manifest.json").stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in build.directory.parent.iterdir()] == [build.directory.name]
    assert demo_key(_demo(demo.cache_dir, sources, seed=1), VOCAB) != build.directory.name
    assert demo_key(demo, 1024) != build.directory.name
    changed = tmp_path / "reference.txt"
    changed.write_text(open(sources[0]).read() + "\n\nOne more paragraph.")
    assert demo_key(_demo(demo.cache_dir, [str(changed), sources[1]]), VOCAB) != build.directory.name


def test_publish_keeps_the_first_finished_build(tmp_path):
    final = tmp_path / "key"
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(name)
    publish(tmp_path / "a", final)
    publish(tmp_path / "b", final)  # the loser: no error, the winner's build stays
    assert (final / "manifest.json").read_text() == "a"
    (tmp_path / "c").mkdir()
    (tmp_path / "stale").mkdir()
    (tmp_path / "stale" / "junk").write_text("")
    with pytest.raises(CorpusError, match="cannot move demo build"):
        publish(tmp_path / "c", tmp_path / "stale")


def test_concurrent_builders_agree(tmp_path, sources):
    demo = _demo(tmp_path, sources[1:], val_docs=3)
    barrier = threading.Barrier(2)
    results = []

    def build():
        barrier.wait()
        results.append(build_demo(demo, VOCAB))

    threads = [threading.Thread(target=build) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0].directory == results[1].directory
    assert [p.name for p in tmp_path.iterdir()] == [results[0].directory.name]  # no temporary left


def test_too_few_documents_and_missing_source(tmp_path, sources):
    with pytest.raises(CorpusError, match="hold 15 documents; need more than data.demo.val_docs=15"):
        build_demo(_demo(tmp_path, sources[1:], val_docs=15), VOCAB)
    with pytest.raises(CorpusError, match="text source not found: .*absent.txt"):
        build_demo(_demo(tmp_path, [str(tmp_path / "absent.txt")]), VOCAB)


def test_prepare_data_builds_the_demo(built):
    demo, build = built
    cfg = DataConfig(train_pattern=None, val_pattern=None, tokenizer_path=None, vocab_size=VOCAB, demo=demo)
    paths = prepare_data(cfg)
    assert paths.tokenizer_path == build.tokenizer_path and paths.vocab_size == VOCAB
    assert load_validation_tokens(paths.val_pattern, 64).numel() % 64 == 1


def test_prepare_data_checks_files_and_names_keys(built, tmp_path):
    _, build = built
    write_shard(tmp_path / "d" / "fineweb_train_000000.bin", [1, 2, 3])
    write_shard(tmp_path / "d" / "fineweb_val_000000.bin", [1, 2, 3])
    good = {"root": str(tmp_path), "train_pattern": "d/fineweb_train_*.bin", "val_pattern": "d/fineweb_val_*.bin",
            "tokenizer_path": str(build.tokenizer_path), "vocab_size": VOCAB}
    paths = prepare_data(DataConfig(**good))
    assert paths.train_pattern == str(tmp_path / "d" / "fineweb_train_*.bin")  # relative to root
    for key, value in [("tokenizer_path", "nowhere.model"), ("train_pattern", "d/none_*.bin"),
                       ("val_pattern", "/abs/missing_*.bin"), ("vocab_size", 1024)]:
        with pytest.raises(ConfigError) as e:
            prepare_data(DataConfig(**{**good, key: value}))
        assert e.value.key == f"data.{key}"


def test_cli(tmp_path, sources, capsys):
    main(["--out", str(tmp_path), "--source", sources[1], "--vocab-size", "512", "--val-docs", "3"])
    out = capsys.readouterr().out
    assert f"train_pattern: {tmp_path}" in out and "demo_512_bpe.model" in out


@pytest.mark.slow
def test_default_python_docs_build(tmp_path):
    build = build_demo(DemoConfig(cache_dir=str(tmp_path)), 1024)
    s = build.stats
    assert s["docs_total"] > 3000 and s["docs_val"] == 500 and s["tokens_train"] > 500_000
    assert s["build_seconds"] < 60
    assert load_tokenizer(build.tokenizer_path, 1024).vocab_size() == 1024
