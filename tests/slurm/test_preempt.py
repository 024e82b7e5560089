"""golf.preempt: a stop signal is recorded, handed to the previous handler after the checkpoint, and a
handler that exits the process (submitit's, after requeueing) becomes Preempted, which Hydra and
submitit let through because it is not an Exception."""

import os
import signal

import pytest

from golf.preempt import Preempted, StopSignal, stop_signal_of


def test_signal_is_recorded_not_fatal():
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGUSR2)
        assert stop.requested and stop.signum == signal.SIGUSR2
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL


def test_after_checkpoint_hands_the_signal_to_the_previous_handler():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with StopSignal() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []  # held back until the checkpoint exists
            stop.after_checkpoint()
            assert seen == [signal.SIGTERM]
            assert signal.getsignal(signal.SIGTERM) is not stop._handle  # restored before handing over
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_exiting_handler_becomes_preempted():
    def requeue_and_exit(signum, frame):
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR2, requeue_and_exit)
    try:
        with StopSignal() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            with pytest.raises(Preempted) as info:
                stop.after_checkpoint()
        assert isinstance(info.value.__cause__, SystemExit)
        assert not isinstance(info.value, Exception)  # passes `except Exception` in Hydra and submitit
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_nested_stop_signals_hand_over_outward():
    """The launcher's outer StopSignal holds the request until the inner (training) one has stopped."""
    with StopSignal() as outer:
        with StopSignal() as inner:
            os.kill(os.getpid(), signal.SIGUSR2)
            assert inner.requested and not outer.requested
            inner.after_checkpoint()
        assert outer.requested and outer.signum == signal.SIGUSR2


def test_stop_signal_of_reads_elastic_signal_exceptions():
    from torch.distributed.elastic.multiprocessing.api import SignalException

    assert stop_signal_of(SignalException("got TERM", sigval=signal.SIGTERM)) == signal.SIGTERM
    assert stop_signal_of(RuntimeError("boom")) is None
    assert stop_signal_of(None) is None
