"""GLEP: Generalized Lagrangian Equilibrium Propagation (Pourcel, Basu, Ernoult & Gilra 2025).

For a Lagrangian model, the nudged action A_β[s] = Σ_{k<N} Δt L_d(s_k, s_{k+1}) + β Σ_k Δt w_k c(s_k, y_k)
is made stationary under a boundary condition, for β = ±β (or β and 0). With the discrete momenta
P_0 = −∂A_β/∂s_0, P_N = +∂A_β/∂s_N and R_k = ∂_βP_k·∂_θs_k − ∂_θP_k·∂_βs_k, the exact identity
(Pourcel, Basu, Ernoult & Gilra 2025; docs/theory.md, "GLEP") is

    dL/dθ = d/dβ|₀ ∂_θA_β[s^β] + R_N − R_0,

and GLEP estimates d/dβ by the contrast [∂_θA_{β}(s^{β}) − ∂_θA_{−β}(s^{−β})]/2β (variant="centered",
error O(β²)) or [∂_θA_β(s^β) − ∂_θA_0(s^0)]/β (variant="positive", O(β)). ∂_θA_β is Σ_{k<N} Δt ∂_θL_d
plus β ∂_θ of the cost term, whose contrast is the explicit ∂_θL of a readout inside c.

| boundary        | stationary trajectories                         | R_N − R_0                    |
|-----------------|-------------------------------------------------|------------------------------|
| "echo"          | free: forward from (s_0, P_0); nudged: backward | −R_0 only if init_state      |
|                 | from (s⁰_N, P⁰_N), inputs/targets reversed      | depends on θ (VJP, cheap)    |
| "fixed_ends"    | s_0 = init_state, s_N = end_state; Newton       | only for θ-dependent ends    |
| "periodic"      | s_0 = s_N, x N-periodic; Newton                 | 0 (R_N = R_0)                |
| "initial_value" | (s_0, P_0) fixed, forward shooting at every β   | R_N ≠ 0: needs ∂_θs_N, ∂_θP_N|

R_N for "initial_value" needs the sensitivities ∂_θs_N, ∂_θP_N of the free run. eqprop contracts
them with (∂_βP_N, −∂_βs_N) in one reverse pass through the recorded free trajectory, which costs
what BPTT costs (memory O(N)); obtaining them forward, as a physical system would, takes one
forward-mode sensitivity run per parameter. The naive contrast without R_N is biased by O(1)
(1.03 on tests/test_glep.py's problem, not shrinking with β): ``residual=False`` is refused there.

Check: tests/test_glep.py — every boundary condition against the implicit function theorem on the
whole discrete system (and BPTT of the forward run, finite differences): centered slope 2,
positive slope 1; the β = 0 echo retraces the free trajectory to round-off.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError
from ..estimators.base import Estimate, Learner, check_beta, trainable
from ..estimators.lagrangian import (TrajectoryNudge, check_boundary, check_lagrangian, check_sequence, free_trajectory,
                                     outputs_of, predict_outputs, solver_and_cost, target_mode)
from ..solvers.boundary import BoundaryNewton, BoundaryStatus, end_momentum, start_momentum

__all__ = ["GLEP"]

VARIANTS = ("centered", "positive")


class GLEP(Learner):
    """Lagrangian EP: dL/dθ from stationary trajectories of the nudged discrete action.

    Args:
        beta: the nudging strength β (non-zero); +βc enters the action.
        boundary: "echo" (default; HEL ≡ RHEL/HEB), "fixed_ends", "periodic" or "initial_value".
        variant: "centered" (±β, O(β²)) or "positive" (β and 0, O(β)).
        solver: a :class:`eqprop.solvers.BoundaryNewton` (tolerance, iterations, failure mode).
        cost: the per-sample cost; :class:`eqprop.costs.SquaredError` by default.
        residual: add the boundary residual R_N − R_0 (required for "initial_value"; for the others
            it is non-zero only when init_state / end_state depend on θ).
    """

    model_kinds = ("lagrangian",)

    def __init__(self, beta: float, boundary: str = "echo", variant: str = "centered",
                 solver: BoundaryNewton | None = None, cost: Cost | None = None, residual: bool = True) -> None:
        self.beta = check_beta("beta", beta)
        check_boundary(boundary)
        if variant not in VARIANTS:
            raise ConfigurationError(f"Unknown GLEP variant {variant!r}; choose 'centered' or 'positive'.")
        if boundary == "initial_value" and not residual:
            raise ConfigurationError(
                "The pure contrast is biased by O(1) for boundary='initial_value' (the residual R_N does not "
                "vanish); keep residual=True or use boundary='echo', which needs no residual."
            )
        self.boundary, self.variant, self.residual = boundary, variant, bool(residual)
        self.solver, self.cost = solver_and_cost(solver, cost)

    # -- contract ------------------------------------------------------------------------------
    def predict(self, model, x: Tensor) -> Tensor:
        """Outputs at s_1..s_N of the free trajectory, [batch, T, ...] (``[:, -1]`` for a final loss)."""
        return predict_outputs(model, x, self.boundary, self.solver)

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_lagrangian(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        free, status = free_trajectory(model, x, self.boundary, self.solver)
        nudges = {b: TrajectoryNudge(model, self.cost, y, mode, x.shape[1], b) for b in self._betas()}
        with torch.no_grad():
            loss = nudges[self.beta].loss(free).mean()
            prediction = outputs_of(model, free) if mode == "per_step" else model.output(free[:, -1])
        trajectories = {0.0: free}
        for b in nudges:
            if b != 0.0:
                trajectories[b], nudged_status = self.nudged_trajectory(model, x, free, nudges[b])
                status = status | nudged_status
        params = trainable(model)
        b1, b2 = self._betas()
        g1 = self._action_grad(model, x, trajectories[b1], nudges[b1], params)
        g2 = self._action_grad(model, x, trajectories[b2], nudges[b2], params)
        grads = [(a - b) / (b1 - b2) for a, b in zip(g1, g2)]
        info = {"mode": mode, "beta": self.beta, "boundary": self.boundary, "variant": self.variant}
        if self.residual and self.boundary != "periodic":
            extra = self._boundary_residual(model, x, free, trajectories, nudges, params)
            grads = [g + e for g, e in zip(grads, extra)]
        info["solver_status"], info["solver_residual"] = status, status.residual  # free and nudged solves
        batch = x.shape[0]
        return Estimate(grads={name: g / batch for (name, _), g in zip(params, grads)}, loss=loss,
                        prediction=prediction, info=info)

    # -- pieces ----------------------------------------------------------------------------------
    def _betas(self) -> tuple[float, float]:
        return (self.beta, -self.beta) if self.variant == "centered" else (self.beta, 0.0)

    def nudged_trajectory(self, model, x: Tensor, free: Tensor, nudge: TrajectoryNudge) -> tuple[Tensor, BoundaryStatus]:
        """The stationary trajectory of A_β under this learner's boundary condition, and its status."""
        if self.boundary == "initial_value":
            with torch.no_grad():
                s0, p0 = model.initial_conditions(x)
            return self.solver.shoot_forward(model, x, s0, p0, nudge)
        if self.boundary == "echo":
            p_end = end_momentum(model, free, x)
            return self.solver.shoot_backward(model, x, free[:, -1], p_end, nudge)
        return self.solver.solve(model, x, self.boundary, free, nudge)

    def echo_error(self, model, x: Tensor) -> float:
        """max |s_echo − s⁰| / max |s⁰| for the β = 0 echo: round-off when the echo is exact."""
        check_lagrangian(model)
        check_sequence(model, x)
        free, _ = free_trajectory(model, x, "echo", self.solver)
        echo, _ = self.solver.shoot_backward(model, x, free[:, -1], end_momentum(model, free, x), None)
        return float((echo - free).abs().max() / free.abs().max().clamp_min(1e-300))

    @staticmethod
    def _action_grad(model, x: Tensor, trajectory: Tensor, nudge: TrajectoryNudge, params) -> list[Tensor]:
        """∂_θA_β at a fixed trajectory: Σ_{k<N} Δt ∂_θL_d + ∂_θ(β Σ_k c), summed over the batch."""
        with torch.enable_grad():
            action = model.action_terms(trajectory.detach(), x).sum()
            if nudge.beta != 0.0:
                action = action + nudge.value(trajectory.detach()).sum()
            grads = torch.autograd.grad(action, [p for _, p in params], allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for (_, p), g in zip(params, grads)]

    def _boundary_residual(self, model, x, free, trajectories, nudges, params) -> list[Tensor]:
        """R_N − R_0 at β = 0 as one vector-Jacobian product through the θ-dependent boundary data.

        R_N − R_0 = ∂_βP_N·∂_θs_N − ∂_θP_N·∂_βs_N − ∂_βP_0·∂_θs_0 + ∂_θP_0·∂_βs_0, with the β-derivatives
        from the two nudged trajectories and the θ-derivatives of the free family's boundary data.
        """
        b1, b2 = self._betas()
        t1, t2, n1, n2 = trajectories[b1], trajectories[b2], nudges[b1], nudges[b2]
        scale = 1.0 / (b1 - b2)
        outs, cotangents = [], []
        with torch.enable_grad():
            s0, p0 = model.initial_conditions(x)
            if self.boundary in ("echo", "fixed_ends"):
                dp0 = (start_momentum(model, t1, x, n1) - start_momentum(model, t2, x, n2)) * scale
                outs.append(s0)
                cotangents.append(-dp0)
            if self.boundary == "echo":
                ds0 = (t1[:, 0] - t2[:, 0]) * scale
                outs.append(p0)
                cotangents.append(ds0)
            if self.boundary in ("fixed_ends", "initial_value"):  # the echo fixes P_N: ∂_βP_N = 0
                dpn = (end_momentum(model, t1, x, n1) - end_momentum(model, t2, x, n2)) * scale
            if self.boundary == "fixed_ends":
                outs.append(model.end_state(x))
                cotangents.append(dpn)
            if self.boundary == "initial_value":
                dsn = (t1[:, -1] - t2[:, -1]) * scale
                graph = self.solver.differentiable_forward(model, x, free, s0, p0)
                outs += [graph[:, -1], end_momentum(model, graph, x, create_graph=True)]
                cotangents += [dpn, -dsn]
            keep = [(o, c) for o, c in zip(outs, cotangents) if o.requires_grad]
            if not keep:
                return [torch.zeros_like(p) for _, p in params]
            grads = torch.autograd.grad([o for o, _ in keep], [p for _, p in params],
                                        grad_outputs=[c for _, c in keep], allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for (_, p), g in zip(params, grads)]
