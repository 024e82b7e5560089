"""Every averaging preset is a valid config; inconsistent settings fail naming the key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from golf.averaging import AveragingConfig, EmaConfig, SwaConfig, validate_averaging
from golf.config.errors import ConfigError
from tests.helpers import CONF_DIR, group_options


def load_preset(name: str) -> AveragingConfig:
    merged = OmegaConf.merge(OmegaConf.structured(AveragingConfig), OmegaConf.load(CONF_DIR / "averaging" / f"{name}.yaml"))
    return OmegaConf.to_object(merged)


@pytest.mark.parametrize("name", group_options("averaging"))
def test_preset_merges_into_the_schema_and_validates(name):
    cfg = load_preset(name)
    validate_averaging(cfg)
    assert cfg.name == name


def test_defaults_are_no_averaging():
    assert load_preset("none") == AveragingConfig()


def test_seed_recipes():
    assert load_preset("ema09985").ema.decay == 0.9985  # #507
    assert load_preset("ema0997").ema.decay == 0.997  # #187, #344's claimed run
    pr295, pr1573 = load_preset("swa_pr295"), load_preset("swa_pr1573")
    assert (pr295.swa.every, pr295.swa.lr_mul_below, pr295.ema) == (50, 0.4, None)
    assert (pr1573.swa.every, pr1573.swa.lr_mul_below, pr1573.ema.decay) == (50, 0.2, 0.997)
    assert load_preset("swa_of_ema_pr344").swa.source == "ema"


@pytest.mark.parametrize(
    "cfg,key",
    [
        (AveragingConfig(export="best"), "averaging.export"),
        (AveragingConfig(ema=EmaConfig(decay=1.0), export="ema"), "averaging.ema.decay"),
        (AveragingConfig(export="ema"), "averaging.export"),
        (AveragingConfig(export="swa"), "averaging.export"),
        (AveragingConfig(ema=EmaConfig()), "averaging.export"),
        (AveragingConfig(ema=EmaConfig(), swa=SwaConfig(), export="ema"), "averaging.export"),
        (AveragingConfig(swa=SwaConfig(every=0), export="swa"), "averaging.swa.every"),
        (AveragingConfig(swa=SwaConfig(lr_mul_below=0.0), export="swa"), "averaging.swa.lr_mul_below"),
        (AveragingConfig(swa=SwaConfig(source="ema"), export="swa"), "averaging.swa.source"),
        (AveragingConfig(swa=SwaConfig(source="best"), export="swa"), "averaging.swa.source"),
        (AveragingConfig(swa=SwaConfig(min_snapshots=0), export="swa"), "averaging.swa.min_snapshots"),
    ],
)
def test_inconsistent_settings_name_the_key(cfg, key):
    with pytest.raises(ConfigError) as err:
        validate_averaging(cfg)
    assert err.value.key == key
