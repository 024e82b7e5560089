"""The hub downloader against a local fake hub (tests/data/conftest.py) with the official layout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from golf.data.config import DataConfig
from golf.data.download import DownloadError, download_challenge_data, main
from golf.data.paths import prepare_data
from golf.data.shards import HEADER_BYTES, read_shard, write_shard
from golf.data.tokenizer import train_tokenizer

VOCAB = 400
SHARDS = "datasets/datasets/fineweb10B_sp1024"
TRAIN_TOKENS = (3000, 3000, 1234)
VAL_TOKENS = 2500


@pytest.fixture(scope="module")
def tokenizer_files(tmp_path_factory):
    from pydoc_data.topics import topics

    model = train_tokenizer([topics[k] for k in sorted(topics)[:20]], tmp_path_factory.mktemp("tok") / "t", VOCAB)
    return model.read_bytes(), model.with_suffix(".vocab").read_bytes()


def _shard_bytes(tmp_path, n, seed):
    ids = np.random.default_rng(seed).integers(0, VOCAB, n)
    return write_shard(tmp_path / f"shard{seed}.bin", ids).read_bytes()


@pytest.fixture
def hub(fake_hub, tokenizer_files, tmp_path):
    """A fake repo laid out like willdepueoai/parameter-golf, with small shards."""
    manifest = {
        "tokenizers": [{"name": "sp_bpe_1024", "kind": "sentencepiece_bpe", "vocab_size": VOCAB,
                        "model_path": "tokenizers/fineweb_1024_bpe.model",
                        "vocab_path": "tokenizers/fineweb_1024_bpe.vocab"}],
        "datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024", "vocab_size": VOCAB,
                      "stats": {"files_val": 1, "files_train": len(TRAIN_TOKENS), "tokens_val": VAL_TOKENS,
                                "tokens_train": sum(TRAIN_TOKENS)}}],
    }
    fake_hub.files["datasets/manifest.json"] = json.dumps(manifest).encode()
    fake_hub.files["datasets/tokenizers/fineweb_1024_bpe.model"] = tokenizer_files[0]
    fake_hub.files["datasets/tokenizers/fineweb_1024_bpe.vocab"] = tokenizer_files[1]
    fake_hub.files[f"{SHARDS}/fineweb_val_000000.bin"] = _shard_bytes(tmp_path, VAL_TOKENS, 100)
    for i, n in enumerate(TRAIN_TOKENS):
        fake_hub.files[f"{SHARDS}/fineweb_train_{i:06d}.bin"] = _shard_bytes(tmp_path, n, i)
    return fake_hub


def _download(hub, out, **kw):
    return download_challenge_data(out, repo_id=hub.repo_id, endpoint=hub.endpoint, **{"train_shards": 2, **kw})


def test_fresh_download_has_the_official_layout(hub, tmp_path):
    out = tmp_path / "data"
    result = _download(hub, out)
    expected = ["manifest.json", "tokenizers/fineweb_1024_bpe.model", "tokenizers/fineweb_1024_bpe.vocab",
                "datasets/fineweb10B_sp1024/fineweb_val_000000.bin",
                "datasets/fineweb10B_sp1024/fineweb_train_000000.bin",
                "datasets/fineweb10B_sp1024/fineweb_train_000001.bin"]
    assert sorted(str(p.relative_to(out)) for p in result.fetched) == sorted(expected)
    for rel in expected:
        assert (out / rel).read_bytes() == hub.files[f"datasets/{rel}"]
    assert not (out / "datasets/fineweb10B_sp1024/fineweb_train_000002.bin").exists()
    assert result.tokenizer_path == out / "tokenizers/fineweb_1024_bpe.model"
    assert [p.name for p in result.train_files] == ["fineweb_train_000000.bin", "fineweb_train_000001.bin"]
    # the result is directly usable as the fineweb_sp1024 data option
    paths = prepare_data(DataConfig(root=str(out), tokenizer_path="tokenizers/fineweb_1024_bpe.model", vocab_size=VOCAB))
    assert paths.val_pattern == str(out / "datasets/fineweb10B_sp1024/fineweb_val_*.bin")


def test_rerun_skips_without_network(hub, tmp_path):
    _download(hub, tmp_path)
    before = sum(hub.requests.values())
    result = _download(hub, tmp_path)
    assert result.fetched == [] and len(result.skipped) == 6
    assert sum(hub.requests.values()) == before


def test_more_train_shards_fetch_only_the_new_one(hub, tmp_path):
    _download(hub, tmp_path)
    result = _download(hub, tmp_path, train_shards=3)
    assert [p.name for p in result.fetched] == ["fineweb_train_000002.bin"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_local_file_is_fetched_again(hub, tmp_path, damage):
    _download(hub, tmp_path)
    target = tmp_path / "datasets/fineweb10B_sp1024/fineweb_train_000001.bin"
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[HEADER_BYTES + 10] ^= 0xFF
    else:
        del data[-100:]
    target.write_bytes(bytes(data))
    gets = hub.gets(f"{SHARDS}/fineweb_train_000001.bin")
    result = _download(hub, tmp_path)
    assert result.fetched == [target]
    assert hub.gets(f"{SHARDS}/fineweb_train_000001.bin") == gets + 1
    assert target.read_bytes() == hub.files[f"{SHARDS}/fineweb_train_000001.bin"]


def test_recheck_verifies_intact_files_without_fetching(hub, tmp_path):
    _download(hub, tmp_path)
    heads = hub.requests[("HEAD", f"{SHARDS}/fineweb_val_000000.bin")]
    gets = sum(n for (method, _), n in hub.requests.items() if method == "GET")
    result = _download(hub, tmp_path, recheck=True)
    assert result.fetched == [] and len(result.skipped) == 6
    assert hub.requests[("HEAD", f"{SHARDS}/fineweb_val_000000.bin")] == heads + 1  # asked the hub
    assert sum(n for (method, _), n in hub.requests.items() if method == "GET") == gets  # fetched nothing


def _rejected(hub, tmp_path, match, **kw):
    with pytest.raises(DownloadError, match=match):
        _download(hub, tmp_path, **kw)
    return tmp_path / "datasets/fineweb10B_sp1024"


def test_server_shard_with_bad_header_is_rejected(hub, tmp_path):
    path = f"{SHARDS}/fineweb_train_000001.bin"
    hub.files[path] = b"\x00" * 4 + hub.files[path][4:]
    local = _rejected(hub, tmp_path, r"fineweb_train_000001\.bin is rejected: .*wrong magic 0")
    assert not (local / "fineweb_train_000001.bin").exists()


def test_server_shard_with_bad_size_is_rejected(hub, tmp_path):
    path = f"{SHARDS}/fineweb_train_000000.bin"
    hub.files[path] = hub.files[path][:-2]  # header still says 3000 tokens
    _rejected(hub, tmp_path, r"fineweb_train_000000\.bin is rejected: .*file size 7022 != 7024")


def test_server_shard_with_ids_outside_the_vocab_is_rejected(hub, tmp_path):
    hub.files[f"{SHARDS}/fineweb_val_000000.bin"] = write_shard(tmp_path / "v.bin", [1, 2, VOCAB]).read_bytes()
    _rejected(hub, tmp_path / "out", r"token id 400 at position 2 .*vocab_size=400")


def test_checksum_mismatch_is_rejected(hub, tmp_path):
    hub.etags[f"{SHARDS}/fineweb_val_000000.bin"] = "0" * 64
    _rejected(hub, tmp_path, r"fineweb_val_000000\.bin is rejected: sha256 [0-9a-f]{64} != 0{64}")


def test_manifest_token_total_is_checked(hub, tmp_path):
    hub.files[f"{SHARDS}/fineweb_val_000000.bin"] = _shard_bytes(tmp_path, VAL_TOKENS - 1, 7)
    _rejected(hub, tmp_path / "out", "validation shards hold 2499 tokens; the manifest says 2500")


def test_missing_remote_file_and_too_many_shards(hub, tmp_path):
    del hub.files[f"{SHARDS}/fineweb_val_000000.bin"]
    _rejected(hub, tmp_path, r"cannot get datasets/datasets/fineweb10B_sp1024/fineweb_val_000000\.bin")
    _rejected(hub, tmp_path, "fineweb10B_sp1024 has 3 training shards .*; 4 requested", train_shards=4)
    _rejected(hub, tmp_path, r"dataset 'fineweb10B_sp4096' is not in the manifest", variant="sp4096")


def test_cli(hub, tmp_path, capsys):
    main(["--out", str(tmp_path), "--train-shards", "1", "--repo-id", hub.repo_id, "--endpoint", hub.endpoint])
    assert "(1 val, 1 train)" in capsys.readouterr().out
    assert read_shard(tmp_path / "datasets/fineweb10B_sp1024/fineweb_train_000000.bin", VOCAB).numel() == 3000


def test_sp8192_variant_from_its_repository(fake_hub, tokenizer_files, tmp_path):
    """--variant sp8192: the same layout under fineweb10B_sp8192 / fineweb_8192_bpe, usable as data=fineweb_sp8192."""
    from omegaconf import OmegaConf

    from tests.helpers import CONF_DIR

    shards = "datasets/datasets/fineweb10B_sp8192"
    manifest = {
        "tokenizers": [{"name": "sp_bpe_8192", "kind": "sentencepiece_bpe", "vocab_size": VOCAB,
                        "model_path": "tokenizers/fineweb_8192_bpe.model"}],
        "datasets": [{"name": "fineweb10B_sp8192", "tokenizer_name": "sp_bpe_8192", "vocab_size": VOCAB,
                      "stats": {"files_val": 1, "files_train": 2, "tokens_val": VAL_TOKENS, "tokens_train": 6000}}],
    }
    fake_hub.files["datasets/manifest.json"] = json.dumps(manifest).encode()
    fake_hub.files["datasets/tokenizers/fineweb_8192_bpe.model"] = tokenizer_files[0]
    fake_hub.files[f"{shards}/fineweb_val_000000.bin"] = _shard_bytes(tmp_path, VAL_TOKENS, 100)
    for i in range(2):
        fake_hub.files[f"{shards}/fineweb_train_{i:06d}.bin"] = _shard_bytes(tmp_path, 3000, i)
    out = tmp_path / "data"
    main(["--out", str(out), "--variant", "sp8192", "--train-shards", "2", "--repo-id", fake_hub.repo_id,
          "--endpoint", fake_hub.endpoint])
    assert sorted(p.name for p in (out / "datasets/fineweb10B_sp8192").iterdir()) == [
        "fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"]
    option = OmegaConf.load(CONF_DIR / "data" / "fineweb_sp8192.yaml")
    cfg = DataConfig(**{**OmegaConf.to_container(option), "root": str(out), "vocab_size": VOCAB})
    paths = prepare_data(cfg)
    assert paths.tokenizer_path == out / "tokenizers/fineweb_8192_bpe.model"
    assert paths.train_pattern == str(out / "datasets/fineweb10B_sp8192/fineweb_train_*.bin")


def test_sp8192_defaults_to_its_own_repository(fake_hub, tmp_path):
    from golf.data.download import DEFAULT_REPO_ID, repo_for_variant

    assert repo_for_variant("sp8192") == "kevclark/parameter-golf"
    assert repo_for_variant("sp1024") == DEFAULT_REPO_ID
    # without --repo-id the sp8192 request goes to kevclark/parameter-golf (this fake hub serves another repo)
    with pytest.raises(DownloadError, match="kevclark/parameter-golf"):
        download_challenge_data(tmp_path, variant="sp8192", endpoint=fake_hub.endpoint, train_shards=1)
