"""Files that appear whole or not at all, the run directory's lock, and removing the directory (and
the folders made for it) of a run refused before it started.

:func:`write_atomic` writes into a temporary file next to the target and renames it over the target
only once every byte is written, so a crash or a full disk never leaves a truncated artifact, shard or
summary under its final name; on failure the temporary file is removed (freeing the space it took, so
the run can still record why it failed) and the ``OSError`` is raised unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from pathlib import Path


def write_atomic(path: str | os.PathLike, *chunks: bytes | str, mode: int = 0o644) -> Path:
    """Write ``chunks`` (bytes, or str as UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:200]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk.encode("utf-8") if isinstance(chunk, str) else chunk)
        os.chmod(tmp, mode)  # mkstemp creates 0600; these are ordinary readable files
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # a failed write names no file by itself
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


LOCK_NAME = ".lock"


class RunDirBusy(RuntimeError):
    """Another live process holds the run directory (two runs would interleave their records)."""


@contextlib.contextmanager
def run_dir_lock(run_dir: str | os.PathLike):
    """Hold an exclusive lock on ``<run_dir>/.lock`` for the block; :class:`RunDirBusy` at once when
    another process holds it. The lock is the kernel's (``flock``): it ends with its process, so a
    killed or requeued run never leaves a stale lock behind."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    f = open(run_dir / LOCK_NAME, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise RunDirBusy(f"{run_dir} is in use by another run (pid {holder}); "
                             "wait for it to end or choose another run directory") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


_MADE_FOR: dict[Path, Path] = {}  # a directory about to be made -> the top-most folder made along with it


def note_new_dir(path: str | os.PathLike) -> Path | None:
    """Before ``path`` is created (with its parents): remember the top-most of them that does not exist
    yet, so that :func:`discard_if_unused` also removes the folders made only for it (``runs/<date>/``
    of a refused run). Returns that folder (None when ``path`` exists already)."""
    path = Path(os.path.abspath(path))
    missing = [p for p in (path, *path.parents) if not p.exists()]
    if not missing:
        return None
    _MADE_FOR[path] = missing[-1]
    return missing[-1]


def discard_if_unused(run_dir: str | os.PathLike | None, own: tuple[str, ...] = (".hydra", LOCK_NAME)) -> bool:
    """Remove a run directory in which nothing but the entry's own bookkeeping was written (Hydra's
    ``.hydra/`` and job log, the lock): a run refused before it started leaves no directory behind,
    nor the folders made for it (:func:`note_new_dir`) once they are empty. A directory holding
    anything else (an earlier run's records, a checkpoint) is left untouched."""
    if run_dir is None or not Path(run_dir).is_dir():
        return False
    run_dir = Path(run_dir)
    entries = list(run_dir.iterdir())
    if any(e.name not in own and not (e.is_file() and e.suffix == ".log") for e in entries):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir = Path(os.path.abspath(run_dir))
    top = _MADE_FOR.pop(run_dir, None)
    if top is not None and top != run_dir:
        for parent in run_dir.parents:
            try:
                parent.rmdir()  # only while empty: another run's folder stops it
            except OSError:
                break
            if parent == top:
                break
    return True
