"""Every preset composes against the schema and validates; invalid values name their dotted key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from golf.config.errors import ConfigError
from golf.quant.config import (
    ClipRule,
    Compressor,
    QATConfig,
    QuantConfig,
    RuleConfig,
    SchemeConfig,
    validate_quant,
)
from tests.helpers import compose_config

from .conftest import PRESETS


def test_expected_presets_exist():
    assert {"int8", "int6", "int5mix", "pr344", "pr1573", "pr187", "pr295", "none"} <= set(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_merges_into_schema_and_validates(name):
    merged = OmegaConf.merge(OmegaConf.structured(QuantConfig), compose_config([f"quant={name}"]).quant)
    assert merged.name == name
    validate_quant(merged)  # as a DictConfig
    validate_quant(OmegaConf.to_object(merged))  # and as dataclasses


def test_defaults_are_the_baseline_export():
    cfg = QuantConfig()
    validate_quant(cfg)
    int8 = cfg.schemes["int8"]
    assert (int8.bits, int8.clip, int8.clip_quantile) == (8, ClipRule.percentile, 0.9999984)
    assert cfg.passthrough_max_numel == 65_536 and cfg.compressor is Compressor.zlib and cfg.level == 9
    assert cfg.prune is None and cfg.qat is None and cfg.limit_bytes == 16_000_000


@pytest.mark.parametrize("mutate, key", [
    (lambda c: setattr(c.schemes["int8"], "bits", 9), "quant.schemes.int8.bits"),
    (lambda c: setattr(c.schemes["int8"], "clip_quantile", 1.5), "quant.schemes.int8.clip_quantile"),
    (lambda c: setattr(c.schemes["int8"], "clip", ClipRule.search), "quant.schemes.int8.candidates"),
    (lambda c: setattr(c.schemes["int8"], "grid_step", 200), "quant.schemes.int8.grid_step"),
    (lambda c: c.rules.append(RuleConfig(select="*", scheme="int7")), "quant.rules[1].scheme"),
    (lambda c: c.rules.insert(0, RuleConfig(select="(kind=matrix", scheme="int8")), "quant.rules[0].select"),
    (lambda c: setattr(c, "rules", []), "quant.rules"),
    (lambda c: c.base_rules.append(RuleConfig(select="place=middel", scheme="fp32")), "quant.base_rules[1].select"),
    (lambda c: setattr(c, "level", 23), "quant.level"),
    (lambda c: setattr(c, "limit_bytes", 0), "quant.limit_bytes"),
    (lambda c: setattr(c, "qat", QATConfig(lr_threshold=0.0)), "quant.qat.lr_threshold"),
    (lambda c: setattr(c, "qat", QATConfig(schemes={"s": SchemeConfig(clip=ClipRule.search, candidates=[0.9])},
                                           rules=[RuleConfig("*", "s")])), "quant.qat.schemes.s.clip"),
])
def test_invalid_values_name_the_key(mutate, key):
    cfg = QuantConfig()
    mutate(cfg)
    with pytest.raises(ConfigError) as err:
        validate_quant(cfg)
    assert err.value.key == key


def test_lzma_level_range_checked_per_compressor():
    cfg = QuantConfig(compressor=Compressor.lzma, level=22)
    with pytest.raises(ConfigError, match="lzma takes levels 0..9"):
        validate_quant(cfg)


@pytest.mark.parametrize("override, key, value", [
    ("quant.passthrough_order=later", "quant.passthrough_order", "later"),
    ("quant.schemes.int5_gptq.clip_order=clip_after", "quant.schemes.int5_gptq.clip_order", "clip_after"),
    ("quant.schemes.int5_gptq.rounding_scale=bf16", "quant.schemes.int5_gptq.rounding_scale", "bf16"),
    ("+quant.qat={fake_quant_scale: fp8}", "quant.qat.fake_quant_scale", "fp8"),
])
def test_export_order_and_scale_options_are_validated(override, key, value):
    from golf.config.validate import load_config

    with pytest.raises(ConfigError) as err:
        load_config(compose_config(["experiment=pr1573", override]))
    assert err.value.key == key and err.value.value == value
