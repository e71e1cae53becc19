"""Run directories: a finished run is never lost, one process at a time, resume checks before it writes;
the command line prints eqprop's errors as one sentence; load_run rebuilds a trained run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from eqprop.train import CheckpointError, RunDirectoryError, load_run, read_csv, run, run_lock
from eqprop.train.app import CONFIG_DIR
from eqprop.train.rundir import LOCK_NAME

TINY = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.plot=false", "trainer.batch_size=16",
        "data.limit_train=32", "data.limit_test=40", "solver.max_steps=5", "num_threads=1"]


def compose_run(*overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[*TINY, *overrides])


def cli(*args, monkeypatch, capfd, env=None) -> tuple[int, str]:
    """``eqprop-train *args`` in this process (the console entry point, without the interpreter start): (status, stderr)."""
    from eqprop.train.__main__ import main

    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "argv", ["eqprop-train", *TINY, *args])
    capfd.readouterr()
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    except Exception:  # HYDRA_FULL_ERROR=1: Hydra re-raises; the interpreter would print the traceback, exit 1
        import traceback

        traceback.print_exc()
        status = 1
    return status, capfd.readouterr().err


def test_a_finished_run_survives_a_second_run(tmp_path):
    run(compose_run("trainer.epochs=2"), run_dir=tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("metrics.csv", "steps.csv", "checkpoint.pt",
                                                                   "resolved_config.yaml", "run_info.json")}
    # A second run in the same directory that differs only in trainer.epochs (not part of the directory name).
    with pytest.raises(RunDirectoryError, match="already holds a run of 2 epochs.*resume=true.*overwrite=true"):
        run(compose_run("trainer.epochs=1"), run_dir=tmp_path)
    with pytest.raises(RunDirectoryError, match="already holds"):
        run(compose_run("trainer.epochs=3", "trainer.max_steps=1"), run_dir=tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before  # not one byte changed
    # resume=true continues it (epochs raised), overwrite=true replaces it.
    resumed = run(compose_run("trainer.epochs=3", "resume=true"), run_dir=tmp_path)
    assert resumed["epoch"] == 3 and [r["epoch"] for r in read_csv(tmp_path / "metrics.csv")] == ["1", "2", "3"]
    replaced = run(compose_run("trainer.epochs=1", "overwrite=true"), run_dir=tmp_path)
    assert replaced["epoch"] == 1 and len(read_csv(tmp_path / "metrics.csv")) == 1
    assert len(read_csv(tmp_path / "steps.csv")) == 2  # 32 samples / batch 16: the old 6 rows are gone
    with pytest.raises(ValueError, match="contradict"):
        run(compose_run("resume=true", "overwrite=true"), run_dir=tmp_path)


def test_resume_checks_the_checkpoint_before_writing(tmp_path):
    run(compose_run("trainer.epochs=1"), run_dir=tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in ("resolved_config.yaml", "run_info.json")}
    with pytest.raises(CheckpointError, match="different 'learner' config"):
        run(compose_run("trainer.epochs=2", "resume=true", "learner.beta=0.2"), run_dir=tmp_path)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before


def test_a_run_directory_in_use_refuses_a_second_process_and_a_stale_lock_is_taken_over(tmp_path, caplog):
    # A second process holds the lock (as a concurrent run would) ...
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from eqprop.train import run_lock\n"
        f"with run_lock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirectoryError, match=f"in use by process {holder.pid}"):
            run(compose_run("trainer.epochs=1"), run_dir=tmp_path)
        assert not (tmp_path / "metrics.csv").exists() and not (tmp_path / "resolved_config.yaml").exists()
    finally:
        holder.kill()
        holder.wait()
    # ... and was killed: its lock is stale (no such process) and the next run takes it over.
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == holder.pid
    result = run(compose_run("trainer.epochs=1"), run_dir=tmp_path)
    assert result["epoch"] == 1 and "stale lock" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end of the run


def test_a_lock_whose_pid_was_reused_is_stale(tmp_path, caplog):
    # The parent process is alive, but it is not the process that took the lock (another start time).
    host = socket.gethostname()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "host": host, "process_start": "-1"}))
    with run_lock(tmp_path) as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert "stale lock" in caplog.text


def test_lock_nests_within_one_process_and_is_released(tmp_path):
    with run_lock(tmp_path) as path:
        with run_lock(tmp_path):
            pass
        assert path.exists()  # the inner block does not release the outer one's lock
    assert not path.exists()


def test_command_line_errors_are_one_sentence(tmp_path, monkeypatch, capfd):
    """Refused runs through the console: the sentence, exit status 1, no traceback; HYDRA_FULL_ERROR=1 shows it."""
    monkeypatch.chdir(tmp_path)
    run(compose_run("trainer.epochs=1"), run_dir=tmp_path / "run")
    status, err = cli("trainer.epochs=2", f"hydra.run.dir={tmp_path}/run", monkeypatch=monkeypatch, capfd=capfd)
    assert status == 1 and "Traceback" not in err, err[-2000:]
    assert "RunDirectoryError: " in err and "pass resume=true to continue it" in err
    status, err = cli("optim.lr=abc", f"hydra.run.dir={tmp_path}/bad", monkeypatch=monkeypatch, capfd=capfd)
    assert status == 1 and "Traceback" not in err and "optim.lr must be a finite real number, got 'abc'" in err
    # An error raised while Hydra builds an object reaches the user as eqprop's sentence too, not Hydra's wrapper.
    status, err = cli("learner.variant=centred", f"hydra.run.dir={tmp_path}/bad", monkeypatch=monkeypatch, capfd=capfd)
    assert status == 1 and "Traceback" not in err and "ConfigurationError: Unknown EP variant 'centred'" in err
    assert "InstantiationException" not in err and "Error in call to target" not in err
    status, err = cli("trainer.epochs=2.5", f"hydra.run.dir={tmp_path}/other", monkeypatch=monkeypatch, capfd=capfd,
                      env={"HYDRA_FULL_ERROR": "1"})
    assert status == 1 and "Traceback" in err and "trainer.epochs must be an integer" in err
    assert not (tmp_path / "other" / "resolved_config.yaml").exists() and not (tmp_path / "bad" / "run_info.json").exists()


def test_load_run_rebuilds_the_trained_model(tmp_path):
    result = run(compose_run("trainer.epochs=2", "learner=ep_random_sign"), run_dir=tmp_path)
    loaded = load_run(tmp_path)
    assert loaded.data_info["n_classes"] == 10 and loaded.data_info["n_features"] == 64
    assert loaded.epoch == 2 and loaded.step == 4 and len(loaded.history) == 2
    assert type(loaded.learner).__name__ == "EP" and loaded.learner.variant == "random_sign"
    x, y = loaded.load_data().test.tensors
    accuracy = (loaded.predict(x).argmax(dim=-1) == y).double().mean().item()
    # The same parameters and learner on the same test set: the run's own final test accuracy, exactly.
    assert accuracy == result["test_accuracy"]
    with pytest.raises(CheckpointError, match="no resolved_config.yaml"):
        load_run(tmp_path / "nowhere")


def test_load_run_refuses_a_checkpoint_of_another_model(tmp_path):
    run(compose_run("trainer.epochs=1"), run_dir=tmp_path / "a")
    run(compose_run("trainer.epochs=1", "model.sizes=[64,8,10]"), run_dir=tmp_path / "b")
    (tmp_path / "a" / "checkpoint.pt").write_bytes((tmp_path / "b" / "checkpoint.pt").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_run(tmp_path / "a")
