"""EMA and SWA against hand computation, the export choice and its fallbacks, and checkpointed state."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from golf.averaging import AveragingConfig, EmaConfig, SwaConfig, build_averager


class Tiny(nn.Module):
    """One fp32 weight, one bf16 weight (like tok_emb) and an integer buffer."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.emb = nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def set(self, value: float) -> None:
        with torch.no_grad():
            self.w.fill_(value)
            self.emb.fill_(value)
            self.count.fill_(int(value))


def run(cfg, values, lr_muls):
    """Start at values[0], then one update per later value (step = 1, 2, ...)."""
    model = Tiny()
    model.set(values[0])
    avg = build_averager(cfg, model)
    avg.start(model)
    for step, (v, lr_mul) in enumerate(zip(values[1:], lr_muls), start=1):
        model.set(v)
        avg.update(model, step, lr_mul)
    return model, avg


def test_ema_by_hand():
    # start 1; decay 0.5: after 2 -> 1.5; after 4 -> 2.75; after 8 -> 5.375
    cfg = AveragingConfig(ema=EmaConfig(decay=0.5), export="ema")
    model, avg = run(cfg, [1.0, 2.0, 4.0, 8.0], [1.0, 1.0, 1.0])
    state, source = avg.final_state_dict(model)
    assert source == "ema"
    torch.testing.assert_close(state["w"], torch.full((2,), 5.375))
    assert state["emb"].dtype == torch.bfloat16 and state["emb"].tolist() == [5.375, 5.375]
    assert state["count"].item() == 8  # integer buffers are not averaged
    assert model.w.tolist() == [8.0, 8.0]  # the model itself is untouched


def test_ema_decay_0997_three_steps():
    d = 0.997
    cfg = AveragingConfig(ema=EmaConfig(decay=d), export="ema")
    model, avg = run(cfg, [0.0, 1.0, 1.0, 1.0], [1.0] * 3)
    expected = 1 - d**3  # 0 -> (1-d) -> ... geometric
    assert avg.final_state_dict(model)[0]["w"][0].item() == pytest.approx(expected, rel=1e-5)


def test_swa_snapshots_every_k_steps_while_lr_mul_below_tau():
    # steps 1..6, every 2, tau 0.5: step 2 (lr 1.0) no; step 4 (0.4) yes; step 6 (0.2) yes; odd steps never
    cfg = AveragingConfig(swa=SwaConfig(every=2, lr_mul_below=0.5, min_snapshots=2), export="swa")
    model, avg = run(cfg, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.0, 1.0, 0.45, 0.4, 0.3, 0.2])
    assert avg.num_snapshots == 2
    state, source = avg.final_state_dict(model)
    assert source == "swa"
    torch.testing.assert_close(state["w"], torch.full((2,), (4.0 + 6.0) / 2))


def test_swa_of_ema_snapshots():
    # ema decay 0.5 from 0: values 4, 8 -> ema 2, 5; snapshots at steps 1 and 2 -> mean 3.5
    cfg = AveragingConfig(ema=EmaConfig(decay=0.5), swa=SwaConfig(every=1, lr_mul_below=1.0, source="ema",
                                                                    min_snapshots=1), export="swa")
    model, avg = run(cfg, [0.0, 4.0, 8.0], [0.5, 0.5])
    state, source = avg.final_state_dict(model)
    assert source == "swa_of_ema"
    torch.testing.assert_close(state["w"], torch.full((2,), 3.5))


def test_too_few_snapshots_fall_back_to_ema_then_raw():
    swa = SwaConfig(every=2, lr_mul_below=0.5, min_snapshots=2)
    with_ema = AveragingConfig(ema=EmaConfig(decay=0.5), swa=swa, export="swa")
    model, avg = run(with_ema, [0.0, 2.0, 4.0], [0.1, 0.1])  # one snapshot (step 2)
    state, source = avg.final_state_dict(model)
    assert (avg.num_snapshots, source) == (1, "ema")
    torch.testing.assert_close(state["w"], torch.full((2,), 2.5))  # 0 -> 1 -> 2.5
    model, avg = run(AveragingConfig(swa=swa, export="swa"), [0.0, 2.0, 4.0], [0.1, 0.1])
    state, source = avg.final_state_dict(model)
    assert source == "raw"
    torch.testing.assert_close(state["w"], torch.full((2,), 4.0))


def test_no_averaging_exports_raw_copies():
    model, avg = run(None, [0.0, 3.0], [1.0])
    state, source = avg.final_state_dict(model)
    assert source == "raw"
    assert state["w"].tolist() == [3.0, 3.0] and state["w"].data_ptr() != model.w.data_ptr()


def test_state_dict_round_trip_resumes_exactly():
    cfg = AveragingConfig(ema=EmaConfig(decay=0.9), swa=SwaConfig(every=1, lr_mul_below=1.0), export="swa")
    values, lr_muls = [0.0, 1.0, 2.0, 3.0, 4.0], [0.5] * 4
    model, straight = run(cfg, values, lr_muls)

    model2, first = run(cfg, values[:3], lr_muls[:2])
    saved = {k: ({n: t.clone() for n, t in v.items()} if isinstance(v, dict) else v)
             for k, v in first.state_dict().items()}
    resumed = build_averager(cfg, model2)  # a resumed run loads the state without start()
    resumed.load_state_dict(saved)
    for step, v in enumerate(values[3:], start=3):
        model2.set(v)
        resumed.update(model2, step, 0.5)
    assert resumed.num_snapshots == straight.num_snapshots == 4
    torch.testing.assert_close(resumed.state_dict()["ema"]["w"], straight.state_dict()["ema"]["w"])
    torch.testing.assert_close(resumed.final_state_dict(model2)[0]["w"], straight.final_state_dict(model)[0]["w"])


def test_a_wrapped_model_is_refused():
    with pytest.raises(ValueError, match="bare model"):
        build_averager(None, nn.parallel.DistributedDataParallel.__new__(nn.parallel.DistributedDataParallel))
