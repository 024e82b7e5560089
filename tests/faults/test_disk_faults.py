"""Row 11: a full disk during export. The artifact is written atomically (temporary file, then
rename): no truncated model.golf is left, and the run ends `failed` with the OSError."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from golf.files import write_atomic
from tests.faults.lib import PROJECT_ROOT, last_line
from tests.helpers import TINY


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.golf"
    target.write_bytes(b"previous")
    too_long = tmp_path / ("x" * 300)  # a real OSError from the file system: name too long
    with pytest.raises(OSError) as info:
        write_atomic(too_long, b"data")
    assert info.value.errno == errno.ENAMETOOLONG
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "sub").write_text("a file, not a directory")
    with pytest.raises(OSError):
        write_atomic(ro / "sub" / "model.golf", b"data")  # ENOTDIR: the parent is a file
    write_atomic(target, b"new", b"er")
    assert target.read_bytes() == b"newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.golf", "ro"]


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.slow
def test_disk_full_during_export(tmp_path):
    """The run directory is a 160 kB tmpfs in a private mount namespace (nothing outside this test
    sees it): the records and submission.py (~60 kB) fit, the ~90 kB artifact does not."""
    if not _can_mount_tmpfs():
        pytest.skip("needs root and unshare to mount a private tmpfs")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    out_dir = tmp_path / "copy"  # what the run left, copied out before the namespace goes away
    args = " ".join(shlex.quote(a) for a in [*TINY, f"hydra.run.dir={mnt / 'run'}"])
    script = (f"mount -t tmpfs -o size=160k tmpfs {mnt} && cd {tmp_path} && "
              f"{sys.executable} -m golf.train {args}; rc=$?; cp -a {mnt / 'run'} {out_dir}; exit $rc")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    line = last_line(proc.stderr)
    assert line.startswith("golf: OSError: [Errno 28] No space left on device: ") and "traceback in" in line
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "No space left on device" in summary["error"]
    assert "Traceback" in (out_dir / "error.txt").read_text()
    assert not (out_dir / "model.golf").exists()  # no truncated artifact
    assert not [p for p in out_dir.iterdir() if p.name.endswith(".tmp")]
