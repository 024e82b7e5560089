"""The calibration stage (golf.kernel.gptq, golf.quant.calibrate): Hessians by forward hooks, sources,
config checks, ranks."""

from __future__ import annotations

import logging
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from golf.config.errors import ConfigError
from golf.config.validate import load_config
from golf.dist import DistInfo
from golf.kernel.gptq import collect_hessians, generated_batches, hessian_sites
from golf.model import build_model
from golf.quant.calibrate import calibrate, check_calibration, gptq_tensor_names
from tests.helpers import TINY, compose_config

SMALL = [*TINY, "quant=pr1493", "quant.passthrough_max_numel=256", "quant.calibration.batches=3"]


class TwoLinear(nn.Module):
    """ids → embedding → fc → relu → fc applied twice (a looped layer): hand-checkable inputs."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.fc = nn.Linear(4, 6, bias=False)
        self.out = nn.Linear(6, 6, bias=False)

    def forward(self, ids):
        h = torch.relu(self.fc(self.emb(ids)))
        return self.out(self.out(h))


def test_collected_hessian_is_the_sum_of_xtx():
    torch.manual_seed(0)
    model = TwoLinear()
    batches = [torch.randint(0, 10, (2, 5)) for _ in range(3)]
    sites = hessian_sites(model, ["fc.weight", "out.weight"])
    ticks = []
    hessians, count = collect_hessians(model, sites, iter(batches), lambda *a: ticks.append(a))
    assert count == 3 and ticks == [(1, 10), (2, 20), (3, 30)]
    x = torch.cat([model.emb(b).reshape(-1, 4) for b in batches]).detach()   # fc's inputs [30, 4]
    assert torch.allclose(hessians["fc.weight"], x.T @ x, rtol=1e-5, atol=1e-6)
    h1 = torch.relu(x @ model.fc.weight.T).detach()                           # out's first inputs
    h2 = (h1 @ model.out.weight.T).detach()                                   # ... and its second
    assert torch.allclose(hessians["out.weight"], h1.T @ h1 + h2.T @ h2, rtol=1e-5, atol=1e-6)
    assert model.training  # the model's mode is restored


def _tiny(overrides=()):
    cfg = load_config(compose_config([*SMALL, *overrides]))
    torch.manual_seed(0)
    return cfg, build_model(cfg.arch)


def test_tied_embedding_hessian_comes_from_the_final_norm():
    cfg, model = _tiny()
    names = gptq_tensor_names(model, cfg.quant)
    assert "tok_emb.weight" in names and any(".mlp." in n for n in names)
    sites = hessian_sites(model, names)
    assert sites["tok_emb.weight"] == (model.final_norm, True)  # its output (a Linear: its input, False)
    ids = torch.randint(0, cfg.arch.vocab_size, (2, 16))
    hessians, _ = collect_hessians(model, sites, iter([ids]))
    tokens = ids.numel()
    # every final-norm output row has mean square 1, so trace(H) = Σ‖x‖² = tokens · d
    assert float(torch.trace(hessians["tok_emb.weight"])) == pytest.approx(tokens * cfg.arch.model_dim, rel=1e-4)


def test_generated_source_samples_from_the_model():
    cfg, model = _tiny()
    cal = cfg.quant.calibration
    a = list(generated_batches(model, 2, 3, 7, cal))
    b = list(generated_batches(model, 2, 3, 7, cal))
    assert [x.shape for x in a] == [torch.Size([3, 7])] * 2
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))  # seeded
    assert all(bool((x[:, 0] == cal.start_token).all()) for x in a)
    assert int(torch.cat(a).max()) < cfg.arch.vocab_size


def test_calibrate_from_generated_sequences_needs_no_data(caplog):
    caplog.set_level(logging.INFO, logger="golf")
    cfg, model = _tiny(["quant.calibration.source=generated", "quant.calibration.batch_tokens=64",
                        "quant.calibration.seq_len=16"])
    one = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    cal = calibrate(model, cfg.quant, one, train_loader=None, batch_tokens=cfg.train.batch_tokens,
                    seq_len=cfg.train.seq_len)
    assert cal.batches == 3 and cal.tokens == 3 * 64
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("calibrate ")]
    assert [s.split(" | ")[0] for s in said] == ["calibrate 1/3 batches", "calibrate 2/3 batches", "calibrate 3/3 batches"]
    assert set(cal.hessians) == set(gptq_tensor_names(model, cfg.quant))
    assert all(torch.isfinite(h).all() and torch.allclose(h, h.T) for h in cal.hessians.values())


def test_no_gptq_scheme_means_no_calibration_pass():
    """With quant.calibration set but no scheme using GPTQ, the kernel runs nothing and returns None."""
    from golf.kernel.gptq import calibrate as kernel_calibrate
    from golf.quant.routing import schemes_table

    cfg, model = _tiny(["quant.schemes.int6_gptq.gptq=null", "quant.schemes.int8_emb_gptq.gptq=null"])
    one = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    never = lambda: pytest.fail("the training stream was opened")  # noqa: E731
    assert kernel_calibrate(model, cfg.quant, cfg.train, one, schemes_table(model, cfg.quant), never) is None
    cfg, model = _tiny()
    assert set(kernel_calibrate(model, cfg.quant, cfg.train, one, schemes_table(model, cfg.quant), lambda: loader(cfg),
                                 tick=None)) == set(gptq_tensor_names(model, cfg.quant))


def loader(cfg):
    from golf.data import prepare_data
    from golf.kernel.data import DistributedTokenLoader

    return DistributedTokenLoader(prepare_data(cfg.data).train_pattern, 0, 1)


@pytest.mark.parametrize(("overrides", "key"), [
    (["quant.calibration.source=val"], "quant.calibration.source"),
    (["quant.calibration.source=validation"], "quant.calibration.source"),
    (["quant.calibration=null"], "quant.calibration"),
    (["quant.calibration.batches=0"], "quant.calibration.batches"),
    (["quant.schemes.int6_gptq.clip_sigmas=0"], "quant.schemes.int6_gptq.clip_sigmas"),
    (["quant.byte_shuffle=3"], "quant.byte_shuffle"),
    (["train.reserve_s=700", "train.max_wallclock_s=600"], "train.reserve_s"),
])
def test_bad_calibration_config_is_one_config_error(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_config(compose_config([*SMALL, *overrides]))
    assert err.value.key == key
    if "val" in overrides[0]:
        assert "validation data is never allowed" in str(err.value)


def test_a_tensor_no_layer_feeds_cannot_be_calibrated():
    cfg, model = _tiny(["arch.tie_embeddings=false"])  # tok_emb is then a lookup table only
    with pytest.raises(ConfigError, match="tok_emb.weight"):
        check_calibration(model, cfg.quant)
    cfg, model = _tiny(["quant.calibration.source=generated", "quant.calibration.start_token=5000"])
    with pytest.raises(ConfigError, match="start_token"):
        check_calibration(model, cfg.quant)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, reduce, out):
    import torch.distributed as tdist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", rank=rank, world_size=world)
    cfg, model = _tiny(["quant.calibration.source=generated", "quant.calibration.batch_tokens=64",
                        "quant.calibration.seq_len=8", f"quant.calibration.reduce={reduce}"])
    info = DistInfo(rank=rank, local_rank=rank, world_size=world, device=torch.device("cpu"))
    cal = calibrate(model, cfg.quant, info, train_loader=None, batch_tokens=64, seq_len=8)
    out[rank] = None if cal is None else (cal.batches, {k: v.clone() for k, v in cal.hessians.items()})
    tdist.destroy_process_group()


@pytest.mark.dist
@pytest.mark.slow  # two process groups of two ranks each
def test_two_ranks_all_reduce_or_keep_their_own():
    """all_reduce: every rank holds (H_rank0 + H_rank1)/(total batches); local: rank 0 keeps its own."""
    cfg, model = _tiny(["quant.calibration.source=generated", "quant.calibration.batch_tokens=64",
                        "quant.calibration.seq_len=8"])
    sites = hessian_sites(model, gptq_tensor_names(model, cfg.quant))
    per_rank = [collect_hessians(model, sites, generated_batches(model, 3, 4, 8, cfg.quant.calibration, rank))[0]
                for rank in (0, 1)]
    manager = mp.Manager()
    summed, local = manager.dict(), manager.dict()
    mp.spawn(_rank, args=(2, _free_port(), "all_reduce", summed), nprocs=2)
    mp.spawn(_rank, args=(2, _free_port(), "local", local), nprocs=2)
    for rank in (0, 1):
        batches, hs = summed[rank]
        assert batches == 6
        for name, h in hs.items():
            assert torch.allclose(h, (per_rank[0][name] + per_rank[1][name]) / 6, rtol=1e-4, atol=1e-5), name
    assert local[1] is None
    batches, hs = local[0]
    assert batches == 3
    for name, h in hs.items():
        assert torch.allclose(h, per_rank[0][name] / 3, rtol=1e-4, atol=1e-5), name


def _bf16():
    return torch.autocast("cpu", torch.bfloat16)


def test_hessians_are_collected_in_the_runs_autocast():
    """Under the run's bf16 autocast the hooked inputs are the bf16 activations (the record's bf16 stream,
    frontier spec §5.1), summed as fp32 XᵀX; they differ from the fp32 forward's Hessians."""
    torch.manual_seed(0)
    model = TwoLinear()
    ids = torch.randint(0, 10, (3, 7))
    sites = hessian_sites(model, ["out.weight"])
    bf16, _ = collect_hessians(model, sites, iter([ids]), autocast=_bf16)
    fp32, _ = collect_hessians(model, sites, iter([ids]))
    with torch.no_grad(), _bf16():
        h1 = torch.relu(model.fc(model.emb(ids))).reshape(-1, 6)  # out's first input, bf16
        h2 = model.out(h1)                                          # ... and its second
    assert h1.dtype == h2.dtype == torch.bfloat16
    want = torch.zeros(6, 6)
    for x in (h1.float(), h2.float()):
        want.addmm_(x.T, x)
    assert torch.equal(bf16["out.weight"], want)
    assert not torch.allclose(bf16["out.weight"], fp32["out.weight"], rtol=1e-4, atol=0)


