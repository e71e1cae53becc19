"""Data parallel: 2 CPU processes (gloo, localhost) follow 1 process on the concatenated batch.

Each rank runs learner.step on its half of the batch, the gradients are averaged by an
all-reduce, and every rank applies the same SGD step. The mean of two half-batch means is the
full-batch mean, so parameters agree up to float64 round-off: the tolerance is rtol = 1e-12
(a few hundred ulps; the sums are associated differently).
"""

from __future__ import annotations

import os

import torch
import torch.multiprocessing as mp

import eqprop
from eqprop.data import load_digits
from eqprop.train import Trainer, TrainerConfig, all_reduce_gradients, read_csv, seed_everything
from eqprop.train.distributed import DistributedContext

RTOL, ATOL = 1e-12, 1e-14  # float64 round-off of differently associated batch sums


def _setup(seed=0):
    seed_everything(seed)
    model = eqprop.models.HopfieldMLP([64, 16, 10]).double()
    solver = eqprop.solvers.FixedPoint(tol=None, max_steps=8, on_nonconvergence="ignore")
    learner = eqprop.learners.EP(0.5, variant="centered", solver=solver)
    return model, learner


def _data():
    splits = load_digits(limit_train=48, limit_test=20)
    x, y = splits.train.tensors
    return splits, x.double(), torch.nn.functional.one_hot(y, 10).double()


def _one_step(model, learner, x, y, ctx):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    learner.step(model, x, y)
    all_reduce_gradients(model, ctx)
    optimizer.step()
    return {k: v.clone() for k, v in model.state_dict().items()}


def _worker(rank: int, world: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # as the conftest fixture does in the parent: same init
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    # A file rendezvous in the test's own folder: no TCP port that another process could take.
    rendezvous = "file://" + os.path.join(out_dir, "rendezvous")
    torch.distributed.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=world)
    ctx = DistributedContext(rank=rank, world_size=world, local_rank=rank, backend="gloo")
    try:
        splits, x, y = _data()
        model, learner = _setup()
        params = _one_step(model, learner, x[rank:16:world], y[rank:16:world], ctx)  # this rank's half of 16 samples
        if rank == 0:
            torch.save(params, os.path.join(out_dir, "one_step.pt"))
        model, learner = _setup()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        config = TrainerConfig(epochs=1, batch_size=8, progress=False, tensorboard=False, plot=False)
        trainer = Trainer(model, learner, optimizer, splits.train, splits.test, os.path.join(out_dir, "ddp"), config, dist=ctx)
        result = trainer.fit()
        if rank == 0:
            torch.save({"params": model.state_dict(), "result": result}, os.path.join(out_dir, "loop.pt"))
        ctx.close()  # barrier, then leave: neither rank tears the group down under the other
    finally:
        if torch.distributed.is_initialized():  # a rank that failed before close()
            torch.distributed.destroy_process_group()


def test_two_processes_match_one_process_on_the_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    ctx = DistributedContext()

    # One optimizer step: rank halves x[0::2], x[1::2] vs the 16 samples at once.
    splits, x, y = _data()
    model, learner = _setup()
    single = _one_step(model, learner, x[:16], y[:16], ctx)
    parallel = torch.load(tmp_path / "one_step.pt")
    for name, value in single.items():
        torch.testing.assert_close(parallel[name], value, rtol=RTOL, atol=ATOL)
    assert any(not torch.equal(value, _setup()[0].state_dict()[name]) for name, value in single.items())  # it moved

    # A whole epoch of the loop: global batch 8 as 2 x 4 vs 1 x 8, same data order.
    model, learner = _setup()
    config = TrainerConfig(epochs=1, batch_size=8, progress=False, tensorboard=False, plot=False)
    trainer = Trainer(model, learner, torch.optim.SGD(model.parameters(), lr=0.1), splits.train, splits.test, tmp_path / "one", config)
    result = trainer.fit()
    loop = torch.load(tmp_path / "loop.pt", weights_only=False)
    for name, value in model.state_dict().items():
        torch.testing.assert_close(loop["params"][name], value, rtol=RTOL, atol=ATOL)
    assert loop["result"]["test_accuracy"] == result["test_accuracy"]
    ddp_losses = [float(r["loss"]) for r in read_csv(tmp_path / "ddp" / "steps.csv")]
    one_losses = [float(r["loss"]) for r in read_csv(tmp_path / "one" / "steps.csv")]
    assert len(ddp_losses) == len(one_losses) == 6
    torch.testing.assert_close(torch.tensor(ddp_losses), torch.tensor(one_losses), rtol=RTOL, atol=ATOL)


def test_unknown_backend_is_refused_even_in_one_process():
    import pytest

    from eqprop.errors import ConfigurationError
    from eqprop.train import init_distributed

    with pytest.raises(ConfigurationError, match="backend must be auto, gloo or nccl"):
        init_distributed("ncll")
