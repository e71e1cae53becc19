"""Time integrators for Hamiltonian models: one step (q, p) → (q', p') with input u_k.

Every integrator works on the scaled Hamiltonian H̃ = dt·H (see ``eqprop.models.hamiltonian``),
so a scalar or per-coordinate trainable step size needs no special case. Each declares
``reversible``: Σ M_u Σ M_u = id with Σ(q, p) = (q, −p), which RHEL needs and checks.

A reversible integrator also gives its *generating sum* S (Pourcel & Ernoult 2025; ALGORITHMS.md
§2): the step is the composition of drifts and kicks, S adds each sub-step's energy times its
fraction of the step at the point where that sub-step evaluated it, and ∂_θS summed along the echo
is what RHEL contrasts, for every parameter (dt included). :meth:`echo` does one step of a batch
of echo copies as its sequence of sub-steps on an echo kernel (eqprop.models.echo_kernels:
``drift``/``kick`` with their fractions), which accumulates Σ_c w_c ∂_θS_c (and the same for the
input u) — in closed form for the built-in HRUs. :meth:`echo_step` is the same step by autograd
with arbitrary per-row weights (kept for checks and diagnostics).

This module knows models only through their Hamiltonian methods; it knows nothing of costs or
learners.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.hamiltonian import HamiltonianModel, default_kinetic

__all__ = ["Integrator", "PositionVerlet", "LeapFrog", "SymplecticEuler", "EchoContrast"]


class EchoContrast:
    """Weighted sums Σ_c w_c ∂S_c/∂θ and Σ_c w_c ∂S_c/∂u of one echo step (per parameter)."""

    def __init__(self, params: Sequence[Tensor]) -> None:
        self.params = list(params)
        self.grads: list[Tensor | None] = [None] * len(self.params)
        self.input_grad: Tensor | None = None

    def add(self, grads: Sequence[Tensor | None]) -> None:
        for i, g in enumerate(grads):
            if g is not None:
                self.grads[i] = g if self.grads[i] is None else self.grads[i] + g

    def add_input(self, g: Tensor | None) -> None:
        if g is not None:
            self.input_grad = g if self.input_grad is None else self.input_grad + g


def _weights_like(w: Tensor, x: Tensor) -> Tensor:
    return w.reshape(-1, *([1] * (x.dim() - 1)))


class Integrator:
    """Base class. ``dt=None``: use the model's own (trainable) ``dt``."""

    reversible: bool = False
    order: int = 1

    def __init__(self, dt: float | None = None) -> None:
        if dt is not None:
            try:
                ok = float(dt) > 0 and float(dt) < float("inf")
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigurationError(f"The step dt must be a positive finite number or None (the model's dt), got {dt!r}.")
            dt = float(dt)
        self.dt = dt

    def step_size(self, model: HamiltonianModel) -> Tensor:
        return model.step_size(self.dt)

    def step(self, model: HamiltonianModel, q: Tensor, p: Tensor, u: Tensor, dt: Tensor,
             create_graph: bool = False) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def echo_step(self, model: HamiltonianModel, q: Tensor, p: Tensor, u: Tensor, dt: Tensor,
                  weights: Tensor, contrast: EchoContrast) -> tuple[Tensor, Tensor]:
        raise ConfigurationError(f"{type(self).__name__} is not reversible and has no echo step; use PositionVerlet or LeapFrog.")

    def echo(self, kernel, q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """One echo step of a batch of copies through an echo kernel (eqprop.models.echo_kernels),
        which applies each sub-step and accumulates its share of ∂_θS; the fast path of RHEL."""
        raise ConfigurationError(f"{type(self).__name__} is not reversible and has no echo step; use PositionVerlet or LeapFrog.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dt={self.dt!r})"

    # -- shared pieces of the echo step ---------------------------------------------------------
    @staticmethod
    def _potential_point(model: HamiltonianModel, q: Tensor, u: Tensor, dt: Tensor, weights: Tensor,
                         fraction: float, contrast: EchoContrast) -> Tensor:
        """Force ∂Ṽ/∂q at q (per copy), adding fraction·Σ_c w_c ∂_θṼ(q, u) into the contrast."""
        with torch.enable_grad():
            q_leaf = q.detach().requires_grad_(True)
            u_leaf = u.detach().requires_grad_(True)
            energy = model.scaled_potential(q_leaf, u_leaf, dt)
            wanted = [q_leaf, u_leaf] + contrast.params
            grads = torch.autograd.grad(energy, wanted, grad_outputs=fraction * weights, allow_unused=True)
        force = grads[0]
        safe = torch.where(weights != 0, weights, torch.ones_like(weights))
        force = force / (fraction * _weights_like(safe, force))
        if bool((weights == 0).any()):  # copies outside the contrast: their force, unweighted
            rows = weights == 0
            force[rows] = dt * model.potential_grad(q[rows], u[rows]) if dt.dim() == 0 else \
                model.potential_grad(q[rows], u[rows]) * dt
        contrast.add_input(grads[1])
        contrast.add(grads[2:])
        return force.detach()

    @staticmethod
    def _kinetic_point(model: HamiltonianModel, p: Tensor, dt: Tensor, weights: Tensor, fraction: float,
                       contrast: EchoContrast) -> Tensor:
        """Velocity ∂T̃/∂p at p, adding fraction·Σ_c w_c ∂_θT̃(p) into the contrast."""
        if default_kinetic(model):
            velocity = dt * p
            for i, param in enumerate(contrast.params):
                if param is dt:  # ∂(dt·|p|²/2)/∂dt, the only parameter of the default kinetic energy
                    terms = 0.5 * p * p * _weights_like(weights, p) * fraction
                    g = terms.sum() if dt.dim() == 0 else terms.reshape(-1, *dt.shape).sum(0)
                    contrast.add([g if j == i else None for j in range(len(contrast.params))])
            return velocity
        with torch.enable_grad():
            p_leaf = p.detach().requires_grad_(True)
            energy = model.scaled_kinetic(p_leaf, dt)
            grads = torch.autograd.grad(energy, [p_leaf] + contrast.params, grad_outputs=fraction * weights,
                                        allow_unused=True)
        safe = torch.where(weights != 0, weights, torch.ones_like(weights))
        velocity = grads[0] / (fraction * _weights_like(safe, p))
        if bool((weights == 0).any()):
            rows = weights == 0
            velocity[rows] = model.kinetic_grad(p[rows]) * dt
        contrast.add(grads[1:])
        return velocity.detach()


class PositionVerlet(Integrator):
    """Position Verlet, drift(dt/2) ∘ kick(dt) ∘ drift(dt/2); exactly reversible, order 2.

        q_h = q + (dt/2) ∂_pT(p);  p' = p − dt ∂_qV(q_h, u_k);  q' = q_h + (dt/2) ∂_pT(p')

    The force is evaluated at the half-step position q_h (at q it is no longer reversible).
    Generating sum S = (dt/2)T(p) + dt V(q_h, u) + (dt/2)T(p'). Check: tests/test_rhel.py
    (RHEL = BPTT through this step, O(ε²); the ε = 0 echo returns to the start to round-off).
    """

    reversible = True
    order = 2

    def step(self, model, q, p, u, dt, create_graph=False):
        q_half = q + 0.5 * dt * model.kinetic_grad(p, create_graph)
        p_new = p - dt * model.potential_grad(q_half, u, create_graph)
        q_new = q_half + 0.5 * dt * model.kinetic_grad(p_new, create_graph)
        return q_new, p_new

    def echo(self, kernel, q, p, u):
        q_half = kernel.drift(q, p, 0.5)
        p_new = kernel.kick(p, q_half, u, 1.0)
        return kernel.drift(q_half, p_new, 0.5), p_new

    def echo_step(self, model, q, p, u, dt, weights, contrast):
        q_half = q + 0.5 * self._kinetic_point(model, p, dt, weights, 0.5, contrast)
        p_new = p - self._potential_point(model, q_half, u, dt, weights, 1.0, contrast)
        q_new = q_half + 0.5 * self._kinetic_point(model, p_new, dt, weights, 0.5, contrast)
        return q_new, p_new


class LeapFrog(Integrator):
    """Leapfrog / velocity Verlet, kick(dt/2) ∘ drift(dt) ∘ kick(dt/2); exactly reversible, order 2.

        p_h = p − (dt/2) ∂_qV(q, u_k);  q' = q + dt ∂_pT(p_h);  p' = p_h − (dt/2) ∂_qV(q', u_k)

    Generating sum S = (dt/2)V(q, u) + dt T(p_h) + (dt/2)V(q', u). Check: tests/test_rhel.py.
    """

    reversible = True
    order = 2

    def step(self, model, q, p, u, dt, create_graph=False):
        p_half = p - 0.5 * dt * model.potential_grad(q, u, create_graph)
        q_new = q + dt * model.kinetic_grad(p_half, create_graph)
        p_new = p_half - 0.5 * dt * model.potential_grad(q_new, u, create_graph)
        return q_new, p_new

    def echo(self, kernel, q, p, u):
        p_half = kernel.kick(p, q, u, 0.5)
        q_new = kernel.drift(q, p_half, 1.0)
        return q_new, kernel.kick(p_half, q_new, u, 0.5)

    def echo_step(self, model, q, p, u, dt, weights, contrast):
        p_half = p - 0.5 * self._potential_point(model, q, u, dt, weights, 0.5, contrast)
        q_new = q + self._kinetic_point(model, p_half, dt, weights, 1.0, contrast)
        p_new = p_half - 0.5 * self._potential_point(model, q_new, u, dt, weights, 0.5, contrast)
        return q_new, p_new


class SymplecticEuler(Integrator):
    """Symplectic Euler, kick(dt) then drift(dt) (LinOSS-IMEX style); symplectic, *not* reversible.

        p' = p − dt ∂_qV(q, u_k);  q' = q + dt ∂_pT(p')

    Fine for BPTT; RHEL refuses it (its echo would not retrace the forward trajectory).
    """

    reversible = False
    order = 1

    def step(self, model, q, p, u, dt, create_graph=False):
        p_new = p - dt * model.potential_grad(q, u, create_graph)
        q_new = q + dt * model.kinetic_grad(p_new, create_graph)
        return q_new, p_new
