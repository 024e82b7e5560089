"""Shared pieces of the fault tests: the demo corpus copied into the official on-disk layout (so a
test can break one file of it), and the golf entry points run as real subprocesses (also with a
directory made read-only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from golf.config.validate import load_config
from golf.data import prepare_data
from tests.helpers import CONF_DIR, TINY, compose_config

PROJECT_ROOT = CONF_DIR.parent


def file_data(root: Path) -> list[str]:
    """Copy the (cached) demo corpus into ``root`` as files on disk; the overrides that train on it."""
    paths = prepare_data(load_config(compose_config(TINY)).data)
    shards = root / "shards"
    shards.mkdir(parents=True)
    for pattern in (paths.train_pattern, paths.val_pattern):
        for f in sorted(Path(pattern).parent.glob(Path(pattern).name)):
            shutil.copy(f, shards / f.name)
    shutil.copy(paths.tokenizer_path, root / "tok.model")
    return ["data.demo=null", f"++data.root={root}", "data.name=files", "data.tokenizer_path=tok.model",
            "data.train_pattern=shards/fineweb_train_*.bin", "data.val_pattern=shards/fineweb_val_*.bin"]


def golf_cmd(*args: str, module: str = "golf.train", cwd: Path | None = None, timeout: float = 300,
             env: dict | None = None, read_only_dir: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m <module> args`` in ``cwd``, as a user runs it (with ``read_only_dir`` read-only)."""
    full_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **(env or {})}
    command = [sys.executable, "-m", module, *args]
    if read_only_dir is not None:
        command = read_only(read_only_dir, command)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def read_only(directory: Path, command: list[str]) -> list[str]:
    """``command`` run with ``directory`` read-only: a read-only bind mount of it in a private mount
    namespace of its own (as root, whom file modes do not stop), else the directory's write bits
    cleared. Skips the test where neither is possible."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return command
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind '{directory}' '{directory}' && "
                            f"mount -o remount,ro,bind '{directory}' && ! touch '{directory}/.probe'"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        import pytest

        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.strip()[:200]}")
    mount = f"mount --bind '{directory}' '{directory}' && mount -o remount,ro,bind '{directory}' && exec \"$@\""
    return ["unshare", "-m", "sh", "-c", mount, "sh", *command]
