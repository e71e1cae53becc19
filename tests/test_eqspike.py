"""EqSpike (Martin et al. 2021): the telescoping identity, the Monte-Carlo rate, the pairing window,
the refused inputs, and a tiny eqprop-train run of the experiment."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import ConfigurationError
from eqprop.learners import EP, EqSpike
from eqprop.learners.eqspike import pairing_window
from eqprop.models import Activation, BinaryHopfieldMLP, HopfieldMLP, get_activation
from eqprop.solvers import Asynchronous, FixedPoint, GradientDescent

DTYPE = torch.float64


def problem(sizes=(4, 6, 3), batch=2, activation="hard_sigmoid", seed=0):
    torch.manual_seed(seed)
    model = HopfieldMLP(list(sizes), activation=activation).to(DTYPE)
    return model, torch.rand(batch, sizes[0], dtype=DTYPE), torch.rand(batch, sizes[-1], dtype=DTYPE)


def flat(grads):
    return torch.cat([g.flatten() for g in grads.values()])


def test_names_and_keywords_as_documented():
    params = list(inspect.signature(EqSpike.__init__).parameters)[1:]
    assert params == ["beta", "spikes", "solver", "nudged_solver", "cost", "seed"]
    learner = EqSpike(0.1, spikes="rate", solver=None, nudged_solver=None, cost=None, seed=None)
    assert "spikes='rate'" in repr(learner) and learner.beta == 0.1


SOLVERS = {
    "tol": (FixedPoint(tol=1e-12, max_steps=500), None),
    "fixed steps": (FixedPoint(tol=None, max_steps=40), FixedPoint(tol=None, max_steps=7)),
    "gradient descent": (GradientDescent(0.2, tol=1e-11, max_steps=3000), GradientDescent(0.2, tol=None, max_steps=25)),
    "asynchronous": (Asynchronous(tol=1e-12, max_steps=500), None),
}


@pytest.mark.parametrize("solvers", SOLVERS.values(), ids=SOLVERS)
@pytest.mark.parametrize("cost", [SquaredError(), CrossEntropy()], ids=["squared", "cross-entropy"])
@pytest.mark.parametrize("activation", ["hard_sigmoid", ["sigmoid", "sigmoid"], ["hard_sigmoid", "sigmoid"]])
def test_rate_spikes_equal_positive_ep_to_round_off(solvers, cost, activation):
    model, x, y = problem(activation=activation)
    if isinstance(cost, CrossEntropy):
        y = torch.softmax(y, dim=1)
    solver, nudged = solvers
    eqspike = EqSpike(0.3, "rate", solver=solver, nudged_solver=nudged, cost=cost).grads(model, x, y)
    ep = EP(0.3, "positive", solver=solver, nudged_solver=nudged, cost=cost).grads(model, x, y)
    assert eqspike.keys() == ep.keys()
    for name in ep:
        # Telescoping: T ≤ 3000 per-step products summed in float64, each rounded to 2⁻⁵³ relative,
        # against one difference of two products: agreement to ~T·1e-16 of the scale; 1e-11 allowed.
        scale = float(ep[name].abs().max())
        assert scale > 0 and float((eqspike[name] - ep[name]).abs().max()) <= 1e-11 * scale, name


def test_bernoulli_update_converges_to_the_rate_update_like_inverse_sqrt_n():
    model, x, y = problem()
    solver, nudged = FixedPoint(tol=1e-12, max_steps=500), FixedPoint(tol=None, max_steps=10)
    rate = flat(EqSpike(0.5, "rate", solver=solver, nudged_solver=nudged).grads(model, x, y))
    learner = EqSpike(0.5, "bernoulli", solver=solver, nudged_solver=nudged, seed=3)
    ns, errors = [16, 64, 256, 1024, 4096], []
    for n in ns:
        # The gradient is a batch mean: n copies of each sample average n independent spike draws.
        # Root-mean-square relative error over 8 independent repetitions.
        sq = [float((flat(learner.grads(model, x.repeat(n, 1), y.repeat(n, 1))) - rate).norm() ** 2) for _ in range(8)]
        errors.append(math.sqrt(sum(sq) / len(sq)) / float(rate.norm()))
    slope = np.polyfit(np.log(ns), np.log(errors), 1)[0]
    # Unbiased estimator: error ∝ n^(−½). Measured over 5 generator seeds the fitted slope spreads
    # by ±0.05 around −0.5 (−0.48 … −0.58); ±0.15 is three times that spread.
    assert abs(slope + 0.5) <= 0.15, (slope, errors)
    assert errors[-1] < 0.05  # with 4096 draws the update is within a few % of the rate update


def test_spikes_are_seeded_and_the_generator_is_checkpointed():
    model, x, y = problem()
    a = EqSpike(0.5, seed=7, solver=FixedPoint(tol=1e-10, max_steps=300))
    first = flat(a.grads(model, x, y))
    state = a.state_dict()
    second = flat(a.grads(model, x, y))
    assert not torch.equal(first, second)  # fresh spikes at every call
    b = EqSpike(0.5, seed=7, solver=FixedPoint(tol=1e-10, max_steps=300))
    assert torch.equal(flat(b.grads(model, x, y)), first)  # same seed, same spikes
    b.load_state_dict(state)
    assert torch.equal(flat(b.grads(model, x, y)), second)  # resumed exactly
    with pytest.raises(ConfigurationError, match="unknown keys"):
        b.load_state_dict({"rng": 0})


def test_step_writes_the_gradient_and_training_follows_rate_based_ep():
    curves = {}
    for name in ("EP", "EqSpike"):
        model, x, y = problem(sizes=(4, 8, 3), batch=16, activation=["hard_sigmoid", "sigmoid"])
        free, nudged = FixedPoint(tol=None, max_steps=30), FixedPoint(tol=None, max_steps=10)
        learner = (EqSpike(0.5, solver=free, nudged_solver=nudged, seed=0) if name == "EqSpike"
                   else EP(0.5, "positive", solver=free, nudged_solver=nudged))
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        curves[name] = []
        for _ in range(60):
            optimizer.zero_grad()
            out = learner.step(model, x, y)
            assert all(torch.equal(p.grad, out.grads[n]) for n, p in model.named_parameters())
            curves[name].append(float(out.loss))
            optimizer.step()
    ep, spike = curves["EP"], curves["EqSpike"]
    drop = ep[0] - ep[-1]
    assert drop > 0.01  # the rate-based reference learns this batch (0.137 -> 0.123, measured)
    # Spike noise averages out over 60 steps: EqSpike's final loss is within 10 % of EP's drop of
    # it (measured: 1.2 %).
    assert abs(spike[-1] - ep[-1]) < 0.1 * drop, (ep[-1], spike[-1])


def test_pairing_window_is_stdp_like_and_matches_its_closed_form():
    tau, amplitude = 4.0, 0.2
    delays = list(range(-12, 13))
    window = pairing_window(delays, tau=tau, amplitude=amplitude)
    closed = [amplitude * (1 - math.exp(-1 / tau)) * (math.exp(-(d - 1) / tau) if d >= 1 else -math.exp(d / tau)) for d in delays]
    # The event rule summed over the protocol's steps against the closed form: round-off.
    assert torch.allclose(window, torch.tensor(closed, dtype=DTYPE), rtol=0, atol=1e-15)
    positive = window[torch.tensor(delays) >= 1]
    negative = window[torch.tensor(delays) <= 0]
    assert bool((positive > 0).all() and (negative < 0).all())  # pre first: potentiation; post first: depression
    assert bool((positive[1:] < positive[:-1]).all())  # decays with the delay


@pytest.mark.parametrize("activation", ["identity", "tanh", ["hard_sigmoid", "identity"]])
def test_activations_that_are_not_probabilities_are_refused(activation):
    model, x, y = problem(activation=activation)
    learner = EqSpike(0.5, solver=FixedPoint(tol=1e-8, max_steps=100))
    with pytest.raises(ConfigurationError, match=r"probabilities.*\[0, 1\]"):
        learner.grads(model, x, y)
    with pytest.raises(ConfigurationError, match="probabilities"):
        learner.predict(model, x)


def test_a_user_activation_is_judged_by_its_declared_bounds():
    base = get_activation("hard_sigmoid")
    wide = Activation(name="hard_sigmoid", rho=lambda u: u.clamp(0, 2), rho_prime=base.rho_prime,
                      legendre=base.legendre, lower=0.0, upper=2.0, holomorphic=False, closed=True)
    model, x, y = problem(activation=["hard_sigmoid", wide])
    with pytest.raises(ConfigurationError, match="layer 2.*0.0, 2.0"):
        EqSpike(0.5, solver=FixedPoint(tol=1e-8, max_steps=100)).grads(model, x, y)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"beta": 0.0}, "gives no gradient"), ({"beta": 0.1, "spikes": "poisson"}, "Unknown EqSpike spikes"),
     ({"beta": 0.1, "seed": -1}, "seed"), ({"beta": 0.1, "nudged_solver": "fixed"}, "nudged_solver")],
)
def test_bad_options_are_refused(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        EqSpike(**kwargs)


def test_other_models_and_incomplete_solvers_are_refused():
    torch.manual_seed(0)
    binary = BinaryHopfieldMLP([4, 6, 3]).to(DTYPE)
    x, y = torch.rand(2, 4, dtype=DTYPE), torch.rand(2, 3, dtype=DTYPE)
    with pytest.raises(ConfigurationError, match="HopfieldMLP"):
        EqSpike(0.5, solver=FixedPoint(tol=1e-8, max_steps=100)).grads(binary, x, y)

    class Bare:  # the relaxation protocol, but solve does not go through its own step
        def __init__(self):
            self.inner = FixedPoint(tol=1e-8, max_steps=100)

        def solve(self, *args, **kwargs):
            return self.inner.solve(*args, **kwargs)

        def step(self, *args):
            return self.inner.step(*args)

    model, x, y = problem()
    bare = Bare()
    with pytest.raises(ConfigurationError, match="did not reach its result through its own step"):
        EqSpike(0.5, solver=bare).grads(model, x, y)
    assert "step" not in vars(bare)  # the solver is left as it was


def test_eqprop_train_runs_the_eqspike_experiment(tmp_path):
    from hydra import compose, initialize_config_dir

    from eqprop.train import run
    from eqprop.train.app import CONFIG_DIR

    overrides = ["experiment=eqspike", "trainer.max_steps=3", "trainer.batch_size=8", "trainer.progress=false",
                 "trainer.tensorboard=false", "trainer.plot=false", "solver.max_steps=5",
                 "learner.nudged_solver.max_steps=3", "data.limit_test=16"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    result = run(cfg, run_dir=tmp_path)
    assert result["step"] == 3 and result["stopped"]
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert "generator" in checkpoint["per_rank"][0]["learner"]  # the spike generator is checkpointed
    learner = checkpoint["config"]["learner"]
    assert learner["_target_"] == "eqprop.learners.EqSpike" and learner["spikes"] == "bernoulli"
    assert checkpoint["config"]["model"]["activation"] == ["hard_sigmoid", "sigmoid"]
