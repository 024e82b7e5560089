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


def test_a_schema_field_the_preset_does_not_spell_is_overridable_as_typed():
    # the demo's optimizer preset does not spell optimizer.muon.ns_dtype: the registered schema does
    cfg = load_config(compose_config(["experiment=demo", "optimizer.muon.ns_dtype=bfloat16"]))
    assert cfg.optimizer.muon.ns_dtype == "bfloat16"
    with pytest.raises(ConfigError) as err:  # a value of the wrong type fails while composing, by name
        compose_config(["experiment=demo", "optimizer.muon.momentum=fast"])
    assert err.value.key == "optimizer.muon.momentum" and err.value.value == "fast"
    with pytest.raises(ConfigError) as err:  # an unknown key names the key and the value given
        compose_config(["experiment=demo", "optimizer.muon.bogus=1"])
    assert (err.value.key, err.value.value) == ("optimizer.muon.bogus", "1")


def test_a_field_below_a_sub_config_that_is_off_switches_it_on_with_its_defaults():
    # the demo has no QAT (quant.qat: null): setting one of its fields gives it the schema's defaults
    cfg = load_config(compose_config(["experiment=demo", "quant.qat.schedule=lr_below", "quant.qat.lr_threshold=0.5"]))
    assert cfg.quant.qat.schedule.name == "lr_below" and cfg.quant.qat.lr_threshold == 0.5
    assert cfg.quant.qat.start_fraction == 0.85  # the schema default of a field nobody set
    assert load_config(compose_config(["experiment=demo", "quant.qat=null"])).quant.qat is None
    assert load_config(compose_config(["experiment=pr344", "data=demo", "quant.qat=null"])).quant.qat is None
    # a dict for it too, and the overrides apply in order
    qat = load_config(compose_config(["experiment=demo", "quant.qat={schedule: lr_below, lr_threshold: 0.4}"])).quant.qat
    assert (qat.schedule.name, qat.lr_threshold, qat.start_fraction) == ("lr_below", 0.4, 0.85)
    assert load_config(compose_config(["experiment=demo", "quant.qat={lr_threshold: 0.4}", "quant.qat=null"])).quant.qat is None
    assert load_config(compose_config(["experiment=demo", "quant.qat=null", "+quant.qat={lr_threshold: 0.4}"])
                       ).quant.qat.lr_threshold == 0.4


def test_the_evaluate_entry_is_typed_too():
    from hydra import compose, initialize_config_dir

    from golf.config.store import composition_error

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=["run=somewhere", "eval=ttt", "eval.ttt.lora_rank=4"])
        assert cfg.eval.ttt.lora_rank == 4 and cfg.eval.budget_s == 600.0
        with pytest.raises(Exception) as err:
            compose(config_name="evaluate", overrides=["run=somewhere", "eval.batch_windows=many"])
    golf_error = composition_error(err.value)
    assert (golf_error.key, golf_error.value) == ("eval.batch_windows", "many")


@pytest.mark.parametrize("override,line", [
    ("optimizer.muon.ns_dtype=float8", "golf: invalid configuration: optimizer.muon.ns_dtype='float8': "
                                       "must be auto, bfloat16 or float32"),
    ("train.iterations=abc", "golf: invalid configuration: train.iterations='abc': Value 'abc' of type 'str' "
                             "could not be converted to Integer"),
])
def test_a_typed_override_on_the_command_line(tmp_path, override, line):
    run = [sys.executable, "-m", "golf.train", "experiment=demo", "dry_run=true", f"hydra.run.dir={tmp_path / 'r'}"]
    ok = subprocess.run([*run, "optimizer.muon.ns_dtype=bfloat16"], capture_output=True, text=True, timeout=120,
                        cwd=CONF_DIR.parent)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "ns_dtype: bfloat16" in ok.stdout  # the resolved config the dry run prints
    bad = subprocess.run([*run, override], capture_output=True, text=True, timeout=120, cwd=CONF_DIR.parent)
    assert bad.returncode == 2
    assert bad.stderr.strip() == line  # one line, no traceback
    assert not (tmp_path / "r").exists()
