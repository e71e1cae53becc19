"""Shared pieces of GLEP and its baselines for Lagrangian models.

* :func:`check_lagrangian`, :func:`check_sequence` — one-sentence errors for a wrong model or x.
* :func:`solver_and_cost` — the solver and cost options, checked, with their defaults.
* :func:`target_mode` (shared with the Hamiltonian models) — y [batch, ...] is a loss on the final
  point s_N only, y [batch, T, ...] a loss at every point s_1..s_N (point k = step k − 1's output).
* :func:`free_trajectory`, :func:`predict_outputs`, :func:`check_boundary` — the β = 0 stationary
  trajectory under a boundary condition, its outputs, and the check of the condition's name.
* :class:`TrajectoryNudge` — the nudge β Σ_k Δt w_k c(output(s_k), y_k) of the action, with
  w_k = 1/Δt on the points that carry a loss, so the loss L = Σ_k Δt w_k c is the library's
  (final-step cost, or per-step costs summed over time; batch mean taken by the learner).
  Point 0 never carries a loss, so in the periodic case the shared point s_0 = s_N counts once.

This module knows models only through ``output`` and the ``LagrangianModel`` class.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..models.lagrangian import LagrangianModel
from ..solvers.boundary import BoundaryNewton, BoundaryStatus
from .sequence import Mode, target_mode
from .sequence import check_sequence as check_any_sequence

__all__ = ["check_lagrangian", "check_sequence", "solver_and_cost", "target_mode", "TrajectoryNudge", "outputs_of",
           "BOUNDARY_CONDITIONS", "check_boundary", "free_trajectory", "predict_outputs"]


def check_lagrangian(model) -> None:
    if not isinstance(model, LagrangianModel):
        raise ConfigurationError(
            f"GLEP and its baselines need an eqprop.models.LagrangianModel, got {type(model).__name__}."
        )


BOUNDARY_SOLVER_METHODS = ("shoot_forward", "shoot_backward", "solve", "differentiable_forward")


def solver_and_cost(solver: BoundaryNewton | None, cost: Cost | None) -> tuple[BoundaryNewton, Cost]:
    """``solver`` (default ``BoundaryNewton()``) and ``cost`` (default ``SquaredError()``), checked.

    A solver of the user's serves when it offers BoundaryNewton's methods (``shoot_forward``,
    ``shoot_backward``, ``solve``, ``differentiable_forward``, each returning what BoundaryNewton's does).
    """
    missing = [m for m in BOUNDARY_SOLVER_METHODS if not callable(getattr(solver, m, None))]
    if solver is not None and missing:
        raise ConfigurationError(
            f"solver must offer {', '.join(BOUNDARY_SOLVER_METHODS)} like eqprop.solvers.BoundaryNewton; "
            f"{type(solver).__name__} lacks {', '.join(missing)}."
        )
    return (BoundaryNewton() if solver is None else solver), (SquaredError() if cost is None else cost)


def check_sequence(model: LagrangianModel, x: Tensor) -> None:
    """x must be [batch, T ≥ 1, ...] (and [batch, T, input_size] when the model declares input_size)."""
    check_any_sequence(model, x, feature_axis=False)


def outputs_of(model: LagrangianModel, trajectory: Tensor) -> Tensor:
    """output(s_k) for k = 1..N, [batch, N, ...] (time folded into the batch for one call)."""
    batch, points, width = trajectory.shape
    out = model.output(trajectory[:, 1:].reshape(batch * (points - 1), width))
    return out.reshape(batch, points - 1, *out.shape[1:])


class TrajectoryNudge:
    """e_k(s) = β Δt w_k c(output(s), y_k) with w_k = 1/Δt where point k carries a loss.

    ``grad(k, s)`` is ∂e_k/∂s (None where w_k = 0 or β = 0); ``value(trajectory)`` is Σ_k e_k(s_k)
    per sample; :meth:`loss` is the unnudged per-sample loss Σ_k c(output(s_k), y_k).
    """

    def __init__(self, model: LagrangianModel, cost: Cost, y: Tensor, mode: Mode, steps: int, beta: float) -> None:
        self.model, self.cost, self.y, self.mode, self.steps, self.beta = model, cost, y, mode, steps, float(beta)

    def target(self, k: int) -> Tensor | None:
        if k == 0:
            return None
        if self.mode == "per_step":
            return self.y[:, k - 1]
        return self.y if k == self.steps else None

    def grad(self, k: int, s: Tensor, create_graph: bool = False) -> Tensor | None:
        target = self.target(k)
        if target is None or self.beta == 0.0:
            return None
        with torch.enable_grad():
            leaf = s if (create_graph and s.requires_grad) else s.detach().requires_grad_(True)
            value = self.cost(self.model.output(leaf), target).sum()
            (g,) = torch.autograd.grad(value, leaf, create_graph=create_graph)
        return self.beta * g

    def loss(self, trajectory: Tensor) -> Tensor:
        """Σ_k c(output(s_k), y_k) per sample, [batch] (the cost reduced over time and features)."""
        if self.mode == "per_step":
            per = self.cost(outputs_of(self.model, trajectory), self.y)
        else:
            per = self.cost(self.model.output(trajectory[:, -1]), self.y)
        return per.reshape(per.shape[0], -1).sum(dim=1)

    def value(self, trajectory: Tensor) -> Tensor:
        return self.beta * self.loss(trajectory)


BOUNDARY_CONDITIONS = ("echo", "fixed_ends", "periodic", "initial_value")


def free_trajectory(model, x: Tensor, boundary: str, solver: BoundaryNewton) -> tuple[Tensor, BoundaryStatus]:
    """The β = 0 stationary trajectory [batch, N + 1, n] under ``boundary`` (no graph), and the
    solver's status (:class:`eqprop.solvers.BoundaryStatus`)."""
    with torch.no_grad():
        s0, p0 = model.initial_conditions(x)
    if boundary in ("echo", "initial_value"):
        return solver.shoot_forward(model, x, s0, p0)
    steps = x.shape[1]
    if boundary == "fixed_ends":
        with torch.no_grad():
            s_end = model.end_state(x)
        weights = torch.linspace(0.0, 1.0, steps + 1, dtype=s0.dtype, device=s0.device).view(1, -1, 1)
        guess = s0.unsqueeze(1) * (1 - weights) + s_end.unsqueeze(1) * weights
    else:
        guess = s0.unsqueeze(1).expand(-1, steps + 1, -1).contiguous()
    return solver.solve(model, x, boundary, guess)


def check_boundary(boundary: str) -> None:
    """One sentence for a boundary condition that does not exist."""
    if boundary not in BOUNDARY_CONDITIONS:
        raise ConfigurationError(
            f"Unknown boundary {boundary!r}; choose one of {', '.join(map(repr, BOUNDARY_CONDITIONS))}."
        )


def predict_outputs(model, x: Tensor, boundary: str, solver: BoundaryNewton) -> Tensor:
    """Outputs at s_1..s_N of the free trajectory under ``boundary``, [batch, T, ...]."""
    check_lagrangian(model)
    check_sequence(model, x)
    with torch.no_grad():
        return outputs_of(model, free_trajectory(model, x, boundary, solver)[0])
