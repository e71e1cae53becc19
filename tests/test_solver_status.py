"""Solvers report how they ended in a returned status, not in state left on the solver (float64).

A relaxation returns ``(state, SolverStatus)``; with ``tol=None`` it ran a fixed number of steps
and met no tolerance, so ``converged`` is ``None``. ``BoundaryNewton`` returns ``(trajectory,
BoundaryStatus)`` from every solve; GLEP and its baselines report the worst residual of the
solves of one estimate.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from eqprop.baselines import LagrangianImplicit
from eqprop.errors import ConfigurationError
from eqprop.learners import GLEP
from eqprop.models import HopfieldMLP, LagrangianModel
from eqprop.solvers import BoundaryNewton, BoundaryStatus, FixedPoint


class Springs(LagrangianModel):
    """L = ½|ṡ|² − ½ Σ k_i s_i² + s·(W x): linear, so each shooting step is solved in one Newton step."""

    input_size = 2

    def __init__(self) -> None:
        super().__init__()
        self.stiffness = nn.Parameter(torch.rand(3) + 0.5)
        self.drive = nn.Parameter(0.5 * torch.randn(3, 2))
        self.readout = nn.Parameter(torch.randn(2, 3))

    def lagrangian(self, s, s_dot, x_t):
        return 0.5 * (s_dot * s_dot).sum(-1) - 0.5 * (self.stiffness * s * s).sum(-1) + (s * (x_t @ self.drive.T)).sum(-1)

    def init_state(self, x):
        return x.new_zeros(x.shape[0], 3), x.new_zeros(x.shape[0], 3)

    def end_state(self, x):
        return x.new_zeros(x.shape[0], 3)

    def output(self, s):
        return s @ self.readout.T


def test_a_fixed_step_relaxation_reports_no_convergence_verdict():
    torch.manual_seed(0)
    model, x = HopfieldMLP([3, 4, 2], "sigmoid"), torch.randn(5, 3)
    _, fixed = FixedPoint(tol=None, max_steps=4).solve(model, x, model.init_state(x))
    assert fixed.converged is None and fixed.steps == 4 and fixed.residual > 0  # 4 steps are not an equilibrium
    assert "fixed 4 steps" in str(fixed)
    _, met = FixedPoint(tol=1e-12, max_steps=5000).solve(model, x, model.init_state(x))
    assert met.converged is True and met.residual <= 1e-12


def test_boundary_newton_returns_a_status_from_every_solve():
    torch.manual_seed(1)
    model, x = Springs(), torch.randn(4, 6, 2)
    solver = BoundaryNewton()
    s0, p0 = model.initial_conditions(x)
    trajectory, forward = solver.shoot_forward(model, x, s0, p0)
    assert trajectory.shape == (4, 7, 3)
    # one Newton solve per time step, each to the float64 tolerance 1e-12
    assert isinstance(forward, BoundaryStatus) and forward.solves == 6 and forward.converged
    assert forward.residual <= 1e-12
    _, whole = solver.solve(model, x, "fixed_ends", trajectory)
    both = forward | whole
    assert both.solves == 7 and both.residual == max(forward.residual, whole.residual) and both.converged
    assert not hasattr(solver, "last_residual")  # nothing is left on the solver between calls


def test_glep_and_its_baseline_report_the_worst_residual_of_their_solves():
    torch.manual_seed(2)
    model, x, y = Springs(), torch.randn(3, 5, 2), torch.randn(3, 5, 2)
    for learner in (GLEP(1e-3, boundary="fixed_ends"), LagrangianImplicit("fixed_ends")):
        info = learner.estimate(model, x, y).info
        status = info["solver_status"]
        assert isinstance(status, BoundaryStatus) and status.converged
        assert info["solver_residual"] == status.residual <= 1e-12
    assert GLEP(1e-3, boundary="fixed_ends").estimate(model, x, y).info["solver_status"].solves == 3  # free, ±β


def test_a_boundary_solver_is_asked_for_its_methods_not_its_class():
    class Recording:  # a user's class, not a BoundaryNewton subclass: it forwards and counts
        def __init__(self):
            self.inner, self.calls = BoundaryNewton(), 0

        def __getattr__(self, name):
            if name in ("shoot_forward", "shoot_backward", "solve", "differentiable_forward"):
                self.calls += 1
                return getattr(self.inner, name)
            raise AttributeError(name)

    torch.manual_seed(3)
    model, x, y = Springs(), torch.randn(2, 4, 2), torch.randn(2, 4, 2)
    user = Recording()
    grads = GLEP(1e-3, boundary="echo", solver=user).grads(model, x, y)
    reference = GLEP(1e-3, boundary="echo").grads(model, x, y)
    assert user.calls > 0 and all(torch.equal(grads[n], reference[n]) for n in reference)  # the same solves
    with pytest.raises(ConfigurationError, match="lacks shoot_backward, solve, differentiable_forward"):
        GLEP(1e-3, solver=SimpleNamespace(shoot_forward=lambda *a: None))
