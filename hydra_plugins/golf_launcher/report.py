"""Failures stay visible: in the run directory, in Slurm's job state and in the launcher's exit status.

Hydra's ``run_job`` catches a task's exception and returns it, so without help a failed Slurm job ends
COMPLETED with exit code 0 (launch.md §3.2, hydra issue 1928). golf's launcher therefore

* inside the job (:func:`record_failure`): makes the run directory say so (``error.txt`` and
  ``summary.json`` with ``status: failed``; the trainer writes both for errors while training, this
  also covers errors before the trainer starts and workers that died without a word), then re-raises,
  so Slurm shows the job FAILED and the traceback lands in the job's ``.err`` log;
* in the launcher (:func:`sweep_report`): waits for every job, prints one line per sweep point
  (status, val_bpb, artifact bytes, run directory) and the list of failed points; the sweep then
  exits non-zero through :class:`SweepFailed` while the other points have finished normally.
  A sweep stopped by a signal (the local launcher) lists its points as completed, failed, stopped
  (checkpointed where training had begun) or not started.
"""


import json
from dataclasses import dataclass
from pathlib import Path


class SweepFailed(RuntimeError):
    """Some sweep points failed (the others completed); the message lists the failed ones."""


class JobFailed(RuntimeError):
    """Raised inside a job whose task failed, so that the scheduler records the job as failed."""


@dataclass
class PointResult:
    label: str
    run_dir: str
    ok: bool
    error: str = ""  # last line of the job's traceback
    log: str = ""  # the job's stderr log
    state: str = ""  # "" = completed / failed by ``ok``; or "stopped", "not started" (a stopped sweep)


def record_failure(run_dir: Path, error_text: str) -> None:
    """Append the error to ``error.txt`` and mark ``summary.json`` failed (creating either if missing)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "error.txt", "a", encoding="utf-8") as f:
        f.write(("\n--- job error ---\n" if f.tell() else "") + error_text)
    summary_path = run_dir / "summary.json"
    summary = read_summary(run_dir)
    if summary.get("status") != "failed":
        lines = error_text.strip().splitlines()
        summary.update(status="failed", error=summary.get("error") or (lines[-1] if lines else "unknown error"))
        tmp = summary_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(summary_path)


def read_summary(run_dir: Path | str) -> dict:
    path = Path(run_dir) / "summary.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else "unknown error"


def error_line(err: BaseException) -> str:
    """The exception line of a job's error: submitit puts the job's traceback between dashed lines."""
    lines = [line.rstrip() for line in str(err).splitlines()]
    dashes = [i for i, line in enumerate(lines) if line and set(line) == {"-"}]
    if len(dashes) >= 2:
        block = [line for line in lines[dashes[0] + 1:dashes[1]] if line.strip()]
        if block:
            return block[-1].strip()
    return first_line(str(err))


def _describe(result: PointResult) -> str:
    summary = read_summary(result.run_dir)
    if result.state:
        note = f"  {result.error}" if result.error else ""
        where = f"  {result.run_dir}" if result.state != "not started" else ""
        return f"  {result.label:<40} {result.state:<10}{note}{where}"
    if result.ok:
        bpb = summary.get("val_bpb")
        size = summary.get("artifact_bytes")
        parts = [f"val_bpb={bpb:.4f}" if isinstance(bpb, (int, float)) else "val_bpb=?"]
        if isinstance(size, int):
            parts.append(f"artifact_bytes={size:,}")
        return f"  {result.label:<40} {summary.get('status', 'completed'):<10} {' '.join(parts)}  {result.run_dir}"
    return f"  {result.label:<40} {'FAILED':<10} {result.error}\n      run dir: {result.run_dir}" + (
        f"\n      job log: {result.log}" if result.log else "")


def sweep_report(results: list[PointResult]) -> tuple[str, str | None]:
    """(the per-point table, the failure list or None when no point failed)."""
    failed = [r for r in results if not r.ok and not r.state]
    ok = sum(r.ok for r in results)
    others = {state: sum(r.state == state for r in results) for state in ("stopped", "not started")}
    head = f"golf sweep: {len(results)} points, {ok} completed, {len(failed)} failed" + "".join(
        f", {n} {state}" for state, n in others.items() if n)
    table = "\n".join([head, *(_describe(r) for r in results)])
    if not failed:
        return table, None
    failures = f"{len(failed)} of {len(results)} sweep points failed:\n" + "\n".join(_describe(r) for r in failed)
    return table, failures
