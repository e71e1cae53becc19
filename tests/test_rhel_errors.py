"""Bad input to RHEL, the integrators and the Hamiltonian models gets one clear eqprop error."""

from __future__ import annotations

import pytest
import torch

from eqprop.baselines import Adjoint, BPTT
from eqprop.errors import ConfigurationError, NonFiniteError, NotReversibleError, ShapeError
from eqprop.learners import RHEL, ContinuousRHEL
from eqprop.models import HSSM, HamiltonianModel, LinearHRU, NonlinearHRU
from eqprop.solvers import PositionVerlet, SymplecticEuler


def test_a_non_reversible_integrator_is_refused_with_the_fix():
    with pytest.raises(NotReversibleError, match="PositionVerlet"):
        RHEL(1e-3, integrator=SymplecticEuler())
    # BPTT accepts it: it is a valid simulation, just not one RHEL can echo
    model = LinearHRU(2, 3, output_size=1)
    BPTT(integrator=SymplecticEuler()).grads(model, torch.randn(2, 5, 2), torch.randn(2, 1))


@pytest.mark.parametrize("epsilon", [0.0, float("nan"), "big"])
def test_epsilon_must_be_finite_and_nonzero(epsilon):
    with pytest.raises(ConfigurationError):
        RHEL(epsilon)
    with pytest.raises(ConfigurationError):
        ContinuousRHEL(epsilon, step_size=0.1)


def test_unknown_variant_and_bad_steps():
    with pytest.raises(ConfigurationError, match="one_sided"):
        RHEL(1e-3, variant="forward")
    with pytest.raises(ConfigurationError):
        PositionVerlet(dt=-0.1)
    with pytest.raises(ConfigurationError):
        ContinuousRHEL(1e-3, step_size=0.0)
    with pytest.raises(ConfigurationError):
        HSSM(2, 4, 2, hru="quadratic")


def test_bad_inputs_and_targets():
    model, learner = HSSM(2, 4, 3), RHEL(1e-3)
    x, y = torch.randn(2, 6, 2), torch.randn(2, 3)
    with pytest.raises(ShapeError, match="input_size=2"):
        learner.grads(model, torch.randn(2, 6, 5), y)
    with pytest.raises(ShapeError, match=r"\[batch, T, features\]"):
        learner.grads(model, torch.randn(2, 6), y)
    bad = x.clone()
    bad[0, 3, 1] = float("nan")
    with pytest.raises(NonFiniteError):
        learner.grads(model, bad, y)
    with pytest.raises(ShapeError, match="neither"):
        learner.grads(model, x, torch.randn(2, 4))
    with pytest.raises(ShapeError, match="neither"):
        learner.grads(model, x, torch.randn(2, 5, 3))  # a time axis of the wrong length
    with pytest.raises(ShapeError):
        learner.grads(model, x, torch.randn(3, 3))  # one target per sample


def test_models_that_do_not_fit_the_learner():
    with pytest.raises(ConfigurationError, match="HamiltonianModel"):
        RHEL(1e-3).grads(torch.nn.Linear(2, 2), torch.randn(2, 3, 2), torch.randn(2, 2))
    with pytest.raises(ConfigurationError, match="single Hamiltonian"):
        ContinuousRHEL(1e-3, 0.1).grads(HSSM(1, 3, 1), torch.randn(2, 4, 1), torch.randn(2, 1))
    with pytest.raises(ConfigurationError, match="single Hamiltonian"):
        Adjoint(0.1).grads(HSSM(1, 3, 1), torch.randn(2, 4, 1), torch.randn(2, 1))


class NoStep(HamiltonianModel):
    def potential(self, q, u):
        return (q * q).sum(-1)

    def init_state(self, u_seq):
        z = torch.zeros(u_seq.shape[0], 2)
        return z, z

    def output(self, q):
        return q


class VectorStepNotSeparable(NoStep):
    def __init__(self):
        super().__init__()
        self.dt = torch.nn.Parameter(torch.full((2,), 0.1))


def test_missing_or_non_separable_step_sizes():
    x, y = torch.randn(2, 3, 1), torch.randn(2, 2)
    with pytest.raises(ConfigurationError, match="dt=0.1"):
        RHEL(1e-3).grads(NoStep(), x, y)
    RHEL(1e-3, integrator=PositionVerlet(dt=0.1)).grads(NoStep(), x, y)  # a given step works
    with pytest.raises(ConfigurationError, match="potential_terms"):
        RHEL(1e-3).grads(VectorStepNotSeparable(), x, y)


def test_diverging_dynamics_are_reported():
    model = NonlinearHRU(1, 3, output_size=1)
    with torch.no_grad():
        model.dt.fill_(50.0)
        model.frequency.fill_(3.0)
    with pytest.raises(NonFiniteError):
        RHEL(1e-3).grads(model, torch.randn(2, 200, 1), torch.randn(2, 1))
