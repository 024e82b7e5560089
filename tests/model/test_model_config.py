"""Layer selectors and the validation of impossible architectures (each error names its key)."""

from __future__ import annotations

import dataclasses

import pytest

from golf.config.errors import ConfigError
from golf.model import build_model, validate_arch
from golf.model.config import (
    ArchConfig,
    AttentionConfig,
    BackoutConfig,
    BackoutSource,
    BigramConfig,
    BigramForm,
    DepthConfig,
    EncoderRecurrenceConfig,
    MLPActivation,
    MLPConfig,
    RecycleConfig,
    RopeConfig,
    ValueEmbedConfig,
    XSAConfig,
    parse_layers,
)


@pytest.mark.parametrize("spec,expected", [
    ("all", (0, 1, 2, 3, 4)), ("none", ()), ("", ()), ("last:2", (3, 4)), ("last:0", ()),
    ("first:2", (0, 1)), ("from:1", (1, 2, 3, 4)), ("3,1", (3, 1)), ("4", (4,)), (" 2 , 3 ", (2, 3)),
])
def test_selectors(spec, expected):
    assert parse_layers(spec, 5, "k") == expected


@pytest.mark.parametrize("spec", ["last:6", "from:5", "first:-1", "1,5", "-1", "2,2", "mid:2", "x"])
def test_bad_selectors_name_the_key(spec):
    with pytest.raises(ConfigError) as err:
        parse_layers(spec, 5, "arch.attention.xsa.layers")
    assert err.value.key == "arch.attention.xsa.layers" and err.value.value == spec


def _with(**changes):
    return dataclasses.replace(ArchConfig(num_layers=11), **changes)


def _att(**kw):
    return AttentionConfig(**kw)


@pytest.mark.parametrize("cfg,key", [
    (_with(num_heads=7), "arch.num_heads"),
    (_with(num_kv_heads=3), "arch.num_kv_heads"),
    (_with(model_dim=72), "arch.model_dim"),  # head dim 9 is odd
    (_with(logit_softcap=0.0), "arch.logit_softcap"),
    (_with(attention=_att(rope=RopeConfig(dims=15))), "arch.attention.rope.dims"),
    (_with(attention=_att(rope=RopeConfig(dims=128))), "arch.attention.rope.dims"),
    (_with(attention=_att(rope=RopeConfig(dims=2, ntk_reference_len=1024))), "arch.attention.rope.dims"),
    (_with(attention=_att(xsa=XSAConfig(layers="last:12"))), "arch.attention.xsa.layers"),
    (_with(attention=_att(xsa=XSAConfig(layers="7,11"))), "arch.attention.xsa.layers"),
    (_with(attention=_att(value_embed=ValueEmbedConfig(layers="10,11"))), "arch.attention.value_embed.layers"),
    (_with(depth=DepthConfig(recycle=RecycleConfig(layers="3,11"))), "arch.depth.recycle.layers"),
    (_with(depth=DepthConfig(recycle=RecycleConfig(repeats=0))), "arch.depth.recycle.repeats"),
    (_with(depth=DepthConfig(encoder_layers=12)), "arch.depth.encoder_layers"),
    (_with(depth=DepthConfig(encoder_layers=0, encoder_recurrence=EncoderRecurrenceConfig())),
     "arch.depth.encoder_recurrence"),
    (_with(depth=DepthConfig(encoder_layers=11), backout=BackoutConfig(source=BackoutSource.first_decoder_output)),
     "arch.backout.source"),
    (_with(mlp=MLPConfig(activation=MLPActivation.swiglu, mult=3.5)), "arch.mlp.mult"),  # 2*1792/3
    (_with(mlp=MLPConfig(mult=2.3)), "arch.mlp.mult"),  # 2.3 * 512 = 1177.6
    (_with(mlp=MLPConfig(hidden=0)), "arch.mlp.hidden"),
    (_with(input=dataclasses.replace(ArchConfig().input, bigram=BigramConfig(
        form=BigramForm.xor_per_layer, scale_init=None))), "arch.input.bigram.scale_init"),
    (_with(input=dataclasses.replace(ArchConfig().input, bigram=BigramConfig(buckets=1))),
     "arch.input.bigram.buckets"),
])
def test_impossible_settings_stop_at_validation(cfg, key):
    with pytest.raises(ConfigError) as err:
        validate_arch(cfg)
    assert err.value.key == key, str(err.value)
    with pytest.raises(ConfigError):
        build_model(cfg)


def test_valid_settings_pass():
    validate_arch(_with(attention=_att(rope=RopeConfig(dims=16, ntk_reference_len=1024),
                                       xsa=XSAConfig(layers="last:4"),
                                       value_embed=ValueEmbedConfig(layers="9,10"))))
    validate_arch(_with(mlp=MLPConfig(activation=MLPActivation.swiglu, mult=3.0)))
    validate_arch(_with(mlp=MLPConfig(activation=MLPActivation.swiglu, hidden=1195)))
    validate_arch(ArchConfig(), prefix="x")


def test_prefix_is_used():
    with pytest.raises(ConfigError) as err:
        validate_arch(dataclasses.replace(ArchConfig(), num_heads=7), prefix="model")
    assert err.value.key == "model.num_heads"
