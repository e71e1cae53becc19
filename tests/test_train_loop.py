"""eqprop.train: the loop, exact resume after a kill, atomic checkpoints, metrics files."""

from __future__ import annotations

import math

import pytest
import torch

import eqprop
from eqprop.data import load_digits
from eqprop.train import CheckpointError, Trainer, TrainerConfig, load_checkpoint, read_csv, save_checkpoint, seed_everything
from eqprop.train import checkpoint as checkpoint_module


class Killed(RuntimeError):
    pass


def make_trainer(run_dir, seed=0, on_step=None, **options) -> Trainer:
    """A small float64 run: HopfieldMLP 64-16-10 on 64 digits, random-sign EP (a stateful learner)."""
    seed_everything(seed)
    splits = load_digits(limit_train=64, limit_test=32)
    model = eqprop.models.HopfieldMLP([64, 16, 10]).double()
    solver = eqprop.solvers.FixedPoint(tol=None, max_steps=5, on_nonconvergence="ignore")
    learner = eqprop.learners.EP(0.5, variant="random_sign", solver=solver, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)  # momentum: optimizer state matters
    config = TrainerConfig(**{"epochs": 2, "batch_size": 8, "progress": False, "tensorboard": False,
                              "plot": False, "seed": seed, **options})
    return Trainer(model, learner, optimizer, splits.train, splits.test, run_dir, config, on_step=on_step)


def step_losses(run_dir) -> list[str]:
    return [row["loss"] for row in read_csv(run_dir / "steps.csv")]


def test_resume_after_kill_is_bit_for_bit(tmp_path):
    reference = make_trainer(tmp_path / "ref")
    final = reference.fit()
    assert final["epoch"] == 2 and final["step"] == 16  # epochs are numbered from 1, as in the log and 0.0 <= final["test_accuracy"] <= 1.0

    def kill_at_11(step: int) -> None:
        if step == 11:
            raise Killed("simulated kill")

    with pytest.raises(Killed):
        make_trainer(tmp_path / "killed", on_step=kill_at_11, checkpoint_every=4).fit()
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["step"] == 8  # the last checkpoint before the kill
    resumed = make_trainer(tmp_path / "killed", seed=123, checkpoint_every=4)  # another init: all must come from the checkpoint
    again = resumed.fit(resume=True)
    # Bit for bit on CPU: same step losses (repr of float64), same parameters, same test metrics.
    assert step_losses(tmp_path / "killed") == step_losses(tmp_path / "ref")
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert again["test_loss"] == final["test_loss"] and again["test_accuracy"] == final["test_accuracy"]
    assert read_csv(tmp_path / "killed" / "metrics.csv")[0]["test_loss"] == read_csv(tmp_path / "ref" / "metrics.csv")[0]["test_loss"]


def test_max_steps_then_resume_matches(tmp_path):
    reference = make_trainer(tmp_path / "ref")
    reference.fit()
    stopped = make_trainer(tmp_path / "run", max_steps=5).fit()
    assert stopped["stopped"] and stopped["step"] == 5
    again = make_trainer(tmp_path / "run", max_steps=5).fit(resume=True)  # the budget is spent: no further step
    assert again["stopped"] and again["step"] == 5 and len(step_losses(tmp_path / "run")) == 5
    make_trainer(tmp_path / "run").fit(resume=True)
    assert step_losses(tmp_path / "run") == step_losses(tmp_path / "ref")


def test_resume_refuses_a_different_batch_size(tmp_path):
    trainer = make_trainer(tmp_path, max_steps=1)
    trainer.run_config = {"trainer": {"batch_size": 8}}
    trainer.fit()
    other = make_trainer(tmp_path)
    other.run_config = {"trainer": {"batch_size": 16}}
    with pytest.raises(CheckpointError, match="batch_size"):
        other.fit(resume=True)


def test_failed_save_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})

    def broken_save(obj, fh):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"step": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary file left behind


def test_damaged_or_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "none.pt")
    (tmp_path / "bad.pt").write_bytes(b"\x80\x04truncated")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(tmp_path / "bad.pt")


def test_metrics_files_and_plot(tmp_path):
    trainer = make_trainer(tmp_path, plot=True, tensorboard=True, epochs=1)
    trainer.fit()
    rows = read_csv(tmp_path / "metrics.csv")
    assert len(rows) == 1 and set(rows[0]) >= {"train_loss", "test_accuracy", "seconds"}
    assert math.isfinite(float(rows[0]["train_loss"]))
    assert len(read_csv(tmp_path / "steps.csv")) == 8
    assert (tmp_path / "learning_curve.png").stat().st_size > 1000
    assert any((tmp_path / "tensorboard").iterdir())


def test_bad_trainer_options():
    with pytest.raises(ValueError, match="batch_size"):
        TrainerConfig(batch_size=0)
    with pytest.raises(ValueError, match="target"):
        TrainerConfig(target="labels")
