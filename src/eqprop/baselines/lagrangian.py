"""Reference gradients for Lagrangian models: the implicit function theorem and BPTT of the forward run.

``LagrangianImplicit(boundary)`` writes the whole discrete system as F(S, θ) = 0 over all points
S = (s_0..s_N) and differentiates L(S*(θ), θ) through it:

    dL/dθ = ∂_θL − λᵀ ∂_θF,    (∂_SF)ᵀ λ = ∂_SL,

with ∂_SF dense per sample ([(N+1)·n]² — meant for checks at small sizes). The rows of F:

    echo / initial_value: ∂A/∂s_0 + p_0(θ) = 0 (P_0 fixed), EL_1..EL_{N−1}, s_0 − s_0(θ) = 0
    fixed_ends:           s_0 − init_state(θ) = 0, EL_1..EL_{N−1}, s_N − end_state(θ) = 0
    periodic:             EL_0..EL_{N−1} on s_0..s_{N−1}, with s_N ≡ s_0

(the echo's free trajectory is the forward initial-value one, so its loss and gradient are those
of "initial_value"). ``LagrangianBPTT`` differentiates the forward initial-value run by autograd
(one differentiable Newton correction per step at the converged solution, which is exactly the
derivative of the converged step) — the cross-check of the implicit baseline for the echo and
initial-value cases.

Check: tests/test_glep.py compares the two with each other and with finite differences.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost
from ..estimators.base import Estimate, Learner, trainable
from ..estimators.lagrangian import (TrajectoryNudge, check_boundary, check_lagrangian, check_sequence, free_trajectory,
                                     outputs_of, predict_outputs, solver_and_cost, target_mode)
from ..solvers.boundary import BoundaryNewton
from ..solvers.newton import banded_jacobian

__all__ = ["LagrangianImplicit", "LagrangianBPTT"]


def _prediction(model, trajectory: Tensor, mode: str) -> Tensor:
    with torch.no_grad():
        return outputs_of(model, trajectory) if mode == "per_step" else model.output(trajectory[:, -1])


class LagrangianImplicit(Learner):
    """dL/dθ by the implicit function theorem on the whole discrete Euler–Lagrange system.

    Args:
        boundary: as for :class:`eqprop.learners.GLEP` ("echo" and "initial_value" share a system).
        solver: the :class:`eqprop.solvers.BoundaryNewton` for the free trajectory.
        cost: per-sample cost; SquaredError by default.
    """

    model_kinds = ("lagrangian",)

    def __init__(self, boundary: str = "echo", solver: BoundaryNewton | None = None, cost: Cost | None = None) -> None:
        check_boundary(boundary)
        self.boundary = boundary
        self.solver, self.cost = solver_and_cost(solver, cost)

    def predict(self, model, x: Tensor) -> Tensor:
        return predict_outputs(model, x, self.boundary, self.solver)

    def _system(self, model, x: Tensor, z: Tensor) -> Tensor:
        """F(z, θ) with rows banded for cyclic colouring; z holds the unknown points."""
        periodic = self.boundary == "periodic"
        trajectory = torch.cat([z, z[:, :1]], dim=1) if periodic else z
        action = model.action_terms(trajectory, x).sum()
        (g,) = torch.autograd.grad(action, z, create_graph=True)
        if periodic:
            return g
        s0, p0 = model.initial_conditions(x)
        if self.boundary == "fixed_ends":
            first, last = z[:, 0] - s0, z[:, -1] - model.end_state(x)
        else:
            first, last = g[:, 0] + p0, z[:, 0] - s0
        return torch.cat([first.unsqueeze(1), g[:, 1:-1], last.unsqueeze(1)], dim=1)

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_lagrangian(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        free, status = free_trajectory(model, x, self.boundary, self.solver)
        periodic = self.boundary == "periodic"
        unknowns = free[:, :-1] if periodic else free
        nudge = TrajectoryNudge(model, self.cost, y, mode, x.shape[1], 1.0)
        params = trainable(model)
        tensors = [p for _, p in params]
        with torch.enable_grad():
            _, jac = banded_jacobian(lambda z: self._system(model, x, z), unknowns, periodic=True)
            leaf = unknowns.detach().requires_grad_(True)
            trajectory = torch.cat([leaf, leaf[:, :1]], dim=1) if periodic else leaf
            loss_sum = nudge.loss(trajectory).sum()
            (dl_ds,) = torch.autograd.grad(loss_sum, leaf, retain_graph=True)
            lam = torch.linalg.solve(jac.transpose(1, 2), dl_ds.reshape(dl_ds.shape[0], -1, 1)).reshape(leaf.shape)
            system = self._system(model, x, leaf)
            direct = torch.autograd.grad(loss_sum, tensors, allow_unused=True)
            through = torch.autograd.grad(system, tensors, grad_outputs=-lam, allow_unused=True)
        batch = x.shape[0]
        grads = {}
        for (name, p), a, b in zip(params, direct, through):
            total = torch.zeros_like(p)
            for part in (a, b):
                if part is not None:
                    total = total + part
            grads[name] = total / batch
        return Estimate(grads=grads, loss=(loss_sum / batch).detach(), prediction=_prediction(model, free, mode),
                        info={"mode": mode, "boundary": self.boundary, "solver_status": status,
                              "solver_residual": status.residual})


class LagrangianBPTT(Learner):
    """dL/dθ by autograd through the forward initial-value run (the loss of "echo" / "initial_value")."""

    model_kinds = ("lagrangian",)

    def __init__(self, solver: BoundaryNewton | None = None, cost: Cost | None = None) -> None:
        self.solver, self.cost = solver_and_cost(solver, cost)

    def predict(self, model, x: Tensor) -> Tensor:
        return predict_outputs(model, x, "initial_value", self.solver)

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_lagrangian(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        free, _ = free_trajectory(model, x, "initial_value", self.solver)
        params = trainable(model)
        nudge = TrajectoryNudge(model, self.cost, y, mode, x.shape[1], 1.0)
        with torch.enable_grad():
            s0, p0 = model.initial_conditions(x)
            trajectory = self.solver.differentiable_forward(model, x, free, s0, p0)
            loss = nudge.loss(trajectory).mean()
            grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        return Estimate(grads={n: g for (n, _), g in zip(params, grads) if g is not None}, loss=loss.detach(),
                        prediction=_prediction(model, free, mode), info={"mode": mode})
