"""Continuous-time RHEL vs autograd of its scheme, the adjoint method and torchdiffeq (float64).

Theory (Pourcel & Ernoult 2025; docs/theory.md, "RHEL in continuous time"): discretised by velocity Verlet with reversed inputs/targets and
trapezoid weights, RHEL equals autograd of the discrete scheme up to O(ε²); the scheme is
second order, so RHEL, and the adjoint method (RK4 with linearly interpolated inputs: O(h²)),
reach the continuous gradient at O(h²) — log-log slope 2 in h.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from eqprop.baselines import Adjoint
from eqprop.check import log_log_slope, relative_error
from eqprop.costs import SquaredError
from eqprop.errors import ConfigurationError, NotReversibleError
from eqprop.learners import ContinuousRHEL
from eqprop.learners.rhel_continuous import verlet_trajectory_loss
from eqprop.models import HamiltonianModel
from eqprop.solvers import RK4, LeapFrog, PositionVerlet, SymplecticEuler

DURATION = 4.0


class Oscillators(HamiltonianModel):
    """Non-linear oscillators with a mass in T, an input coupling, a trainable start and readout."""

    def __init__(self):
        super().__init__()
        self.input_size = 1
        self.stiffness = nn.Parameter(torch.rand(3) + 0.5)
        self.input_weight = nn.Parameter(torch.randn(3, 1))
        self.coupling = nn.Parameter(0.3 * torch.randn(3, 3))
        self.q_init = nn.Parameter(0.3 * torch.randn(3))
        self.readout = nn.Parameter(torch.randn(2, 3))
        self.log_mass = nn.Parameter(0.1 * torch.randn(3))

    def kinetic(self, p):
        return (0.5 * p * p * torch.exp(-self.log_mass)).sum(-1)

    def potential(self, q, u):
        return (self.stiffness * (1 - torch.cos(q))).sum(-1) + 0.05 * ((q @ self.coupling) ** 2).sum(-1) \
            - (q * (u @ self.input_weight.T)).sum(-1)

    def init_state(self, u_seq):
        return self.q_init.expand(u_seq.shape[0], 3), torch.zeros(u_seq.shape[0], 3)

    def output(self, q):
        return torch.tanh(q) @ self.readout.T


def u_of_t(t):
    return (torch.sin(t) * torch.tensor([1.0, 0.5, -1.0], dtype=t.dtype))[:, None]


def grid(n_steps: int, targets: torch.Tensor, running: bool):
    h = DURATION / n_steps
    times = torch.arange(n_steps + 1, dtype=torch.float64) * h
    x = torch.stack([u_of_t(t) for t in times], dim=1)
    y = torch.stack([targets * torch.cos(t) for t in times], dim=1) if running else targets
    return h, x, y


def continuous_gradient(model, targets, running: bool):
    """dL/dθ of the ODE by torchdiffeq.odeint_adjoint (dopri5, tolerance 1e-11)."""
    import torchdiffeq  # a test dependency (independent reference): fail loudly if missing

    class Field(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, t, state):
            q, p, _ = state
            graph = torch.is_grad_enabled()
            return (model.kinetic_grad(p, create_graph=graph), -model.potential_grad(q, u_of_t(t), create_graph=graph),
                    SquaredError()(model.output(q), targets * torch.cos(t)))

    q0, p0 = model.init_state(torch.zeros(3, 1, 1))
    solution = torchdiffeq.odeint_adjoint(Field(), (q0, p0, torch.zeros(3)), torch.tensor([0.0, DURATION]),
                                          rtol=1e-11, atol=1e-11, method="dopri5",
                                          adjoint_params=tuple(model.parameters()))
    loss = solution[2][-1].mean() if running else SquaredError()(model.output(solution[0][-1]), targets).mean()
    grads = torch.autograd.grad(loss, list(model.parameters()))
    return dict(zip([n for n, _ in model.named_parameters()], grads))


@pytest.mark.parametrize("running", [False, True])
def test_continuous_rhel_equals_autograd_of_its_scheme_at_order_eps_squared(running):
    model = Oscillators()
    h, x, y = grid(40, torch.randn(3, 2), running)
    mode = "per_step" if running else "final"
    _, _, loss, _ = verlet_trajectory_loss(model, x, y, h, SquaredError(), mode, create_graph=True)
    reference = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    epsilons = [4e-2, 2e-2, 1e-2]
    errors = [relative_error(ContinuousRHEL(e, h).grads(model, x, y), reference) for e in epsilons]
    # c ε² + O(ε⁴): slope 2 ± 0.15
    assert abs(log_log_slope(epsilons, errors) - 2.0) < 0.15, errors
    one_sided = [relative_error(ContinuousRHEL(e, h, "one_sided").grads(model, x, y), reference) for e in epsilons]
    # c' ε + O(ε²): slope 1 ± 0.1
    assert abs(log_log_slope(epsilons, one_sided) - 1.0) < 0.1, one_sided


@pytest.mark.parametrize("running", [False, True])
def test_rhel_adjoint_and_torchdiffeq_agree_as_h_shrinks(running):
    model = Oscillators()
    targets = torch.randn(3, 2)
    truth = continuous_gradient(model, targets, running)
    steps = [20, 40, 80]
    rhel_errors, adjoint_errors, gaps = [], [], []
    for n_steps in steps:
        h, x, y = grid(n_steps, targets, running)
        rhel = ContinuousRHEL(1e-4, h).grads(model, x, y)  # ε² = 1e-8 ≪ the O(h²) errors measured
        adjoint = Adjoint(h).grads(model, x, y)
        rhel_errors.append(relative_error(rhel, truth))
        adjoint_errors.append(relative_error(adjoint, truth))
        gaps.append(relative_error(rhel, adjoint))
    hs = [DURATION / n for n in steps]
    # both schemes are second order in h: slope 2 ± 0.2 (the O(h⁴) terms shift it by < 0.1 here)
    assert abs(log_log_slope(hs, rhel_errors) - 2.0) < 0.2, rhel_errors
    assert abs(log_log_slope(hs, adjoint_errors) - 2.0) < 0.2, adjoint_errors
    assert abs(log_log_slope(hs, gaps) - 2.0) < 0.2, gaps
    assert rhel_errors[-1] < 2e-3 and adjoint_errors[-1] < 2e-3


@pytest.mark.parametrize("running", [False, True])
def test_continuous_rhel_with_position_verlet_equals_autograd_of_that_scheme(running):
    model = Oscillators()
    h, x, y = grid(30, torch.randn(3, 2), running)
    mode = "per_step" if running else "final"
    _, _, loss, _ = verlet_trajectory_loss(model, x, y, h, SquaredError(), mode, create_graph=True,
                                           integrator=PositionVerlet())
    reference = dict(zip([n for n, _ in model.named_parameters()], torch.autograd.grad(loss, list(model.parameters()))))
    epsilons = [4e-2, 2e-2, 1e-2]
    errors = [relative_error(ContinuousRHEL(e, h, integrator=PositionVerlet()).grads(model, x, y), reference)
              for e in epsilons]
    # the echo steps the same reversible scheme, so the error is c ε² + O(ε⁴): slope 2 ± 0.15
    assert abs(log_log_slope(epsilons, errors) - 2.0) < 0.15, errors


def test_continuous_integrators_are_checked():
    with pytest.raises(NotReversibleError, match="not exactly reversible"):
        ContinuousRHEL(1e-3, 0.1, integrator=SymplecticEuler())
    with pytest.raises(ConfigurationError, match="sampling grid"):
        ContinuousRHEL(1e-3, 0.1, integrator=LeapFrog(dt=0.2))
    with pytest.raises(ConfigurationError, match="ode_step"):
        Adjoint(0.1, integrator=LeapFrog())
    with pytest.raises(ConfigurationError, match="sampling grid"):
        Adjoint(0.1, integrator=RK4(dt=0.2))
