"""The validation byte sidecar: file format, alignment with the validation tokens, and how a data config
finds and checks it (one line naming the key when something is wrong)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from golf.config.errors import ConfigError
from golf.data.config import DataConfig, DemoConfig, validate_data
from golf.data.paths import prepare_data
from golf.data.prepare_caseops import prepare_caseops
from golf.data.shards import ShardError, list_shards, read_shard, write_split_shards
from golf.data.sidecar import (
    check_token_files,
    check_validation_bytes,
    load_validation_bytes,
    sidecar_path,
    verify_sidecar_file,
    write_validation_bytes,
)
from golf.kernel.data import load_validation_tokens
from tests.helpers import CONF_DIR

# three documents: [BOS] + pieces, with the original bytes of each piece (BOS 0)
TOKENS = [1, 40, 41, 42, 1, 43, 44, 1, 45, 46, 47, 48]
BYTES = [0, 3, 1, 0, 0, 5, 2, 0, 1, 1, 4, 6]


@pytest.fixture
def val_dir(tmp_path):
    write_split_shards(TOKENS, tmp_path, "val", 5)
    write_validation_bytes(BYTES, tmp_path, 5)
    return tmp_path


def test_files_pair_up_with_the_token_shards(val_dir):
    assert [p.name for p in sorted(val_dir.iterdir())] == [
        "fineweb_val_000000.bin", "fineweb_val_000001.bin", "fineweb_val_000002.bin",
        "fineweb_val_bytes_000000.bin", "fineweb_val_bytes_000001.bin", "fineweb_val_bytes_000002.bin"]
    assert sidecar_path(val_dir / "fineweb_val_000001.bin") == val_dir / "fineweb_val_bytes_000001.bin"
    assert read_shard(val_dir / "fineweb_val_bytes_000001.bin").tolist() == [5, 2, 0, 1, 1]
    with pytest.raises(ShardError, match="not a validation token shard"):
        sidecar_path(val_dir / "fineweb_val_bytes_000001.bin")
    # the record's glob fineweb_val_*.bin matches the sidecars too; the token shards alone are [0-9]
    assert len(list_shards(val_dir / "fineweb_val_*.bin")) == 6
    tokens, sidecars = list_shards(val_dir / "fineweb_val_[0-9]*.bin"), list_shards(val_dir / "fineweb_val_bytes_*.bin")
    check_token_files(tokens)
    check_validation_bytes(tokens, sidecars)
    for t, b in zip(tokens, sidecars):
        verify_sidecar_file(t, b)
    with pytest.raises(ShardError, match="include the byte sidecar .*fineweb_val_bytes_000000.bin"):
        check_token_files(list_shards(val_dir / "fineweb_val_*.bin"))
    with pytest.raises(ShardError, match="2 byte sidecar file.* for 3 validation shard"):
        check_validation_bytes(tokens, sidecars[:2])


def test_load_is_aligned_with_the_truncated_validation_tokens(val_dir):
    val = load_validation_tokens(val_dir / "fineweb_val_[0-9]*.bin", seq_len=4)  # ((12-1)//4)*4+1 = 9 tokens
    counts = load_validation_bytes(val_dir / "fineweb_val_bytes_*.bin", val)
    assert val.tolist() == TOKENS[:9]
    assert counts.dtype == torch.int32 and counts.tolist() == BYTES[:9]
    # the bytes of the 8 scored targets val[1:], as an evaluator sums them
    assert int(counts[1:].sum()) == 3 + 1 + 0 + 0 + 5 + 2 + 0 + 1


def test_load_refuses_a_sidecar_of_other_tokens(val_dir, tmp_path):
    val = load_validation_tokens(val_dir / "fineweb_val_[0-9]*.bin", seq_len=11)
    short = tmp_path / "short"
    write_validation_bytes(BYTES[:10], short, 100)
    with pytest.raises(ShardError, match="holds 10 entries for 12 validation tokens"):
        load_validation_bytes(short / "fineweb_val_bytes_*.bin", val)
    shifted = tmp_path / "shifted"
    write_validation_bytes(BYTES[1:] + [0], shifted, 100)
    with pytest.raises(ShardError, match="credits 3 bytes to the BOS at token 0"):
        load_validation_bytes(shifted / "fineweb_val_bytes_*.bin", val)
    with pytest.raises(ShardError, match="holds 12 entries; .* holds 5 tokens"):
        verify_sidecar_file(val_dir / "fineweb_val_000000.bin", shifted / "fineweb_val_bytes_000000.bin")
    with pytest.raises(ShardError, match="does not fit in uint16"):
        write_validation_bytes([0, 70_000], tmp_path / "big", 10)


def test_config_requires_the_sidecar_for_caseops_files():
    validate_data(DataConfig(text_transform="caseops", val_bytes_pattern="d/fineweb_val_bytes_*.bin"))
    validate_data(DataConfig(val_bytes_pattern="d/fineweb_val_bytes_*.bin"))  # a sidecar for raw text is fine
    with pytest.raises(ConfigError, match=r"data.val_bytes_pattern=None: is required with text_transform=caseops"):
        validate_data(DataConfig(text_transform="caseops"))
    with pytest.raises(ConfigError, match=r"data.text_transform='lowercase': must be null or 'caseops'"):
        validate_data(DataConfig(text_transform="lowercase"))
    demo = {"train_pattern": None, "val_pattern": None, "tokenizer_path": None, "demo": DemoConfig()}
    with pytest.raises(ConfigError, match=r"data.val_bytes_pattern='x': must be null when data.demo is set"):
        validate_data(DataConfig(**demo, val_bytes_pattern="x"))
    with pytest.raises(ConfigError, match=r"data.vocab_size=264: .*at least 265 pieces .*4 CaseOps operators"):
        validate_data(DataConfig(**demo, vocab_size=264, text_transform="caseops"))
    validate_data(DataConfig(**demo, vocab_size=264))


@pytest.fixture(scope="module")
def caseops_root(tmp_path_factory, python_docs_jsonl, small_caseops_model):
    out = tmp_path_factory.mktemp("caseops_data")
    prepare_caseops(python_docs_jsonl, small_caseops_model, out, val_docs=20, shard_tokens=30_000)
    return out


def _cfg(root, **kw):
    name = "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    fields = {"root": str(root), "train_pattern": f"datasets/{name}/fineweb_train_*.bin",
              "val_pattern": f"datasets/{name}/fineweb_val_[0-9]*.bin",
              "val_bytes_pattern": f"datasets/{name}/fineweb_val_bytes_*.bin",
              "tokenizer_path": "tokenizers/co.model", "vocab_size": 400, "text_transform": "caseops"}
    return DataConfig(**{**fields, **kw})


def test_prepare_data_finds_and_checks_the_sidecar(caseops_root, tmp_path, sp_model_path):
    paths = prepare_data(_cfg(caseops_root))
    assert paths.text_transform == "caseops" and paths.val_bytes_pattern.endswith("fineweb_val_bytes_*.bin")
    val = load_validation_tokens(paths.val_pattern, 1024)
    assert int(load_validation_bytes(paths.val_bytes_pattern, val)[1:].sum()) > 0
    with pytest.raises(ConfigError, match=r"^data.val_pattern='.*fineweb_val_\*.bin': .*include the byte sidecar"):
        prepare_data(_cfg(caseops_root, val_pattern=_cfg(caseops_root).val_pattern.replace("[0-9]", "")))
    with pytest.raises(ConfigError, match=r"^data.val_bytes_pattern='nothing/\*.bin': no shard files match .*"
                                          r"golf.data.download --variant sp8192_caseops"):
        prepare_data(_cfg(caseops_root, val_bytes_pattern="nothing/*.bin"))
    with pytest.raises(ConfigError, match=r"^data.val_bytes_pattern=.*: .*holds \d+ entries; its shard"):
        prepare_data(_cfg(caseops_root, val_bytes_pattern=_cfg(caseops_root).train_pattern.replace("*", "00000[01]")))
    with pytest.raises(ConfigError, match=r"^data.tokenizer_path=.*: .* is not a CaseOps tokenizer"):
        prepare_data(_cfg(caseops_root, tokenizer_path=str(sp_model_path), vocab_size=1024))


def test_a_missing_sidecar_stops_the_run_in_one_line(caseops_root, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(caseops_root, root)
    for f in root.glob("datasets/*/fineweb_val_bytes_*.bin"):
        f.unlink()
    cfg = _cfg(root)
    overrides = [f"data.{k}={getattr(cfg, k)}" for k in ("root", "train_pattern", "val_bytes_pattern", "tokenizer_path")]
    proc = subprocess.run(
        [sys.executable, "-m", "golf.train", "data=fineweb_caseops", *overrides, "data.vocab_size=400",
         "arch.vocab_size=400", "scale=cpu", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=CONF_DIR.parent, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("golf: invalid configuration: data.val_bytes_pattern=")
    assert "no shard files match" in lines[0] and "Traceback" not in proc.stderr
    assert np.all([not f.name.startswith("fineweb_val_bytes") for f in root.glob("datasets/*/*")])


def test_the_sidecars_contents_are_checked_before_a_run(caseops_root, tmp_path):
    """check_data reads every sidecar file against its shard (a sidecar of other tokens credits bytes to a
    BOS) before anything trains; the kernel then reads it as it is, aligned with the tokens."""
    import shutil

    from golf.data import check_data
    from golf.kernel.data import validation_bytes

    cfg = _cfg(caseops_root)
    paths = prepare_data(cfg)
    check_data(cfg, paths, world_size=1, seq_len=64, val_seq_len=64)
    val = load_validation_tokens(paths.val_pattern, 64)
    assert torch.equal(validation_bytes(cfg, paths, val, 400), load_validation_bytes(paths.val_bytes_pattern, val))
    root = tmp_path / "data"
    shutil.copytree(caseops_root, root)
    (sidecar,) = root.glob("datasets/*/fineweb_val_bytes_000000.bin")
    counts = read_shard(sidecar).to(torch.int64)
    write_validation_bytes(torch.roll(counts, 1).numpy(), sidecar.parent, len(counts))  # off by one token
    with pytest.raises(ShardError, match=r"fineweb_val_bytes_000000.bin credits \d+ bytes to the BOS at token 0"):
        check_data(_cfg(root), prepare_data(_cfg(root)), world_size=1, seq_len=64, val_seq_len=64)
