"""Bad input gets one clear error (an eqprop error class), never an assert or a wrong gradient."""

import warnings

import pytest
import torch

from eqprop.baselines import BPTT, ImplicitDifferentiation
from eqprop.costs import CrossEntropy, SquaredError
from eqprop.errors import (
    ConfigurationError,
    ConvergenceError,
    ConvergenceWarning,
    NonFiniteError,
    ShapeError,
)
from eqprop.learners import EP
from eqprop.models import EnergyModel, HopfieldMLP
from eqprop.solvers import Asynchronous, FixedPoint, GradientDescent


@pytest.fixture
def setup():
    torch.manual_seed(0)
    model = HopfieldMLP([5, 4, 3], "sigmoid").double()
    return model, torch.randn(6, 5), torch.rand(6, 3)


def test_beta_zero(setup):
    with pytest.raises(ConfigurationError, match="beta = 0.0"):
        EP(0.0)
    with pytest.raises(ConfigurationError, match="beta"):
        EP(float("nan"))


def test_unknown_variant():
    with pytest.raises(ConfigurationError, match="Unknown EP variant 'symmetric'"):
        EP(0.1, "symmetric")


def test_wrong_target_shape(setup):
    model, x, y = setup
    with pytest.raises(ShapeError, match="SquaredError needs a target shaped like the model output"):
        EP(0.1).grads(model, x, y[:, :2])
    with pytest.raises(ShapeError, match="class indices"):
        EP(0.1, cost=CrossEntropy()).grads(model, x, torch.zeros(6, 2, dtype=torch.long))
    with pytest.raises(ShapeError, match=r"lie in \[0, 2\]"):
        EP(0.1, cost=CrossEntropy()).grads(model, x, torch.full((6,), 7))


def test_batch_mismatch(setup):
    model, x, y = setup
    with pytest.raises(ShapeError, match="batch of 5 but the input has a batch of 6"):
        EP(0.1).grads(model, x, y[:5])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_input_and_target(setup, bad):
    model, x, y = setup
    x_bad = x.clone()
    x_bad[2, 1] = bad
    with pytest.raises(NonFiniteError, match="input contains NaN or infinity"):
        EP(0.1).grads(model, x_bad, y)
    y_bad = y.clone()
    y_bad[0, 0] = bad
    with pytest.raises(NonFiniteError, match="target contains NaN or infinity"):
        BPTT().grads(model, x, y_bad)


def test_dtype_mismatch(setup):
    model, x, y = setup
    with pytest.raises(ShapeError, match="float32 but the model's parameters are torch.float64"):
        EP(0.1).grads(model, x.float(), y)


def test_wrong_input_width(setup):
    model, x, y = setup
    with pytest.raises(ShapeError, match="expects inputs of 5 features"):
        EP(0.1).grads(model, torch.randn(6, 4), y)


def test_non_converged_relaxation_warns_or_raises(setup):
    model, x, y = setup
    with pytest.warns(ConvergenceWarning, match="residual"):
        EP(0.1, solver=FixedPoint(tol=1e-14, max_steps=2)).grads(model, x, y)
    with pytest.raises(ConvergenceError, match="max_steps=2 with residual"):
        EP(0.1, solver=FixedPoint(tol=1e-14, max_steps=2, on_nonconvergence="raise")).grads(model, x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learner = EP(0.1, solver=FixedPoint(tol=1e-14, max_steps=2, on_nonconvergence="ignore"))
        est = learner._run(model, x, y)
    assert not est.info["free"].converged and est.info["free"].residual > 1e-14


def test_status_reports_residual(setup):
    model, x, y = setup
    est = EP(0.1, solver=Asynchronous(tol=1e-10, max_steps=500))._run(model, x, y)
    status = est.info["free"]
    assert status.converged and status.residual <= 1e-10 and 1 <= status.steps < 500
    assert "converged after" in str(status)


def test_diverging_relaxation_is_reported():
    class Unbounded(EnergyModel):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def energy(self, state, x):
            return -(self.w * state[0] ** 2).sum(1)  # no minimum: gradient descent runs away

        def init_state(self, x):
            return (torch.ones_like(x),)

        def output(self, state):
            return state[0]

    x = torch.ones(2, 3)
    with pytest.raises(NonFiniteError, match="diverged"):
        EP(0.1, solver=GradientDescent(step_size=1.0, tol=1e-8, max_steps=5000)).grads(Unbounded(), x, x)


def test_solver_options():
    with pytest.raises(ConfigurationError, match="on_nonconvergence"):
        FixedPoint(on_nonconvergence="silent")
    with pytest.raises(ConfigurationError, match="max_steps"):
        FixedPoint(max_steps=0)
    with pytest.raises(ConfigurationError, match="tol"):
        FixedPoint(tol=-1)
    with pytest.raises(ConfigurationError, match="step_size"):
        GradientDescent(step_size=0)
    with pytest.raises(ConfigurationError, match="method"):
        ImplicitDifferentiation(method="lu")
    with pytest.raises(ConfigurationError, match="solver"):
        EP(0.1, solver="fixed_point")


def test_fixed_point_needs_hopfield_form():
    from problems import TinyEnergy

    model = TinyEnergy().double()
    x = torch.randn(3, 4)
    with pytest.raises(ConfigurationError, match="Hopfield-form"):
        EP(0.1, solver=FixedPoint()).grads(model, x, torch.rand(3, 3))


def test_energy_of_wrong_shape_is_reported():
    class SummedEnergy(EnergyModel):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def energy(self, state, x):
            return 0.5 * (state[0] ** 2).sum()  # forgot the per-sample axis

        def init_state(self, x):
            return (torch.zeros_like(x),)

        def output(self, state):
            return state[0]

    model = SummedEnergy()
    with pytest.raises(ShapeError, match="one value per sample"):
        model.checked_energy((torch.zeros(3, 2),), torch.zeros(3, 2))


def test_squared_error_rejects_class_indices():
    with pytest.raises(ShapeError, match="one-hot"):
        SquaredError().check_target(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long))
