"""Building CaseOps shards + the byte sidecar from raw documents (python -m golf.data.prepare_caseops)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from golf.data.caseops_tokenizer import CASEOPS_DATASET, encode_caseops
from golf.data.config import DataConfig
from golf.data.paths import prepare_data
from golf.data.prepare_caseops import main, prepare_caseops, read_docs
from golf.data.shards import list_shards, read_shard
from golf.data.sidecar import load_validation_bytes
from golf.data.tokenizer import load_tokenizer
from golf.kernel.data import load_validation_tokens
from tests.helpers import CONF_DIR

VAL_DOCS, SHARD = 30, 20_000


def _split(out, pattern):
    files = list_shards(out / "datasets" / CASEOPS_DATASET / pattern)
    return files, torch.cat([read_shard(f) for f in files]).to(torch.int64).numpy()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, python_docs_jsonl, small_caseops_model):
    out = tmp_path_factory.mktemp("prepared")
    manifest = prepare_caseops(python_docs_jsonl, small_caseops_model, out, val_docs=VAL_DOCS, shard_tokens=SHARD)
    return out, manifest


def test_shards_hold_the_encoded_documents_in_order(prepared, python_docs_jsonl, small_caseops_model):
    out, manifest = prepared
    docs = list(read_docs(python_docs_jsonl))
    sp = load_tokenizer(small_caseops_model)
    val_tokens, val_bytes = encode_caseops(sp, docs[:VAL_DOCS], with_bytes=True)
    train_tokens, _ = encode_caseops(sp, docs[VAL_DOCS:], with_bytes=False)
    val_files, val = _split(out, "fineweb_val_[0-9]*.bin")
    bytes_files, sidecar = _split(out, "fineweb_val_bytes_*.bin")
    train_files, train = _split(out, "fineweb_train_*.bin")
    assert np.array_equal(val, val_tokens) and np.array_equal(sidecar, val_bytes)
    assert np.array_equal(train, train_tokens)
    # shards of SHARD tokens, the last of each split shorter; each sidecar as long as its shard
    for files in (val_files, train_files):
        assert len(files) > 1 and all(read_shard(f).numel() == SHARD for f in files[:-1])
    assert [read_shard(f).numel() for f in val_files] == [read_shard(f).numel() for f in bytes_files]
    assert int(sidecar.sum()) == sum(len(d.strip().encode("utf-8")) for d in docs[:VAL_DOCS])
    stats = manifest["datasets"][0]["stats"]
    assert stats == {"docs_total": len(docs), "docs_val": VAL_DOCS, "docs_train": len(docs) - VAL_DOCS,
                     "files_val": len(val_files), "files_train": len(train_files), "tokens_val": val.size,
                     "tokens_train": train.size, "bytes_val": int(sidecar.sum())}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (out / "tokenizers" / small_caseops_model.name).read_bytes() == small_caseops_model.read_bytes()


def test_output_is_the_fineweb_caseops_layout(prepared):
    out, _ = prepared
    option = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "fineweb_caseops.yaml"))
    cfg = DataConfig(**{**option, "root": str(out), "vocab_size": 400, "tokenizer_path": "tokenizers/co.model"})
    paths = prepare_data(cfg)
    val = load_validation_tokens(paths.val_pattern, 128)
    assert load_validation_bytes(paths.val_bytes_pattern, val).numel() == val.numel()


def test_existing_output_is_refused_then_replaced_on_request(python_docs_jsonl, small_caseops_model, tmp_path):
    out = tmp_path
    prepare_caseops(python_docs_jsonl, small_caseops_model, out, val_docs=VAL_DOCS, shard_tokens=SHARD)
    before = {f.name: f.read_bytes() for f in (out / "datasets" / CASEOPS_DATASET).iterdir()}
    with pytest.raises(FileExistsError, match=f"already holds {len(before)} shard files; pass --overwrite"):
        prepare_caseops(python_docs_jsonl, small_caseops_model, out, val_docs=VAL_DOCS, shard_tokens=SHARD)
    assert {f.name: f.read_bytes() for f in (out / "datasets" / CASEOPS_DATASET).iterdir()} == before
    # --train-shards stops after that many full training shards (the partial one is not written)
    manifest = prepare_caseops(python_docs_jsonl, small_caseops_model, out, val_docs=VAL_DOCS, shard_tokens=SHARD,
                               train_shards=1, overwrite=True)
    assert [f.name for f in list_shards(out / "datasets" / CASEOPS_DATASET / "fineweb_train_*.bin")] == [
        "fineweb_train_000000.bin"]
    assert manifest["datasets"][0]["stats"]["tokens_train"] == SHARD
    prepare_caseops(python_docs_jsonl, small_caseops_model, out, val_docs=VAL_DOCS, shard_tokens=SHARD, overwrite=True)
    assert {f.name: f.read_bytes() for f in (out / "datasets" / CASEOPS_DATASET).iterdir()} == before


def test_worker_processes_write_the_same_files(prepared, python_docs_jsonl, small_caseops_model, tmp_path, capsys):
    out, _ = prepared
    main(["--docs", str(python_docs_jsonl), "--tokenizer", str(small_caseops_model), "--out", str(tmp_path),
          "--val-docs", str(VAL_DOCS), "--shard-tokens", str(SHARD), "--workers", "2"])
    assert "val shard(s) + sidecar" in capsys.readouterr().out
    ours = {f.name: f.read_bytes() for f in (tmp_path / "datasets" / CASEOPS_DATASET).iterdir()}
    assert ours == {f.name: f.read_bytes() for f in (out / "datasets" / CASEOPS_DATASET).iterdir()}


@pytest.mark.parametrize("case,match", [
    ("bad_json", r"docs.jsonl:2: invalid JSON"),
    ("plain_tokenizer", r"is not a CaseOps tokenizer"),
    ("no_docs", r"documents not found: .*missing.jsonl"),
])
def test_bad_input_is_one_line(case, match, tmp_path, small_caseops_model, capsys):
    docs = tmp_path / "docs.jsonl"
    docs.write_text('{"text": "One"}\n{oops\n')
    tokenizer = small_caseops_model
    if case == "plain_tokenizer":
        from golf.data.tokenizer import train_tokenizer

        docs.write_text('{"text": "One"}\n')
        tokenizer = train_tokenizer(["plain text " * 50] * 20, tmp_path / "plain", 300)
    args = ["--docs", str(tmp_path / "missing.jsonl" if case == "no_docs" else docs), "--tokenizer", str(tokenizer),
            "--out", str(tmp_path / "out"), "--workers", "1"]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("prepare_caseops: error: ")
    assert __import__("re").search(match, err[0]), err[0]


def test_record_tokenizer_on_the_validation_prefix(caseops_sp_path, val_prefix_docs_path, tmp_path):
    """The record's split (first 50,000 documents are validation): all 901 shared documents are."""
    manifest = prepare_caseops(val_prefix_docs_path, caseops_sp_path, tmp_path)
    stats = manifest["datasets"][0]["stats"]
    assert (stats["files_val"], stats["files_train"], stats["tokens_val"], stats["bytes_val"]) == (1, 0, 808_617, 2_504_310)
    option = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "fineweb_caseops.yaml"))
    paths = prepare_data(DataConfig(**{**option, "root": str(tmp_path), "train_pattern": option["val_pattern"]}))
    val = load_validation_tokens(paths.val_pattern, 2048)  # 394 sequences of 2048 targets
    counts = load_validation_bytes(paths.val_bytes_pattern, val)
    assert val.numel() == 394 * 2048 + 1 and int(counts[1:].sum()) < 2_504_310
