"""Row 2: a plain ``-m`` sweep (no hydra/launcher chosen) validates every point before any runs."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from tests.faults.lib import golf_cmd
from tests.helpers import CONF_DIR, TINY


def test_the_default_launcher_is_the_checked_one():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=TINY, return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.golf_launcher.launcher.GolfBasicLauncher"


@pytest.mark.slow
def test_plain_multirun_refuses_a_bad_point_before_any_runs(tmp_path):
    sweep = tmp_path / "sweep"
    # the bad point first: before, it failed and the good one never ran; now neither runs
    out = golf_cmd("-m", *[o for o in TINY if not o.startswith("arch.num_heads")], "arch.num_heads=3,2",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert out.returncode == 2
    assert "golf: SweepRefused: 1 of 2 sweep points were refused; nothing was submitted:" in out.stderr
    assert "ConfigError: arch.num_heads=3: must divide model_dim 32" in out.stderr
    assert "Traceback" not in out.stderr
    assert not sweep.exists()  # no point started, no sweep directory left
