"""Options of a run are checked before anything runs; the training layer's output agrees with itself:
epoch numbers in the log, the CSV, the final line and the plot; no progress bar in a log file; a titled plot."""

from __future__ import annotations

import logging

import pytest
import torch
from hydra import compose, initialize_config_dir

import eqprop
from eqprop.data import load_digits
from eqprop.errors import ConfigurationError
from eqprop.train import Trainer, TrainerConfig, read_csv, run
from eqprop.train import loop as loop_module
from eqprop.train.app import CONFIG_DIR

TINY = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.plot=false", "trainer.batch_size=16",
        "data.limit_train=32", "data.limit_test=20", "solver.max_steps=5", "num_threads=1"]


def compose_run(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *overrides])


@pytest.mark.parametrize("name", ["epochs", "batch_size", "eval_batch_size", "max_steps", "checkpoint_every", "seed"])
@pytest.mark.parametrize("value", [2.5, "abc", True])
def test_integer_trainer_options_are_refused_unless_whole(name, value):
    label = "seed" if name == "seed" else f"trainer.{name}"
    with pytest.raises(ConfigurationError, match=f"^{label} must be an integer"):
        TrainerConfig(**{name: value})


def test_integer_valued_floats_are_accepted():
    assert TrainerConfig(epochs=3.0, max_steps=1e3).max_steps == 1000


@pytest.mark.parametrize("override, message", [
    ("trainer.epochs=2.5", "trainer.epochs must be an integer ≥ 1, got 2.5"),
    ("trainer.batch_size=abc", "trainer.batch_size must be an integer ≥ 1, got 'abc'"),
    ("trainer.batch_size=2.5", "trainer.batch_size must be an integer ≥ 1, got 2.5"),
    ("trainer.max_steps=0.5", "trainer.max_steps must be an integer ≥ 1 or null"),
    ("trainer.checkpoint_every=1.5", "trainer.checkpoint_every must be an integer ≥ 0"),
    ("trainer.eval_batch_size=abc", "trainer.eval_batch_size must be an integer"),
    ("num_threads=1.5", "num_threads must be an integer ≥ 1 or null"),
    ("seed=abc", "seed must be an integer, got 'abc'"),
    ("optim.lr=abc", "optim.lr must be a finite real number, got 'abc'"),
    ("optim.momentum=-1", "optim.momentum must be ≥ 0"),
    ("scheduler.T_max=abc", "scheduler.T_max must be an integer ≥ 1, got 'abc'"),
    ("scheduler.eta_min=abc", "scheduler.eta_min must be a finite real number"),
    ("trainer.drop_last=maybe", "trainer.drop_last must be true or false"),
    ("resume=yes", "resume must be true or false"),
    ("trainer.batch_size=64 trainer.drop_last=true", "larger than the 32 training samples"),
])
def test_bad_run_options_are_one_sentence_before_anything_is_written(tmp_path, override, message):
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")) as info:
        run(compose_run(*override.split()), run_dir=tmp_path)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")  # one sentence
    assert not (tmp_path / "resolved_config.yaml").exists() and not (tmp_path / "steps.csv").exists()


def make_trainer(run_dir, **options):
    splits = load_digits(limit_train=32, limit_test=20)
    model = eqprop.models.HopfieldMLP([64, 8, 10])
    learner = eqprop.learners.EP(0.5, variant="positive",
                                 solver=eqprop.solvers.FixedPoint(tol=None, max_steps=3, on_nonconvergence="ignore"))
    config = TrainerConfig(**{"epochs": 2, "batch_size": 16, "tensorboard": False, "plot": False, **options})
    return Trainer(model, learner, torch.optim.SGD(model.parameters(), lr=0.01), splits.train, splits.test, run_dir,
                   config, n_classes=10)


