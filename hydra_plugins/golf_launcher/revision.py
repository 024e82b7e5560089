"""The job runs the code that was checked at submission, or refuses to start.

A queued or requeued job imports golf and composes its config from the checkout when it starts, which
may be hours after submission. The launcher records a fingerprint (SHA-256 of every source and config
file that shapes a run) when it submits; each job start compares it with the checkout and fails with
the list of changed files instead of silently running other code. The run directory's
``provenance.yaml`` records the git revision and the Slurm job id.
"""

import hashlib
from pathlib import Path

# files that decide what a job computes, relative to the project root
PATTERNS = ("golf/**/*.py", "conf/**/*.yaml", "hydra_plugins/golf_launcher/*.py")


class CodeChanged(RuntimeError):
    """The checkout differs from what was submitted."""


def project_root() -> Path:
    import golf

    return Path(golf.__file__).resolve().parent.parent


def fingerprint(root: Path) -> dict[str, str]:
    """{relative path: sha256} of the files in :data:`PATTERNS`."""
    files = sorted({p for pattern in PATTERNS for p in root.glob(pattern) if p.is_file()})
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def check_unchanged(submitted: dict[str, str], root: Path) -> None:
    now = fingerprint(root)
    changed = sorted(k for k in submitted.keys() | now.keys() if submitted.get(k) != now.get(k))
    if changed:
        shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        raise CodeChanged(f"{root} changed since this job was submitted ({shown}); restore the submitted "
                          "code or submit again")
