"""Progress display: the cadence of plain lines, lazy fields, the tqdm bar on a terminal, the last line."""

from __future__ import annotations

import logging
import re

import pytest

from golf.logging.progress import Progress, final_line, format_seconds, stage_progress


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "golf"]


def positions(caplog, name: str) -> list[int]:
    return [int(m.group(1)) for line in lines(caplog) if (m := re.match(rf"{name} (\d+)/", line))]


def test_plain_lines_follow_the_cadence_with_first_steps_and_the_last(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    bar = Progress("train", total=23, unit="step", every=5, first=3, tty=False)
    for step in range(1, 24):
        bar.update(step, loss=0.5)
    bar.close()
    assert positions(caplog, "train") == [1, 2, 3, 5, 10, 15, 20, 23]
    assert lines(caplog)[3].startswith("train 5/23 steps | loss 0.5 | left ")


def test_numbers_are_formatted_one_way_whatever_their_size(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    bar = Progress("train", total=3, unit="step", first=3, tty=False, eta=False)
    bar.update(1, **{"ms/step": 929.4, "tok/s": 52428, "loss": 4.123456})
    bar.update(2, **{"ms/step": 1575.3, "tok/s": 1234567, "loss": 0.0})
    bar.update(3, **{"ms/step": 12000.0, "lr": 1.5e-05, "loss": -0.00004})
    assert lines(caplog) == ["train 1/3 steps | ms/step 929.4 | tok/s 52,428 | loss 4.1235",
                             "train 2/3 steps | ms/step 1,575.3 | tok/s 1,234,567 | loss 0",
                             "train 3/3 steps | ms/step 12,000 | lr 1.5e-05 | loss -4e-05"]


def test_callable_fields_run_only_when_a_line_is_due(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    calls = []

    def loss():
        calls.append(1)  # stands for loss.item(), a host sync on GPU
        return 1.25

    bar = Progress("train", total=100, every=50, first=2, tty=False)
    for step in range(1, 101):
        bar.update(step, loss=loss)
    assert len(calls) == 4  # steps 1, 2, 50, 100


def test_updates_that_jump_past_a_multiple_still_print_it(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    bar = Progress("eval sliding", total=100, unit="window", every=10, first=1, tty=False)
    for done in range(7, 101, 7):  # batches of 7 windows
        bar.update(done, running_bpb=1.0)
    bar.update(100)
    assert positions(caplog, "eval sliding") == [7, 14, 21, 35, 42, 56, 63, 70, 84, 91, 100]


def test_due_is_rank_independent_and_a_disabled_bar_is_silent(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    main, other = (Progress("train", total=10, every=4, first=1, enabled=e, tty=False) for e in (True, False))
    for step in range(1, 11):
        assert main.due(step) == other.due(step)
        main.update(step)
        assert other.update(step, loss=lambda: pytest.fail("a disabled bar evaluated a field")) is False
    assert positions(caplog, "train") == [1, 4, 8, 10]


def test_resumed_progress_shows_its_first_steps_again(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    bar = Progress("train", total=1000, every=100, first=2, start=450, tty=False)
    for step in range(451, 502):
        bar.update(step)
    assert positions(caplog, "train") == [451, 452, 500]


def test_terminal_mode_draws_a_tqdm_bar(capsys, caplog):
    caplog.set_level(logging.INFO, logger="golf")
    with Progress("train", total=4, unit="step", every=2, tty=True) as bar:
        for step in range(1, 5):
            bar.update(step, loss=2.0)
    err = capsys.readouterr().err
    assert "train" in err and "4/4" in err and "loss 2 " in err  # the bar and its postfix
    assert positions(caplog, "train") == [1, 2, 4]  # the lines still reach the run log


def test_stage_progress_lines(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    done = stage_progress("export", ["quantize", "pack", "compress"], tty=False)
    done("quantize", tensors=3)
    done("pack", bytes=1234)
    done("compress", bytes=1000, codec="zstd-22")
    got = lines(caplog)
    assert [line.split(" | ")[:2] for line in got] == [
        ["export 1/3 stages", "stage quantize done"], ["export 2/3 stages", "stage pack done"],
        ["export 3/3 stages", "stage compress done"]]
    assert "tensors 3" in got[0] and "bytes 1,234" in got[1] and "codec zstd-22" in got[2]


def test_the_last_line_names_the_run_dir_and_the_score(tmp_path):
    ok = final_line(tmp_path, {"status": "completed", "val_bpb": 1.2345678, "artifact_bytes": 15_000_000})
    assert ok == f"golf: run completed: val_bpb 1.234568, artifact 15,000,000 bytes; run dir {tmp_path}"
    bad = final_line(tmp_path, {"status": "failed", "error": "FloatingPointError: train loss is nan"})
    assert bad == f"golf: run failed: FloatingPointError: train loss is nan; run dir {tmp_path}"
    assert "no run dir" in final_line(tmp_path, {"estimated_artifact_bytes": 10})
    assert [format_seconds(s) for s in (5, 185, 3720)] == ["5s", "3m05s", "1h02m"]
