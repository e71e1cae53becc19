"""Contrastive learning and coupled learning: exact identities and descent on a small problem."""

import pytest
import torch

from eqprop.check import relative_error
from eqprop.errors import ConfigurationError
from eqprop.learners import EP, ContrastiveLearning, CoupledLearning
from eqprop.models import EnergyModel, HopfieldMLP
from eqprop.solvers import FixedPoint, GradientDescent
from problems import PROBLEMS


def test_contrastive_equals_coupled_with_eta_one_positive():
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    cl = ContrastiveLearning(solver=problem.solver).grads(model, x, y)
    cpl = CoupledLearning(1.0, "positive", solver=problem.solver).grads(model, x, y)
    # Clamp values y and o⁰ + 1·(y − o⁰) differ by one rounding: 1e-16, through a
    # converged relaxation: 1e-14.
    assert relative_error(cl, cpl) < 1e-12


def test_coupled_centered_is_mean_of_one_sided():
    problem = PROBLEMS[1]
    model, (x, y) = problem.model(), problem.data()
    # The identity holds at any state; a synchronous relaxation of this deep tanh net does not
    # settle (residual ~2 after 300 steps), so the equilibrium report is silenced on purpose.
    solver = FixedPoint(tol=None, max_steps=300, on_nonconvergence="ignore")
    c = CoupledLearning(0.1, "centered", solver=solver).grads(model, x, y)
    p = CoupledLearning(0.1, "positive", solver=solver).grads(model, x, y)
    n = CoupledLearning(0.1, "negative", solver=solver).grads(model, x, y)
    assert relative_error(c, {k: 0.5 * (p[k] + n[k]) for k in c}) < 1e-12  # round-off / η


def test_contrastive_is_gradient_of_energy_difference():
    """CL's estimate is d/dθ [E(s^clamped) − E(s⁰)] (both states stationary in the free units)."""
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    grads = ContrastiveLearning(solver=problem.solver).grads(model, x, y)
    learner = ContrastiveLearning(solver=problem.solver)
    name = "layers.0.bias"
    param = dict(model.named_parameters())[name]
    h = 1e-6
    values = []
    for sign in (1, -1):
        with torch.no_grad():
            param[0] += sign * h
        free, _ = learner.free_phase(model, x)
        (clamped,), _ = learner.clamped_phases(model, x, None, free, [y])
        with torch.no_grad():
            values.append(float((model.energy(clamped, x) - model.energy(free, x)).mean()))
        with torch.no_grad():
            param[0] -= sign * h
    finite_difference = (values[0] - values[1]) / (2 * h)
    # Central differences: O(h²) = 1e-12 plus round-off 1e-16/h = 1e-10.
    assert abs(grads[name][0].item() - finite_difference) < 1e-8


@pytest.mark.parametrize("make", [lambda s: ContrastiveLearning(solver=s), lambda s: CoupledLearning(0.5, solver=s)])
def test_training_decreases_the_loss(make):
    torch.manual_seed(0)
    model = HopfieldMLP([4, 8, 2], "sigmoid", init_scale=0.5).double()
    x = torch.randn(32, 4)
    y = torch.stack([(x[:, 0] > 0).double(), (x[:, 1] > 0).double()], 1) * 0.6 + 0.2
    learner = make(FixedPoint(tol=1e-8, max_steps=500))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    first = None
    for _ in range(150):
        optimizer.zero_grad()
        loss = learner.step(model, x, y).loss.item()
        first = loss if first is None else first
        optimizer.step()
    # A descent direction of the loss: 150 steps must remove a third of it.
    assert loss < 0.67 * first, (first, loss)


def test_clamping_needs_an_output_layer():
    class NoOutputLayer(EnergyModel):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

        def energy(self, state, x):
            return 0.5 * (state[0] ** 2).sum(1) - (state[0] * self.w * x).sum(1)

        def init_state(self, x):
            return (torch.zeros_like(x),)

        def output(self, state):
            return 2 * state[0]

    model = NoOutputLayer()
    x, y = torch.randn(3, 2), torch.randn(3, 2)
    with pytest.raises(ConfigurationError, match="output_layer"):
        ContrastiveLearning(solver=GradientDescent(0.5)).grads(model, x, y)
    # EP works on it (the nudge goes through autograd).
    assert EP(0.1, solver=GradientDescent(0.5, tol=1e-10, max_steps=500)).grads(model, x, y)["w"].shape == (2,)


def test_coupled_learning_rejects_bad_options():
    with pytest.raises(ConfigurationError, match="variant"):
        CoupledLearning(0.1, "symmetric")
    with pytest.raises(ConfigurationError, match="eta"):
        CoupledLearning(0.0)