def test_the_kernel_calibration_passes_the_autocast_on():
    from golf.kernel.gptq import calibrate as kernel_calibrate
    from golf.quant.routing import schemes_table

    cfg, model = _tiny()
    one = DistInfo(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))
    table = schemes_table(model, cfg.quant)
    plain = kernel_calibrate(model, cfg.quant, cfg.train, one, table, lambda: loader(cfg))
    cast = kernel_calibrate(model, cfg.quant, cfg.train, one, table, lambda: loader(cfg), _bf16)
    stream = loader(cfg)
    direct, k = collect_hessians(model, hessian_sites(model, list(cast)),
                                 (stream.next_batch(cfg.train.batch_tokens, cfg.train.seq_len, 1)[0]
                                  for _ in range(3)), autocast=_bf16)
    assert k == cfg.quant.calibration.batches == 3
    assert all(torch.equal(cast[n], direct[n] / 3) for n in cast)
    assert any(not torch.equal(cast[n], plain[n]) for n in cast)


def test_calibration_device_is_checked():
    with pytest.raises(ConfigError, match="quant.calibration.device='gpu': must be model or cpu"):
        load_config(compose_config([*SMALL, "quant.calibration.device=gpu"]))
    assert load_config(compose_config(["experiment=pr1493"])).quant.calibration.device == "cpu"
    assert load_config(compose_config(["experiment=pr1493"])).tf32
