"""Rows 18, 19 and 25: export settings that used to fail only after training are refused when the
config is validated (before any data is read), and a recipe whose late QAT counts in wall-clock
seconds runs at ``scale=cpu``, where there is no clock, switching at the same fraction of its steps."""

from __future__ import annotations

import json

import pytest
import torch

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.kernel.optim import lr_multiplier
from golf.quant.config import QATSchedule
from golf.quant.export import GPTQError
from tests.faults.lib import golf_cmd
from tests.helpers import CONF_DIR, TINY, compose_config

Q = ["quant=pr1493", "quant.passthrough_max_numel=1000"]


def refused(*overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(compose_config(list(overrides)))
    return info.value


# ---------------------------------------------------------------- row 18: calibration batch size


def test_calibration_batches_that_do_not_split_into_sequences_are_refused_at_validation():
    err = refused(*TINY, *Q, "quant.calibration.batch_tokens=100")
    assert (err.key, err.value) == ("quant.calibration.batch_tokens", 100)
    assert "multiple of seq_len x world_size = 64 x 1 = 64 tokens" in err.reason
    # two ranks need whole sequences on each: 192 = 3 x 64 does not split over 2 ranks
    err = refused(*TINY, *Q, "quant.calibration.batch_tokens=192", "nproc_per_node=2", "train.batch_tokens=1024")
    assert (err.key, err.value) == ("quant.calibration.batch_tokens", 192) and "64 x 2 = 128" in err.reason
    # a calibration sequence length of its own, with the training batch size
    err = refused(*TINY, *Q, "quant.calibration.seq_len=96")
    assert (err.key, err.value) == ("train.batch_tokens", 512) and "96 x 1 = 96" in err.reason
    load_config(compose_config([*TINY, *Q, "quant.calibration.batch_tokens=128"]))
    # a preset without GPTQ never calibrates: its calibration settings are not held against it
    load_config(compose_config([*TINY, "quant=int8", "+quant.calibration.batch_tokens=100"]))


# ---------------------------------------------------------------- row 19: GPTQ damping, unsolvable Hessians


def test_gptq_without_damping_is_refused_at_validation():
    err = refused(*TINY, *Q, "quant.schemes.int6_gptq.gptq.damp=0", "quant.calibration.batches=1",
                  "quant.calibration.batch_tokens=64")
    assert (err.key, err.value) == ("quant.schemes.int6_gptq.gptq.damp", 0.0)
    assert "(0, 1]" in err.reason and "singular" in err.reason


def test_a_gptq_failure_at_the_export_is_one_line(tmp_path, capsys):
    from golf.entry import entry_errors

    with pytest.raises(SystemExit) as info, entry_errors("golf", lambda: [tmp_path]):
        raise GPTQError("the damped Hessian is not positive definite (leading minor 3); raise gptq.damp")
    assert info.value.code == 1
    assert capsys.readouterr().err.strip() == ("golf: GPTQError: the damped Hessian is not positive definite (leading "
                                               f"minor 3); raise gptq.damp (traceback in {tmp_path / 'error.txt'})")


@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_non_finite_hessian_names_the_tensor_and_is_not_a_damping_problem(poison):
    from golf.model import build_model
    from golf.quant import export_state_dict
    from golf.quant.calibrate import gptq_tensor_names

    cfg = load_config(compose_config([*TINY, *Q]))
    model = build_model(cfg.arch)
    names = gptq_tensor_names(model, cfg.quant)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    hessians = {n: torch.eye(state[n].shape[1]) for n in names}
    hessians[names[0]][2, 2] = poison  # e.g. an activation that overflowed during calibration
    with pytest.raises(GPTQError) as info:
        export_state_dict(state, cfg.quant, model.param_roles, hessians)
    message = str(info.value)
    assert names[0] in message and "finite" in message and "damp" not in message


# ---------------------------------------------------------------- row 25: a clock fraction without a clock


def test_every_experiment_composes_at_cpu_scale():
    experiments = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
    assert len(experiments) >= 11
    for experiment in experiments:
        demo = "data=demo_sp8192" if compose_config([f"experiment={experiment}"]).arch.vocab_size == 8192 else "data=demo"
        load_config(compose_config([f"experiment={experiment}", "scale=cpu", demo]))


def test_pr344s_late_qat_switches_at_the_same_fraction_of_the_steps_without_a_clock():
    cfg = load_config(compose_config(["experiment=pr344", "scale=cpu", "data=demo"]))
    assert cfg.train.max_wallclock_s is None and cfg.train.iterations == 200
    assert cfg.quant.qat.start_fraction == 0.85  # switch at step 170 = 0.85 x 200
    # scale=cpu's schedule: warmdown over the last 80 of 200 steps, lr_mul(s) = (200 - s) / 80 from step 120;
    # the multiplier first falls below lr_mul(169) = 31/80 at step 170 (30/80)
    assert cfg.quant.qat.schedule is QATSchedule.lr_below and cfg.quant.qat.lr_threshold == 31 / 80
    from golf.model import build_model
    from golf.quant.qat import apply_qat

    with torch.device("meta"):
        model = build_model(cfg.arch)
    qat = apply_qat(model, cfg.quant.qat)
    switched = [step for step in range(200)
                if qat.update(step, 0.0, lr_multiplier(cfg.optimizer.schedule, step, 0.0, 200, None), None)]
    assert switched == [170]
    # with a clock the recipe keeps its wall-clock switch
    timed = load_config(compose_config(["experiment=pr344", "scale=cpu", "data=demo", "train.max_wallclock_s=60"]))
    assert timed.quant.qat.schedule is QATSchedule.wallclock_fraction


def test_a_step_fraction_the_schedule_cannot_mark_is_refused():
    # 1000 steps, warmdown over the last 80: step 850 has lr_mul 1, like every step before it
    err = refused("experiment=pr344", "scale=cpu", "data=demo", "train.iterations=1000")
    assert (err.key, err.value) == ("quant.qat.schedule", "wallclock_fraction")
    assert "step 850 of 1000" in err.reason and "train.max_wallclock_s" in err.reason
    ok = load_config(compose_config(["experiment=pr344", "scale=cpu", "data=demo", "quant.qat.start_fraction=0"]))
    assert ok.quant.qat.schedule is QATSchedule.always


@pytest.mark.slow
def test_pr344_trains_at_cpu_scale_with_its_qat_switch_on_step(tmp_path):
    run_dir = tmp_path / "run"
    # the recipe's techniques at a width and depth that train in seconds; 20 steps, warmdown over the last 10
    out = golf_cmd("experiment=pr344", "scale=cpu", "data=demo", "logger=none", "arch.num_layers=3",
                   "arch.model_dim=64", "arch.num_heads=2", "arch.num_kv_heads=1", "train.iterations=20",
                   "optimizer.schedule.warmdown_iters=10", "train.batch_tokens=512", "train.seq_len=64",
                   "train.val_every=0", "train.log_every=1", "eval.max_tokens=2048", "eval.prequant=false",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    on = [r["step"] for r in records if r.get("event") == "train" and r.get("qat_active")]
    # switch at step index 17 (17 / 20 >= 0.85): the record after that step (step 18) is the first with QAT on
    assert on[0] == 18 and on == list(range(18, 21))
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