def test_epoch_numbers_agree_and_no_bar_floods_a_log(tmp_path, caplog, capsys, monkeypatch):
    titles = []
    monkeypatch.setattr(loop_module, "plot_learning_curve", lambda csv, png, title="": titles.append(title))
    with caplog.at_level(logging.INFO, logger="eqprop.train.loop"):
        result = make_trainer(tmp_path, progress=True, plot=True).fit()
    err = capsys.readouterr().err
    # stderr is not a terminal here: tqdm draws no bar (no "\r" redraws, no "step/s"); the log has one line per epoch.
    assert "\r" not in err and "step/s" not in err and "it/s" not in err
    assert [m for m in caplog.messages if m.startswith("epoch")] == [m for m in caplog.messages if "/2: train loss" in m]
    assert [m.split(":")[0] for m in caplog.messages if m.startswith("epoch")] == ["epoch 1/2", "epoch 2/2"]
    assert [r["epoch"] for r in read_csv(tmp_path / "metrics.csv")] == ["1", "2"] and result["epoch"] == 2
    assert {r["epoch"] for r in read_csv(tmp_path / "steps.csv")} == {"1", "2"}
    # The plot is titled with the learner, the model and the final test accuracy.
    assert titles == [f"EP (positive) · HopfieldMLP · test accuracy {100 * result['test_accuracy']:.2f}% after 2 epochs"]


def test_final_line_names_the_epoch_of_the_csv(tmp_path, capsys):
    result = run(compose_run("trainer.epochs=2"), run_dir=tmp_path)
    out = capsys.readouterr().out
    assert f"test accuracy: {100 * result['test_accuracy']:.2f}% (epoch 2/2, 4 steps;" in out
    assert read_csv(tmp_path / "metrics.csv")[-1]["epoch"] == "2"


class Diverging:
    """EP that goes wrong at step ``at``: a non-finite loss, or (``poison``) an infinite parameter after the step."""

    def __init__(self, inner, at, poison=False):
        self.inner, self.at, self.poison, self.calls = inner, at, poison, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def step(self, model, x, y):
        self.calls += 1
        out = self.inner.step(model, x, y)
        if self.calls == self.at and not self.poison:
            out.loss = torch.full_like(out.loss, float("nan"))
        if self.calls == self.at and self.poison:
            with torch.no_grad():
                next(model.parameters()).view(-1)[0] = float("inf")
        return out


@pytest.mark.parametrize("poison, message", [(False, "Training diverged at step 3 .*batch loss is nan"),
                                             (True, "Parameter '.*' holds NaN or infinity at step 4")])
def test_a_diverging_run_stops_with_one_sentence_and_keeps_the_good_checkpoint(tmp_path, poison, message):
    from eqprop.errors import NonFiniteError
    from eqprop.train import load_checkpoint

    trainer = make_trainer(tmp_path, progress=False, checkpoint_every=2, epochs=3)
    trainer.learner = Diverging(trainer.learner, at=4 if poison else 3, poison=poison)
    with pytest.raises(NonFiniteError, match=message):
        trainer.fit()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 2  # the last good one
    assert all(torch.isfinite(v).all() for v in load_checkpoint(tmp_path / "checkpoint.pt")["model"].values())


def test_resume_with_fewer_epochs_than_done_is_refused(tmp_path):
    make_trainer(tmp_path, progress=False).fit()
    with pytest.raises(ConfigurationError, match="done 2 epochs already, more than trainer.epochs=1"):
        make_trainer(tmp_path, progress=False, epochs=1).fit(resume=True)


def test_labels_outside_the_declared_classes_are_refused(tmp_path):
    splits = load_digits(limit_train=32, limit_test=20)
    model = eqprop.models.HopfieldMLP([64, 8, 5])
    with pytest.raises(ConfigurationError, match="outside 0..4 of n_classes=5"):
        Trainer(model, eqprop.learners.EP(0.5), torch.optim.SGD(model.parameters(), lr=0.01), splits.train,
                splits.test, tmp_path, TrainerConfig(progress=False), n_classes=5)
