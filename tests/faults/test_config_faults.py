"""Row 1: bad values, and the value of an unknown key: each bad configuration gives
one ConfigError naming the key and the value, before anything runs."""

from __future__ import annotations

import pytest

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.eval import EvalConfig
from golf.evaluate import score_artifact
from tests.helpers import TINY, compose_config


def refused(*extra: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(compose_config([*TINY, *extra]))
    return info.value


def test_zero_workers_is_a_config_error_not_a_division_by_zero():
    err = refused("nproc_per_node=0")
    assert (err.key, err.value) == ("nproc_per_node", 0)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_learning_rate_is_refused(value):
    err = refused(f"optimizer.muon.lr={value}")
    assert err.key == "optimizer.muon.lr" and str(err.value) == str(float(value))
    assert "finite" in err.reason


def test_non_finite_float_anywhere_is_refused():
    err = refused("optimizer.muon.ns_coefficients=[3.4445,nan,2.0315]")
    assert err.key == "optimizer.muon.ns_coefficients[1]"
    err = refused("optimizer.adam_groups.tok.lr=inf")
    assert err.key == "optimizer.adam_groups.tok.lr"


def test_unknown_key_reports_its_value():
    err = refused("+train.bogus=5")
    assert (err.key, err.value) == ("train.bogus", 5)
    assert str(err).startswith("train.bogus=5:")


def test_sliding_stride_is_checked_against_the_training_window_it_falls_back_to():
    # eval.seq_len=null: windows are train.seq_len=64 tokens long; a stride of 128 would skip targets
    err = refused("eval.kind=sliding", "eval.stride=128")
    assert (err.key, err.value) == ("eval.stride", 128) and "train.seq_len=64" in err.reason
    load_config(compose_config([*TINY, "eval.kind=sliding", "eval.stride=64"]))  # equal: every target once


def test_evaluate_checks_the_stride_against_the_recorded_training_window(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    from omegaconf import OmegaConf

    OmegaConf.save(compose_config(TINY), run / "config.yaml")
    (run / "model.golf").write_bytes(b"not read: refused before")
    with pytest.raises(ConfigError) as info:
        score_artifact(run, EvalConfig(kind="sliding", stride=128, seq_len=None))
    assert info.value.key == "eval.stride" and "train.seq_len=64" in info.value.reason
