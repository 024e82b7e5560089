"""--variant sp8192_caseops against a local fake hub laid out like romeerp/parameter-golf-caseops-v1:
the byte sidecar travels with the validation shard and is verified like every other file."""

from __future__ import annotations

import json

import pytest
from omegaconf import OmegaConf

from golf.data.caseops_tokenizer import CASEOPS_DATASET, encode_caseops
from golf.data.config import DataConfig
from golf.data.download import (
    DownloadError,
    dataset_for_variant,
    download_challenge_data,
    main,
    repo_for_variant,
)
from golf.data.paths import prepare_data
from golf.data.shards import write_shard
from golf.data.tokenizer import load_tokenizer, train_tokenizer
from tests.helpers import CONF_DIR

VOCAB = 400
MODEL = "tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"
SHARDS = f"datasets/datasets/{CASEOPS_DATASET}"
VAL, SIDECAR = f"{SHARDS}/fineweb_val_000000.bin", f"{SHARDS}/fineweb_val_bytes_000000.bin"


@pytest.fixture
def hub(fake_hub, small_caseops_model, tmp_path):
    """A fake repo with the CaseOps dataset: real CaseOps shards of the Python docs and their sidecar."""
    from pydoc_data.topics import topics

    docs = [topics[k] for k in sorted(topics)]
    sp = load_tokenizer(small_caseops_model)
    val_tokens, val_bytes = encode_caseops(sp, docs[:10], with_bytes=True)
    train_tokens, _ = encode_caseops(sp, docs[10:], with_bytes=False)
    manifest = {
        "tokenizers": [{"name": "sp_bpe_8192_lossless_caps_caseops_v1_reserved", "kind": "sentencepiece_bpe",
                        "vocab_size": VOCAB, "model_path": MODEL, "text_transform": "lossless_caps_caseops_v1"}],
        "datasets": [{"name": CASEOPS_DATASET, "tokenizer_name": "sp_bpe_8192_lossless_caps_caseops_v1_reserved",
                      "vocab_size": VOCAB, "val_bytes_glob": f"{CASEOPS_DATASET}/fineweb_val_bytes_*.bin",
                      "stats": {"files_val": 1, "files_train": 2, "tokens_val": len(val_tokens),
                                "tokens_train": len(train_tokens)}}],
    }
    half = len(train_tokens) // 2
    fake_hub.files["datasets/manifest.json"] = json.dumps(manifest).encode()
    fake_hub.files[f"datasets/{MODEL}"] = small_caseops_model.read_bytes()
    fake_hub.files[VAL] = write_shard(tmp_path / "v.bin", val_tokens).read_bytes()
    fake_hub.files[SIDECAR] = write_shard(tmp_path / "vb.bin", val_bytes).read_bytes()
    for i, part in enumerate((train_tokens[:half], train_tokens[half:])):
        fake_hub.files[f"{SHARDS}/fineweb_train_{i:06d}.bin"] = write_shard(tmp_path / f"t{i}.bin", part).read_bytes()
    fake_hub.val_bytes = val_bytes
    return fake_hub


def _download(hub, out, **kw):
    return download_challenge_data(out, variant="sp8192_caseops", repo_id=hub.repo_id, endpoint=hub.endpoint,
                                   **{"train_shards": 2, **kw})


def test_variant_names_its_repository_and_dataset():
    for variant in ("sp8192_caseops", "sp8192_lossless_caps_caseops_v1_reserved"):  # golf's name, the record's
        assert repo_for_variant(variant) == "romeerp/parameter-golf-caseops-v1"
        assert dataset_for_variant(variant) == CASEOPS_DATASET
    assert dataset_for_variant("sp4096") == "fineweb10B_sp4096"


def test_download_brings_the_sidecar_and_is_data_fineweb_caseops(hub, tmp_path, capsys):
    out = tmp_path / "data"
    main(["--out", str(out), "--variant", "sp8192_caseops", "--train-shards", "2", "--repo-id", hub.repo_id,
          "--endpoint", hub.endpoint])
    assert "(1 val, 2 train, 1 val byte sidecar)" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "datasets" / CASEOPS_DATASET).iterdir()) == [
        "fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin"]
    assert (out / "datasets" / CASEOPS_DATASET / "fineweb_val_bytes_000000.bin").read_bytes() == hub.files[SIDECAR]
    option = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "data" / "fineweb_caseops.yaml"))
    paths = prepare_data(DataConfig(**{**option, "root": str(out), "vocab_size": VOCAB}))
    assert paths.val_bytes_pattern == str(out / "datasets" / CASEOPS_DATASET / "fineweb_val_bytes_*.bin")
    # a re-run skips every file without touching the network, the sidecar included
    before = sum(hub.requests.values())
    result = _download(hub, out)
    assert result.fetched == [] and len(result.skipped) == 6 and sum(hub.requests.values()) == before
    assert [p.name for p in result.val_bytes_files] == ["fineweb_val_bytes_000000.bin"]


def test_corrupted_local_sidecar_is_fetched_again(hub, tmp_path):
    _download(hub, tmp_path)
    local = tmp_path / "datasets" / CASEOPS_DATASET / "fineweb_val_bytes_000000.bin"
    data = bytearray(local.read_bytes())
    data[-1] ^= 0x01
    local.write_bytes(bytes(data))
    result = _download(hub, tmp_path)
    assert result.fetched == [local] and local.read_bytes() == hub.files[SIDECAR]


@pytest.mark.parametrize("problem,match", [
    ("short", r"fineweb_val_bytes_000000\.bin is rejected: .* holds \d+ entries; .* holds \d+ tokens"),
    ("shifted", r"fineweb_val_bytes_000000\.bin is rejected: .* credits 1 bytes to the BOS at token 0"),
    ("missing", r"cannot get datasets/datasets/.*/fineweb_val_bytes_000000\.bin"),
])
def test_bad_sidecar_on_the_server_is_rejected(hub, tmp_path, problem, match):
    counts = hub.val_bytes
    if problem == "missing":
        del hub.files[SIDECAR]
    else:
        bad = counts[:-1] if problem == "short" else counts + 1  # + 1: every BOS would stand for a byte
        hub.files[SIDECAR] = write_shard(tmp_path / "bad.bin", bad).read_bytes()
    with pytest.raises(DownloadError, match=match):
        _download(hub, tmp_path / "out")
    assert not (tmp_path / "out" / "datasets" / CASEOPS_DATASET / "fineweb_val_bytes_000000.bin").exists()


def test_a_tokenizer_without_the_operators_is_rejected(hub, tmp_path):
    from pydoc_data.topics import topics

    plain = train_tokenizer([topics[k] for k in sorted(topics)[:40]], tmp_path / "plain", VOCAB)
    hub.files[f"datasets/{MODEL}"] = plain.read_bytes()
    with pytest.raises(DownloadError, match=r"\.model is rejected: .* id 4 must be the reserved operator U\+E001"):
        _download(hub, tmp_path / "out")
    manifest = json.loads(hub.files["datasets/manifest.json"])
    manifest["tokenizers"][0]["text_transform"] = "identity"
    hub.files["datasets/manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(DownloadError, match="has text_transform 'identity'; expected 'lossless_caps_caseops_v1'"):
        _download(hub, tmp_path / "out2")
