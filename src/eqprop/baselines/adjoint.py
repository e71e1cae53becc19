"""The continuous adjoint method for a Hamiltonian model: the baseline of continuous-time RHEL.

Same setting as :class:`eqprop.learners.ContinuousRHEL`: inputs x[:, n] = u(t_n) on the grid
t_n = n·h, a terminal target [batch, ...] or a running target [batch, N + 1, ...] (loss ∫ℓ dt).
With f(Φ, t) = (∂_pT(p), −∂_qV(q, u(t))) and λ = ∂L/∂Φ(t), integrate backward from t = T

    Φ̇ = f,   λ̇ = −(∂f/∂Φ)ᵀλ − ∂_Φℓ_t,   ġ = −(∂f/∂θ)ᵀλ − ∂_θℓ_t
    λ(T) = ∂_Φℓ_T(Φ(T)),   g(T) = ∂_θℓ_T,   dL/dθ = g(0) + (∂Φ(0)/∂θ)ᵀλ(0)

with classical RK4 (step −h; u and y linearly interpolated at the half steps), after an RK4
forward pass that keeps only Φ(T) — the state is re-integrated backward, as in Chen et al. 2018
(torchdiffeq's ``odeint_adjoint``). Memory independent of N; error O(h²) from the input
interpolation (O(h⁴) for a constant input). RHEL computes the same λ physically:
∂_εΦ_echo(s) = Σ J λ(T − s) (ALGORITHMS.md §2).

Check: tests/test_rhel_continuous.py (vs ContinuousRHEL and torchdiffeq, slope ≈ 2 in h).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..estimators.base import Estimate, Learner
from ..learners.rhel_continuous import _running_weights, _step_size, check_continuous_model
from ..estimators.sequence import check_sequence, initial_state_vjp, target_mode

__all__ = ["Adjoint"]


class Adjoint(Learner):
    """dL/dθ by the continuous adjoint method (RK4 forward, RK4 backward on (Φ, λ, g)).

    Args:
        step_size: the grid spacing h of the samples in x. cost: SquaredError by default.
    """

    def __init__(self, step_size: float, cost: Cost | None = None) -> None:
        self.step_size = _step_size(step_size)
        self.cost = SquaredError() if cost is None else cost

    def __repr__(self) -> str:
        return f"Adjoint(step_size={self.step_size}, cost={self.cost!r})"

    @staticmethod
    def _field(model, q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        return model.kinetic_grad(p), -model.potential_grad(q, u)

    def _rk4(self, model, q, p, u0, u_mid, u1, h):
        k1 = self._field(model, q, p, u0)
        k2 = self._field(model, q + 0.5 * h * k1[0], p + 0.5 * h * k1[1], u_mid)
        k3 = self._field(model, q + 0.5 * h * k2[0], p + 0.5 * h * k2[1], u_mid)
        k4 = self._field(model, q + h * k3[0], p + h * k3[1], u1)
        q = q + h / 6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        p = p + h / 6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        return q, p

    def predict(self, model, x: Tensor) -> Tensor:
        """Outputs at every grid point, [batch, N + 1, ...] (RK4)."""
        check_continuous_model(model)
        check_sequence(model, x)
        return self._forward(model, x)[2]

    def _forward(self, model, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """RK4 over the grid without a graph: the final (q, p) and the outputs at every grid point."""
        with torch.no_grad():
            q, p = model.init_state(x)
            outs = [model.output(q)]
            for n in range(x.shape[1] - 1):
                q, p = self._rk4(model, q, p, x[:, n], 0.5 * (x[:, n] + x[:, n + 1]), x[:, n + 1], self.step_size)
                outs.append(model.output(q))
        return q, p, torch.stack(outs, dim=1)

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
        params = [p for p in model.parameters() if p.requires_grad]
        q, p, outputs = self._forward(model, x)  # the forward pass, once: final state and outputs
        if running:
            w = x.new_tensor(_running_weights(points, h))
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
        # backward RK4 on (q, p, a, b, g), step −h
        for n in reversed(range(points - 1)):
            u1, u0 = x[:, n + 1], x[:, n]
            um = 0.5 * (u0 + u1)
            if running:
                y1, y0 = y[:, n + 1], y[:, n]
                ym = 0.5 * (y0 + y1) if y.is_floating_point() else y1
            else:
                y1 = ym = y0 = None
            state = (q, p, a, b, g)
            stages = []
            for coeff, u_t, y_t in ((0.0, u1, y1), (0.5, um, ym), (0.5, um, ym), (1.0, u0, y0)):
                if stages:
                    d = stages[-1]
                    cur = _axpy(state, d, -coeff * h)
                else:
                    cur = state
                f, dlam, dg = self._augmented(model, params, cur[0], cur[1], cur[2], cur[3], u_t, y_t, running)
                stages.append((f[0], f[1], dlam[0], dlam[1], dg))
            q, p, a, b, g = _rk4_combine(state, stages, -h)
        with torch.enable_grad():  # dL/dθ += (∂Φ(0)/∂θ)ᵀλ(0)
            initial = model.init_state(x)
        g = [gi + (0 if gg is None else gg) for gi, gg in zip(g, initial_state_vjp([initial], [(a, b)], params))]
        by_id = {id(t): gi / batch for t, gi in zip(params, g)}
        grads_by_name = {name: by_id[id(t)] for name, t in model.named_parameters() if t.requires_grad}
        return Estimate(grads=grads_by_name, loss=loss.detach(), prediction=outputs, info={"mode": mode})


def _axpy(state, direction, scale):
    q, p, a, b, g = state
    dq, dp, da, db, dg = direction
    return (q + scale * dq, p + scale * dp, a + scale * da, b + scale * db, [gi + scale * di for gi, di in zip(g, dg)])


def _rk4_combine(state, stages, h):
    weights = (1 / 6, 1 / 3, 1 / 3, 1 / 6)
    q, p, a, b, g = state
    for w, (dq, dp, da, db, dg) in zip(weights, stages):
        q, p, a, b = q + h * w * dq, p + h * w * dp, a + h * w * da, b + h * w * db
        g = [gi + h * w * di for gi, di in zip(g, dg)]
    return q, p, a, b, g
