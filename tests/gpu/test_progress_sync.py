"""Progress display on the GPU: reading the loss for display is a host sync only when a line is due.

Skipped without a GPU. On a GPU machine: ``python -m pytest -m gpu tests/gpu``.
"""

from __future__ import annotations

import logging

import pytest
import torch

from golf.logging.progress import Progress

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_steps_off_the_cadence_do_not_synchronise(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    loss = torch.ones((), device="cuda")
    bar = Progress("train", total=120, unit="step", every=50, first=3, tty=False)
    synced = []
    for step in range(1, 121):
        loss = loss * 0.99  # stays on the device
        due = bar.due(step)
        if due:
            synced.append(step)
            bar.update(step, loss=lambda t=loss: t.item())
        else:
            torch.cuda.set_sync_debug_mode("error")  # any host synchronisation raises here
            try:
                bar.update(step, loss=lambda t=loss: t.item())
            finally:
                torch.cuda.set_sync_debug_mode("default")
    assert synced == [1, 2, 3, 50, 100, 120]
    assert len([r for r in caplog.records if r.getMessage().startswith("train ")]) == 6
