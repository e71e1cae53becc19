"""DTP and Backprop through eqprop-train: the configs compose, train, checkpoint and resume."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from eqprop.train import read_csv, run
from eqprop.train.app import CONFIG_DIR

TINY = ["trainer.progress=false", "trainer.tensorboard=false", "trainer.plot=false", "trainer.epochs=1",
        "trainer.batch_size=4", "data.limit_train=8", "data.limit_test=6", "learner.feedback_steps=2"]


def compose_run(overrides):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


@pytest.mark.parametrize("overrides", [
    ["experiment=dtp_digits"],
    ["experiment=dtp_digits", "model=dtp_conv", "+data.image=true", "model.channels=[4]"],
], ids=["mlp", "conv"])
def test_dtp_experiment_trains_and_moves_the_feedback_weights(overrides, tmp_path):
    result = run(compose_run([*overrides, *TINY]), run_dir=tmp_path)
    assert result["step"] == 2 and 0.0 <= result["test_accuracy"] <= 1.0
    assert len(read_csv(tmp_path / "steps.csv")) == 2
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert state["per_rank"][0]["learner"]["momentum"], "the feedback SGD ran inside learner.step"


def test_backprop_config_trains_a_dtp_network(tmp_path):
    overrides = ["experiment=dtp_digits", "learner=backprop", *[o for o in TINY if not o.startswith("learner.")]]
    result = run(compose_run(overrides), run_dir=tmp_path)
    assert result["step"] == 2


def test_dtp_run_resumes_to_the_same_weights(tmp_path):
    whole = run(compose_run(["experiment=dtp_digits", *TINY, "trainer.epochs=2"]), run_dir=tmp_path / "whole")
    run(compose_run(["experiment=dtp_digits", *TINY, "trainer.epochs=2", "trainer.max_steps=3"]), run_dir=tmp_path / "cut")
    resumed = run(compose_run(["experiment=dtp_digits", *TINY, "trainer.epochs=2", "resume=true"]), run_dir=tmp_path / "cut")
    # Learner state (feedback momentum, noise generator) is checkpointed: the resumed run is the same run.
    assert resumed["step"] == whole["step"] == 4
    assert resumed["test_loss"] == pytest.approx(whole["test_loss"], rel=1e-12, abs=0)


@pytest.mark.slow
def test_dtp_on_digits_is_within_one_and_a_half_points_of_backprop(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "dtp_digits.py"
    spec = importlib.util.spec_from_file_location("dtp_digits", path)
    example = importlib.util.module_from_spec(spec)
    sys.modules["dtp_digits"] = example
    spec.loader.exec_module(example)
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the example's precision (the conftest sets float64)
    try:
        results = example.main(example.parse(["--out", str(tmp_path)]))
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
    dtp, bp = (results[k][0][-1]["test_accuracy"] for k in ("DTP (L-DRL)", "backprop"))
    # The target: within 1.5 points (measured 96.66 % vs 96.94 %; 359 test images, one is 0.28 point).
    assert bp - dtp <= 0.015, (dtp, bp)
    last = results["DTP (L-DRL)"][0][-1]
    for layer in ("forward_layers.0", "forward_layers.1"):
        # L-DRL aligns the updates: measured 14–16° at the end, from ~90° with the random feedback.
        assert last[layer] < 25 and results["random_feedback"][layer] > 60, (last, results["random_feedback"])
    assert (tmp_path / "dtp_digits.png").exists()
