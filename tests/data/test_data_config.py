"""The data config schema: every conf/data option merges into it, and bad values name their key."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from golf.config.errors import ConfigError
from golf.data.config import DataConfig, DemoConfig, validate_data

CONF_DATA = Path(__file__).resolve().parents[2] / "conf" / "data"


@pytest.mark.parametrize("yaml_path", sorted(CONF_DATA.glob("*.yaml")), ids=lambda p: p.name)
def test_every_data_option_fits_the_schema_and_validates(yaml_path):
    merged = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(yaml_path))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, DataConfig) and cfg.name == yaml_path.stem
    validate_data(cfg)


def test_both_options_exist():
    assert {p.stem for p in CONF_DATA.glob("*.yaml")} >= {"demo", "fineweb_sp1024"}


def test_defaults_are_the_official_layout():
    cfg = DataConfig()
    assert cfg.vocab_size == 1024 and cfg.demo is None
    assert cfg.train_pattern == "datasets/fineweb10B_sp1024/fineweb_train_*.bin"
    assert cfg.tokenizer_path == "tokenizers/fineweb_1024_bpe.model"
    validate_data(cfg)


def _demo(**kw):
    return DataConfig(train_pattern=None, val_pattern=None, tokenizer_path=None, demo=DemoConfig(**kw))


@pytest.mark.parametrize(
    "cfg,key",
    [
        (DataConfig(vocab_size=0), "data.vocab_size"),
        (DataConfig(vocab_size=65537), "data.vocab_size"),
        (DataConfig(train_pattern=None), "data.train_pattern"),
        (DataConfig(tokenizer_path=""), "data.tokenizer_path"),
        (DataConfig(root=""), "data.root"),
        (DataConfig(demo=DemoConfig()), "data.train_pattern"),
        (_demo(val_docs=0), "data.demo.val_docs"),
        (_demo(character_coverage=1.5), "data.demo.character_coverage"),
        (_demo(shard_tokens=0), "data.demo.shard_tokens"),
        (_demo(sources=[]), "data.demo.sources"),
        (_demo(sources=["python-docs", "notes.md"]), "data.demo.sources[1]"),
        (_demo(cache_dir=""), "data.demo.cache_dir"),
    ],
)
def test_invalid_values_name_the_key(cfg, key):
    with pytest.raises(ConfigError) as e:
        validate_data(cfg)
    assert e.value.key == key


def test_demo_needs_room_for_byte_pieces():
    cfg = _demo()
    cfg.vocab_size = 260
    with pytest.raises(ConfigError, match="data.vocab_size=260"):
        validate_data(cfg)


def test_prefix_is_used_in_keys():
    with pytest.raises(ConfigError, match=r"^eval_data\.vocab_size"):
        validate_data(DataConfig(vocab_size=-1), prefix="eval_data")


def test_overrides_are_type_checked():
    base = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONF_DATA / "demo.yaml"))
    with pytest.raises(ValidationError, match="val_docs"):
        OmegaConf.merge(base, OmegaConf.from_dotlist(["demo.val_docs=many"]))
