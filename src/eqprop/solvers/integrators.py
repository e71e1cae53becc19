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
input u) — in closed form for the built-in HRUs, by autograd for any other model.

This module knows models only through their Hamiltonian methods; it knows nothing of costs or
learners.
"""

from __future__ import annotations

from torch import Tensor

from ..errors import ConfigurationError
from ..models.hamiltonian import HamiltonianModel

__all__ = ["Integrator", "PositionVerlet", "LeapFrog", "SymplecticEuler"]


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

    def echo(self, kernel, q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """One echo step of a batch of copies through an echo kernel (eqprop.models.echo_kernels),
        which applies each sub-step and accumulates its share of ∂_θS; the fast path of RHEL."""
        raise ConfigurationError(f"{type(self).__name__} is not reversible and has no echo step; use PositionVerlet or LeapFrog.")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(dt={self.dt!r})"


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
