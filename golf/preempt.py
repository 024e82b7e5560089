"""Stop requests from the scheduler or the keyboard: checkpoint, then hand over to whoever requeues the job.

Slurm warns a job before preemption or its time limit with a signal (``--signal=USR2@<s>``; ``scancel``
and preemption send TERM). By default Slurm signals every process of the job step, so with local
workers (``nproc_per_node > 1``) each worker receives it as well as the process that started them.
Ctrl-C (INT) is a stop request like TERM: the run checkpoints at the next step boundary and can be
resumed, instead of dying with a ``KeyboardInterrupt`` and losing its progress.

* In a process that trains, :class:`StopSignal` records the request; the loop notices it at the next
  step boundary (ranks agree through an all-reduce), writes a checkpoint, calls
  :meth:`StopSignal.after_checkpoint` and raises :class:`Preempted`. ``after_checkpoint`` runs the
  handler that was installed before training: submitit's requeue handler when the run is a plain
  submitit job; an outer :class:`StopSignal` (golf's launchers hold one around the whole Hydra job, or
  the sweep) is told through :meth:`StopSignal.record`, so that it knows of the stop and acts once the
  job has stopped. Python's own INT handler (``KeyboardInterrupt``) is never called on a handover.
* In the process that started local workers, the request must wait until the workers have written
  their checkpoint: requeueing at once would make Slurm kill the step mid-write. The outer
  :class:`StopSignal` only records the signal; the workers stop, and then the holder calls
  ``after_checkpoint``. torch's elastic agent takes over SIGTERM while workers run (it forwards TERM to
  them and waits for them to exit, then raises an exception carrying ``sigval``); :func:`stop_signal_of`
  reads the signal back from that exception.

submitit's requeue handler ends with ``sys.exit``; ``after_checkpoint`` turns that into
:class:`Preempted`, which derives from ``BaseException`` so that neither Hydra's ``run_job`` nor
submitit's job wrapper (both catch ``Exception``) mistake it for a result: a requeued job must end
without one, and its next start resumes from the checkpoint in the same run directory.
"""

from __future__ import annotations

import signal
import time


class Preempted(BaseException):
    """Raised after a checkpoint was written because the job was asked to stop (a requeue may follow)."""


def stop_signal_of(err: BaseException | None) -> int | None:
    """The signal number carried by an exception that a termination signal caused (torch elastic's
    ``SignalException``), else None."""
    sigval = getattr(err, "sigval", None)
    return int(sigval) if sigval is not None else None


class StopSignal:
    """Context manager: records SIGUSR2/SIGTERM/SIGINT instead of dying mid-step.

    ``immediate=True`` (the trainer's setup: data preparation, model build, warm-up): a stop cannot wait
    for a checkpoint there, so it ends the process at once. The signal is first handed to the previous
    handler (as after a checkpoint, so a scheduler's requeue still happens), then :class:`Preempted`
    is raised from the handler. :meth:`arm` switches to recording once the loop can checkpoint at its
    next step boundary. A signal repeated at least :attr:`REPEAT_S` seconds after a recorded one also
    stops at once: a step that never ends must not make the run unstoppable (a scheduler delivering
    the same signal to every process of a job step gives repeats within milliseconds, which are ignored).
    """

    SIGNALS = (signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)
    REPEAT_S = 2.0

    def __init__(self, immediate: bool = False):
        self.requested = False
        self.signum: int | None = None
        self.immediate = immediate
        self._first_at: float | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignal:
        for sig in self.SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: the scheduler's signal cannot reach us here
                pass
        return self

    def _handle(self, signum, frame) -> None:
        repeated = self._first_at is not None and time.monotonic() - self._first_at >= self.REPEAT_S
        self.record(signum)
        if self.immediate or repeated:
            self.after_checkpoint()  # hands the signal over (requeue); raises Preempted if that handler exits
            name = signal.Signals(signum).name
            raise Preempted(f"stopped by {name} " + ("again while a step did not end" if repeated else
                            "before training could checkpoint") + "; no checkpoint written by this stop")

    def arm(self) -> None:
        """The loop is running: from now on a stop is recorded and honoured at the next step boundary."""
        self.immediate = False

    def record(self, signum: int) -> None:
        """Note a stop request (from this handler, or one another handler saw first)."""
        self.requested = True
        self.signum = signum
        if self._first_at is None:
            self._first_at = time.monotonic()

    def after_checkpoint(self) -> None:
        """Give the signal to the handler that was there before (e.g. submitit's requeue).

        Raises :class:`Preempted` when that handler exits the process (submitit does, after requeueing).
        """
        previous = self._previous.get(self.signum) if self.signum is not None else None
        self.__exit__(None, None, None)
        outer = getattr(previous, "__self__", None)
        if isinstance(outer, StopSignal):  # an enclosing StopSignal learns of the stop; it acts later itself
            outer.record(self.signum)
        elif callable(previous) and previous is not signal.default_int_handler:
            try:
                previous(self.signum, None)
            except SystemExit as exit_:
                raise Preempted(f"stopped by signal {signal.Signals(self.signum).name}; "
                                "the scheduler's handler took over (requeue)") from exit_

    def release(self) -> None:
        """Training is over: restore the previous handlers (a stop now acts at once). A request that
        arrived after the loop's last check is handed to them, as after a checkpoint."""
        if self.requested and self._previous:
            self.after_checkpoint()
        else:
            self.__exit__(None, None, None)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
