"""The continuous adjoint method for a Hamiltonian model: the baseline of continuous-time RHEL.

Same setting as :class:`eqprop.learners.ContinuousRHEL`: inputs x[:, n] = u(t_n) on the grid
t_n = n·h, a terminal target [batch, ...] or a running target [batch, N + 1, ...] (loss ∫ℓ dt).
With f(Φ, t) = (∂_pT(p), −∂_qV(q, u(t))) and λ = ∂L/∂Φ(t), integrate backward from t = T

    Φ̇ = f,   λ̇ = −(∂f/∂Φ)ᵀλ − ∂_Φℓ_t,   ġ = −(∂f/∂θ)ᵀλ − ∂_θℓ_t
    λ(T) = ∂_Φℓ_T(Φ(T)),   g(T) = ∂_θℓ_T,   dL/dθ = g(0) + (∂Φ(0)/∂θ)ᵀλ(0)

with classical RK4 (``eqprop.solvers.RK4``, or another integrator offering ``ode_step``; step −h;
u and y linearly interpolated at the half steps), after a forward pass with the same integrator
that keeps only Φ(T) — the state is re-integrated backward, as in Chen et al. 2018
(torchdiffeq's ``odeint_adjoint``). Memory independent of N; error O(h²) from the input
interpolation (O(h⁴) for a constant input). RHEL computes the same λ physically:
∂_εΦ_echo(s) = Σ J λ(T − s) (Pourcel & Ernoult 2025; docs/rhel.md).

Check: tests/test_rhel_continuous.py (vs ContinuousRHEL and torchdiffeq, slope ≈ 2 in h).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..estimators.base import Estimate, Learner, trainable
from ..estimators.continuous import (check_continuous_model, check_grid_integrator, check_step_size, grid_trajectory,
                                     trapezoid_weights)
from ..estimators.sequence import check_sequence, initial_state_vjp, target_mode
from ..solvers.integrators import RK4

__all__ = ["Adjoint"]


class Adjoint(Learner):
    """dL/dθ by the continuous adjoint method (RK4 forward, RK4 backward on (Φ, λ, g)).

    Args:
        step_size: the grid spacing h of the samples in x. cost: SquaredError by default.
        integrator: an explicit ODE integrator offering ``ode_step(field, state, h)`` (``RK4()``
            by default), used forward on Φ and backward on the augmented state; without its own dt.
    """

    def __init__(self, step_size: float, cost: Cost | None = None, integrator=None) -> None:
        self.step_size = check_step_size(step_size)
        self.cost = SquaredError() if cost is None else cost
        self.integrator = RK4() if integrator is None else integrator
        if not callable(getattr(self.integrator, "ode_step", None)):
            raise ConfigurationError(
                f"The adjoint integrates its augmented state with the integrator's ode_step(field, state, h), which "
                f"{type(self.integrator).__name__} does not offer; use eqprop.solvers.RK4()."
            )
        check_grid_integrator(self.integrator, self.step_size, "Adjoint")

    def __repr__(self) -> str:
        return f"Adjoint(step_size={self.step_size}, cost={self.cost!r}, integrator={self.integrator!r})"

    def predict(self, model, x: Tensor) -> Tensor:
        """Outputs at every grid point, [batch, N + 1, ...] (the integrator's forward run)."""
        check_continuous_model(model)
        check_sequence(model, x)
        return self._forward(model, x)[2]

    def _forward(self, model, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The forward run over the grid without a graph: the final (q, p) and the outputs at every grid point."""
        with torch.no_grad():
            return grid_trajectory(model, x, self.step_size, self.integrator)

    def _augmented(self, model, params, q, p, a, b, u, target, running: bool):
        """(f, −(∂f/∂Φ)ᵀλ − ∂_Φℓ, −(∂f/∂θ)ᵀλ − ∂_θℓ) at one time."""
        with torch.enable_grad():
            q_leaf = q.detach().requires_grad_(True)
            p_leaf = p.detach().requires_grad_(True)
            velocity = model.kinetic_grad(p_leaf, create_graph=True)
            force = -model.potential_grad(q_leaf, u, create_graph=True)
            outs, cots = [velocity, force], [a, b]
            if running:
                outs.append(self.cost(model.output(q_leaf), target).sum())
                cots.append(torch.ones((), dtype=q.dtype, device=q.device))
            grads = torch.autograd.grad(outs, [q_leaf, p_leaf] + params, grad_outputs=cots, allow_unused=True)
        zero = [torch.zeros_like(t) if g is None else g for g, t in zip(grads, [q, p] + params)]
        return (velocity.detach(), force.detach()), (-zero[0], -zero[1]), [-g for g in zero[2:]]

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_continuous_model(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        running = mode != "final"
        h, points, batch = self.step_size, x.shape[1], x.shape[0]
        params = [p for _, p in trainable(model)]
        q, p, outputs = self._forward(model, x)  # the forward pass, once: final state and outputs
        if running:
            w = x.new_tensor(trapezoid_weights(points, h))
            loss = (self.cost(outputs, y) * w).sum(dim=1).mean()
        else:
            loss = self.cost.loss(outputs[:, -1], y)
        # terminal conditions
        a, b = torch.zeros_like(q), torch.zeros_like(p)
        g = [torch.zeros_like(t) for t in params]
        if not running:
            with torch.enable_grad():
                q_leaf = q.detach().requires_grad_(True)
                value = self.cost(model.output(q_leaf), y).sum()
                grads = torch.autograd.grad(value, [q_leaf] + params, allow_unused=True)
            a = grads[0]
            g = [gi + (0 if gg is None else gg) for gi, gg in zip(g, grads[1:])]
        # backward on (q, p, a, b, g), step −h: the stage at fraction c of the step reads t_{n+1} − c·h
        for n in reversed(range(points - 1)):
            u1, u0 = x[:, n + 1], x[:, n]
            inputs = {0.0: u1, 0.5: 0.5 * (u0 + u1), 1.0: u0}
            if running:
                y1, y0 = y[:, n + 1], y[:, n]
                targets = {0.0: y1, 0.5: 0.5 * (y0 + y1) if y.is_floating_point() else y1, 1.0: y0}
            else:
                targets = {0.0: None, 0.5: None, 1.0: None}

            def field(c, state):
                f, dlam, dg = self._augmented(model, params, *state[:4], inputs[c], targets[c], running)
                return [f[0], f[1], dlam[0], dlam[1], *dg]

            q, p, a, b, *g = self.integrator.ode_step(field, [q, p, a, b, *g], -h)
        with torch.enable_grad():  # dL/dθ += (∂Φ(0)/∂θ)ᵀλ(0)
            initial = model.init_state(x)
        g = [gi + (0 if gg is None else gg) for gi, gg in zip(g, initial_state_vjp([initial], [(a, b)], params))]
        by_id = {id(t): gi / batch for t, gi in zip(params, g)}
        grads_by_name = {name: by_id[id(t)] for name, t in trainable(model)}
        return Estimate(grads=grads_by_name, loss=loss.detach(), prediction=outputs, info={"mode": mode})

