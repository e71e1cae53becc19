"""The Hydra layer: every config composes and trains a step; the command line, sweeps and its errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hydra import compose, initialize_config_dir  # a test dependency: fail loudly if missing

from eqprop.train import read_csv, run  # noqa: E402
from eqprop.train.app import CONFIG_DIR  # noqa: E402

EXPERIMENTS = sorted(p.stem for p in (CONFIG_DIR / "experiment").glob("*.yaml"))
QUICK = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.plot=false", "trainer.max_steps=1",
         "trainer.batch_size=4"]
TINY = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.plot=false", "trainer.epochs=1",
        "trainer.batch_size=4", "data.limit_train=8", "data.limit_test=6"]


def compose_run(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_trains_and_evaluates(experiment, tmp_path):
    cfg = compose_run([f"experiment={experiment}", *TINY])
    result = run(cfg, run_dir=tmp_path)
    assert not result["stopped"] and result["step"] == 2 and 0.0 <= result["test_accuracy"] <= 1.0
    assert len(read_csv(tmp_path / "steps.csv")) == 2 and len(read_csv(tmp_path / "metrics.csv")) == 1
    assert (tmp_path / "resolved_config.yaml").exists() and (tmp_path / "checkpoint.pt").exists()


def test_rhel_diagnostics_reach_the_training_log(tmp_path):
    """RHEL's estimated round-off and (with an ε = 0 copy) the echo's return error are logged per step."""
    cfg = compose_run(["experiment=rhel_hssm_mnist1d", *TINY, "+learner.check_echo=true", "model.hidden_size=8"])
    run(cfg, run_dir=tmp_path)
    rows = read_csv(tmp_path / "diagnostics.csv")
    assert sorted({r["name"] for r in rows}) == ["echo_error", "roundoff"] and {r["step"] for r in rows} == {"1", "2"}
    values = {r["name"]: float(r["value"]) for r in rows}
    assert 0 < values["roundoff"] < 1e-5  # u·√T for float32 at T = 40 (closed-form kernels)
    assert values["echo_error"] < 1e-4  # the ε = 0 echo returns to the start to float32 round-off


@pytest.mark.parametrize("learner", ["ep_positive", "ep_negative", "ep_random_sign", "cl", "cpl", "bptt", "implicit", "cep"])
def test_every_static_learner_config_takes_a_step(learner, tmp_path):
    result = run(compose_run([f"learner={learner}", "solver.max_steps=5", *QUICK]), run_dir=tmp_path)
    assert result["step"] == 1


def cli(*args, cwd):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "eqprop.train", *args, "num_threads=1"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_multirun_sweeps_over_beta(tmp_path):
    proc = cli("--multirun", "learner.beta=0.2,0.5", "trainer.epochs=1", "trainer.batch_size=16", "data.limit_train=32",
               "data.limit_test=16", "trainer.progress=false", "solver.max_steps=5", f"hydra.sweep.dir={tmp_path}/sweep",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith("."))
    common = "solver.max_steps=5,trainer.batch_size=16"
    assert runs == [f"data.limit_test=16,data.limit_train=32,learner.beta={b},{common}" for b in ("0.2", "0.5")]
    assert all(len(read_csv(tmp_path / "sweep" / r / "steps.csv")) == 2 for r in runs)
    # The sweep's summary: one row per run, with the run's own final metrics, and one plot.
    summary = read_csv(tmp_path / "sweep" / "summary.csv")
    assert [row["run"] for row in summary] == runs
    for row, r in zip(summary, runs):
        last = read_csv(tmp_path / "sweep" / r / "metrics.csv")[-1]
        assert row["test_accuracy"] == last["test_accuracy"] and row["learner"] == "EP (centered)"
        assert row["model"] == "HopfieldMLP" and row["epochs"] == "1" and row["steps"] == "2"
    assert (tmp_path / "sweep" / "summary.png").stat().st_size > 1000


@pytest.mark.parametrize("override, message", [
    ("learner=nonexistent", "Could not find 'learner/nonexistent'"),
    ("trainer.epohcs=3", "epohcs"),
])
def test_unknown_group_option_or_field_is_hydras_error(override, message):
    with pytest.raises(Exception, match=message):
        compose_run([override])


def test_bad_value_is_a_one_sentence_error(tmp_path):
    with pytest.raises(ValueError, match="dtype must be one of"):
        run(compose_run(["dtype=float8"]), run_dir=tmp_path)
    with pytest.raises(Exception, match="takes no option flaten"):  # Hydra wraps it in InstantiationException
        run(compose_run(["+data.flaten=true"]), run_dir=tmp_path)
    with pytest.raises(ValueError, match="Unknown trainer option epohcs, seed;"):
        run(compose_run(["+trainer.epohcs=3", "+trainer.seed=1"]), run_dir=tmp_path)


def test_command_line_run_then_resume(tmp_path):
    """The console path end to end: a run stopped after 3 steps, resumed, prints its test accuracy."""
    args = ["trainer.epochs=1", "trainer.batch_size=16", "data.limit_train=128", "solver.max_steps=5",
            "trainer.progress=false", f"hydra.run.dir={tmp_path}/run"]
    first = cli(*args, "trainer.max_steps=3", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    assert len(read_csv(tmp_path / "run" / "steps.csv")) == 3 and "test accuracy:" not in first.stdout
    second = cli(*args, "resume=true", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Resumed from" in second.stderr + second.stdout and "test accuracy:" in second.stdout
    steps = [int(r["step"]) for r in read_csv(tmp_path / "run" / "steps.csv")]
    assert steps == list(range(1, 9))  # 128 / 16 steps, each once
    for name in ("learning_curve.png", "run_info.json", "resolved_config.yaml", "metrics.csv"):
        assert (tmp_path / "run" / name).exists(), name
