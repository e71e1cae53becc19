"""Holomorphic EP (Laborieux & Zenke 2022): exact up to O(|β|^N) with N complex nudges.

float64, a 5-4-3 tanh HopfieldMLP, FixedPoint relaxation (run in complex arithmetic) to 1e-14.
|β| chosen by a sweep (errors vs implicit differentiation, N = 2 / 4 / 6): |β| = 0.05 gives
3.2e-3 / 3.8e-5 / 3.2e-7, |β| = 0.1 gives 1.3e-2 / 6.0e-4 / 2.1e-5, |β| = 0.5 stays at
0.23 / 0.17 / 0.18 (outside the radius R ≈ 0.5 where s^β is analytic). So: |β| ≤ 0.05.
"""

import math

import pytest
import torch
from torch import nn

from eqprop.baselines import ImplicitDifferentiation
from eqprop.costs import CrossEntropy
from eqprop.errors import ConfigurationError, NotHolomorphicError
from eqprop.learners import EP, HolomorphicEP
from eqprop.models import EnergyModel, HopfieldMLP
from eqprop.solvers import FixedPoint, GradientDescent

SOLVER = FixedPoint(tol=1e-14, max_steps=3000)


def setup(activation="tanh"):
    torch.manual_seed(0)
    model = HopfieldMLP([5, 4, 3], activation)
    return model, torch.randn(6, 5), torch.rand(6, 3) * 2 - 1


def error(grads, exact):
    num = sum(float((grads[n] - exact[n]).pow(2).sum()) for n in exact)
    return math.sqrt(num / sum(float(exact[n].pow(2).sum()) for n in exact))


@pytest.fixture(scope="module")
def problem():
    torch.set_default_dtype(torch.float64)
    model, x, y = setup()
    return model, x, y, ImplicitDifferentiation(solver=SOLVER).grads(model, x, y)


@pytest.mark.parametrize("points", [2, 3, 4, 6])
def test_error_scales_like_beta_to_the_power_n(problem, points):
    model, x, y, exact = problem
    radii = (0.025, 0.05)
    errors = [error(HolomorphicEP(r, points, solver=SOLVER).grads(model, x, y), exact) for r in radii]
    slope = math.log(errors[1] / errors[0]) / math.log(radii[1] / radii[0])
    assert abs(slope - points) < 0.3, errors  # O(|β|^N): slope N (measured 1.99 / 3.00 / 4.00 / 6.00)


def test_error_falls_with_more_points_at_fixed_radius(problem):
    model, x, y, exact = problem
    errors = {n: error(HolomorphicEP(0.05, n, solver=SOLVER).grads(model, x, y), exact) for n in (2, 4, 6)}
    # each two more points gain (R/|β|)² with R ≈ 0.5 the radius of analyticity: ≈ 100 (≥ 20 asked)
    assert errors[4] < errors[2] / 20 and errors[6] < errors[4] / 20, errors
    assert errors[6] < 1e-6


def test_two_points_are_centered_ep_exactly(problem):
    model, x, y, _ = problem
    holo = HolomorphicEP(0.1, 2, solver=SOLVER).grads(model, x, y)
    centered = EP(0.1, "centered", solver=SOLVER).grads(model, x, y)
    for n in centered:  # same two real nudges ±β, the same contrast: round-off only
        assert torch.allclose(holo[n], centered[n], rtol=0, atol=1e-12 * float(centered[n].abs().max()))


class SmoothEnergy(EnergyModel):
    """A user's holomorphic energy relaxed by gradient descent (autograd in complex arithmetic)."""

    output_layer = 1

    def __init__(self, nonlinearity=torch.tanh):
        super().__init__()
        self.A, self.B = nn.Linear(4, 5), nn.Linear(5, 3)
        self.nonlinearity = nonlinearity

    def energy(self, state, x):
        h, o = state
        f = self.nonlinearity
        quadratic = 0.5 * (h * h).sum(1) + 0.5 * (o * o).sum(1)
        return quadratic - (f(h) * self.A(x)).sum(1) - (f(o) * self.B(f(h))).sum(1)

    def init_state(self, x):
        return (x.new_zeros(x.shape[0], 5), x.new_zeros(x.shape[0], 3))

    def output(self, state):
        return state[1]


def test_a_user_energy_under_gradient_descent_is_exact_to_order_n():
    torch.manual_seed(1)
    model, x, y = SmoothEnergy(), torch.randn(5, 4), torch.rand(5, 3)
    solver = GradientDescent(step_size=0.3, tol=1e-13, max_steps=20000)
    exact = ImplicitDifferentiation(solver=solver, method="cg").grads(model, x, y)
    errors = [error(HolomorphicEP(0.05, n, solver=solver).grads(model, x, y), exact) for n in (2, 4)]
    assert errors[1] < errors[0] / 20 and errors[1] < 1e-4, errors  # O(|β|^N) as above


def test_hard_sigmoid_is_refused():
    model, x, y = setup("hard_sigmoid")
    with pytest.raises(NotHolomorphicError, match="hard_sigmoid"):
        HolomorphicEP(0.05, 4, solver=SOLVER).grads(model, x, y)


@pytest.mark.parametrize(
    "nonlinearity",
    [lambda s: s.abs(), lambda s: torch.tanh(s.clamp(-10, 10)), lambda s: torch.tanh(s.real), lambda s: torch.tanh(s.conj())],
    ids=["abs", "clamp", "real", "conj"],
)
def test_a_non_analytic_user_energy_is_refused(nonlinearity):
    torch.manual_seed(1)
    model, x, y = SmoothEnergy(nonlinearity), torch.randn(5, 4), torch.rand(5, 3)
    solver = GradientDescent(step_size=0.3, tol=1e-8, max_steps=20000)
    with pytest.raises(NotHolomorphicError):
        HolomorphicEP(0.05, 4, solver=solver).grads(model, x, y)


def test_a_cost_without_complex_support_is_refused():
    model, x, _ = setup()
    with pytest.raises(NotHolomorphicError, match="CrossEntropy"):
        HolomorphicEP(0.05, 4, solver=SOLVER, cost=CrossEntropy()).grads(model, x, torch.zeros(6, dtype=torch.long))


@pytest.mark.parametrize("kwargs", [{"beta": 0.0}, {"beta": 0.1, "points": 1}, {"beta": 0.1, "points": 2.5},
                                    {"beta": 0.1, "points": True}, {"beta": float("inf")}])
def test_bad_options_are_rejected(kwargs):
    with pytest.raises(ConfigurationError):
        HolomorphicEP(**kwargs)
