"""Every option of every config group composes and validates; bad values fail with the key named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from tests.helpers import CONF_DIR, compose_config, group_options

GROUPS = ["data", "arch", "optimizer", "quant", "averaging", "eval", "logger"]


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS for o in group_options(g)])
def test_every_group_option_validates(group, option):
    # data and arch options of other vocabularies (sp8192) validate with a model of the data's vocabulary
    cfg = load_config(compose_config(["data=demo", f"{group}={option}", "arch.vocab_size=${data.vocab_size}"]))
    assert cfg is not None


@pytest.mark.parametrize("experiment", group_options("experiment"))
def test_every_experiment_validates(experiment):
    cfg = load_config(compose_config([f"experiment={experiment}", "data=demo", "arch.vocab_size=${data.vocab_size}"]))
    assert cfg.seed == 1337


def test_default_config_is_the_official_baseline():
    cfg = load_config(compose_config(["data=demo"]))
    assert (cfg.arch.num_layers, cfg.arch.model_dim, cfg.arch.num_heads, cfg.arch.num_kv_heads) == (9, 512, 8, 4)
    assert (cfg.train.batch_tokens, cfg.train.seq_len, cfg.train.max_wallclock_s) == (524288, 1024, 600.0)


@pytest.mark.parametrize(
    "override,key",
    [
        ("+arch.bogus=1", "arch.bogus"),
        ("arch.num_layers=abc", "arch.num_layers"),
        ("arch.num_heads=7", "arch.num_heads"),
        ("arch.num_kv_heads=3", "arch.num_kv_heads"),
        ("train.batch_tokens=1000", "train.batch_tokens"),
        ("train.seq_len=0", "train.seq_len"),
        ("eval.kind=fancy", "eval.kind"),
        ("device=tpu", "device"),
        ("arch.vocab_size=2048", "arch.vocab_size"),
        ("train.max_wallclock_s=null", "quant.qat.schedule"),
    ],
)
def test_bad_values_name_the_key(override, key):
    base = ["data=demo", "quant=pr344"] if key == "quant.qat.schedule" else ["data=demo"]
    with pytest.raises(ConfigError) as err:
        load_config(compose_config([*base, override]))
    assert err.value.key == key, str(err.value)
    assert key in str(err.value)


def test_odd_head_dim_is_rejected_for_rope():
    # model_dim 72 / 8 heads = head dim 9: RoPE rotates pairs of dimensions
    with pytest.raises(ConfigError) as err:
        load_config(compose_config(["data=demo", "arch.model_dim=72"]))
    assert err.value.key.startswith("arch.")


def test_batch_tokens_must_divide_over_ranks():
    cfg = compose_config(["data=demo", "train.batch_tokens=3072", "train.seq_len=1024", "train.grad_accum_steps=1"])
    load_config(cfg, world_size=1)
    load_config(cfg, world_size=3)
    with pytest.raises(ConfigError, match="train.batch_tokens"):
        load_config(cfg, world_size=2)


def test_missing_data_path_is_named(tmp_path):
    from golf.data import prepare_data

    cfg = load_config(compose_config([f"data.root={tmp_path}"]))
    with pytest.raises(ConfigError) as err:
        prepare_data(cfg.data)
    assert err.value.key == "data.tokenizer_path"
    proc = subprocess.run(
        [sys.executable, "-m", "golf.train", f"data.root={tmp_path}", f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, timeout=120, cwd=CONF_DIR.parent,
    )
    assert proc.returncode == 2
    assert "data.tokenizer_path" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_reports_one_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "golf.train", "data=demo", "arch.num_heads=7", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120, cwd=CONF_DIR.parent,
    )
    assert proc.returncode == 2
    assert "arch.num_heads=7" in proc.stderr
    assert "Traceback" not in proc.stderr
