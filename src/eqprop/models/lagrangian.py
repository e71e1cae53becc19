"""Lagrangian models L(s, ṡ, θ, x_t) and their discrete action: the systems GLEP trains.

A user writes one class::

    class MyLagrangian(LagrangianModel):
        def lagrangian(self, s, s_dot, x_t): ...   # -> [batch]; s, s_dot: [batch, n]
        def init_state(self, x): ...               # -> s_0, or (s_0, p_0); x: [batch, T, ...]
        def output(self, s): ...                   # the readout the cost compares with y
        # optional: end_state(x) (fixed-end problems), a step size `dt`, quadrature = "midpoint"

and the discrete Lagrangian, the discrete action, the momenta and every derivative follow by
autograd. States are flat: s has shape [batch, n].

Discretisation (a variational integrator, Marsden & West 2001; docs/write_your_own_lagrangian.md): with step Δt,

    L_d(s_k, s_{k+1}, x_k) = L(q_k, (s_{k+1} − s_k)/Δt, x_k),
    q_k = s_k                   (quadrature="left": for L = ½|ṡ|² − V(s) this is Störmer–Verlet,
                                 s_{k+1} = 2s_k − s_{k−1} − Δt² ∇V(s_k, x_k))
    q_k = (s_k + s_{k+1}) / 2   (quadrature="midpoint")

and the action of a trajectory s_0..s_N (N = T, the number of input steps) is Σ_{k<N} Δt L_d.
The discrete momenta are P_0 = −Δt ∂₁L_d(s_0, s_1) and P_N = +Δt ∂₂L_d(s_{N−1}, s_N) (plus the
endpoint β-cost term when nudged); ``init_state`` may return p_0 = P_0, which is ≈ ∂L/∂ṡ at t = 0
(the initial velocity for L = ½|ṡ|² − V). Without p_0 the system starts at rest (P_0 = 0).

This module knows nothing of boundary conditions, solvers, costs or learners.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, NonFiniteError, ShapeError
from ._checks import check_per_sample

__all__ = ["LagrangianModel", "QUADRATURES"]

QUADRATURES = ("left", "midpoint")


class LagrangianModel(nn.Module):
    """A system defined by its Lagrangian L(s, ṡ, θ, x_t); trained by :class:`eqprop.learners.GLEP`.

    Subclasses implement :meth:`lagrangian`, :meth:`init_state` and :meth:`output`. Attributes:
    ``dt`` (float, buffer or ``nn.Parameter``; default 0.1), ``quadrature`` ("left" or
    "midpoint"), ``input_size`` (optional: the width of x_t, checked by the learners).

    Paper: Pourcel, Basu, Ernoult & Gilra 2025, "Generalized Lagrangian Equilibrium Propagation".
    Check: tests/test_glep.py trains a Lagrangian written in the test and compares GLEP with the
    implicit function theorem on the whole discrete system.
    """

    dt: float | Tensor = 0.1
    quadrature: str = "left"
    input_size: int | None = None

    # -- the physics a user writes -------------------------------------------------------------
    def lagrangian(self, s: Tensor, s_dot: Tensor, x_t: Tensor) -> Tensor:
        """L(s, ṡ, x_t) per sample, shape [batch]."""
        raise NotImplementedError(f"{type(self).__name__} must implement lagrangian(s, s_dot, x_t) -> [batch].")

    def init_state(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """s_0 [batch, n], or (s_0, p_0) with p_0 the initial discrete momentum P_0."""
        raise NotImplementedError(f"{type(self).__name__} must implement init_state(x) -> s_0 or (s_0, p_0).")

    def end_state(self, x: Tensor) -> Tensor:
        """s_N for fixed-end problems; by default the start point s_0 (a trajectory that returns)."""
        return self.initial_conditions(x)[0]

    def output(self, s: Tensor) -> Tensor:
        """The readout the cost compares with the target."""
        raise NotImplementedError(f"{type(self).__name__} must implement output(s).")

    # -- derived ---------------------------------------------------------------------------------
    def step_size(self) -> Tensor:
        """Δt as a tensor of the model's dtype (a trainable ``dt`` keeps its graph)."""
        dt = self.dt
        if isinstance(dt, Tensor):
            if not bool(torch.isfinite(dt).all()) or float(dt) <= 0.0:
                raise NonFiniteError(f"The step size dt of {type(self).__name__} must be finite and positive, got {float(dt)}.")
            return dt
        ref = next(iter(self.parameters()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        if not float(dt) > 0.0:
            raise ConfigurationError(f"The step size dt of {type(self).__name__} must be positive, got {dt}.")
        return torch.tensor(float(dt), dtype=dtype, device=device)

    def initial_conditions(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(s_0, P_0): ``init_state``'s pair, or (s_0, 0) when it returns a position only."""
        init = self.init_state(x)
        if isinstance(init, Tensor):
            s0, p0 = init, torch.zeros_like(init)
        else:
            s0, p0 = init
        if s0.dim() != 2 or s0.shape[0] != x.shape[0] or p0.shape != s0.shape:
            raise ShapeError(
                f"init_state must return s_0 (and p_0) shaped [batch, n] with batch {x.shape[0]}, got "
                f"{tuple(s0.shape)} and {tuple(p0.shape)}; flatten the state to one axis."
            )
        return s0, p0

    def check_physics(self, x: Tensor) -> None:
        """Check what the user's methods return on ``x`` [batch, T, ...]: ``init_state`` s_0 (and
        p_0) shaped [batch, n] and ``lagrangian`` one value per sample. Every learner and baseline
        calls it (once per input shape) before solving; a ShapeError names the method and the fix."""
        if x.dim() < 2 or x.shape[1] < 1:
            return  # the learner's sequence check names the expected input shape
        s0, _ = self.initial_conditions(x)
        value = self.lagrangian(s0, torch.zeros_like(s0), x[:, 0])
        check_per_sample(f"{type(self).__name__}.lagrangian", value, x.shape[0])

    def discrete_lagrangian(self, s_a: Tensor, s_b: Tensor, x_k: Tensor, dt: Tensor | None = None) -> Tensor:
        """L_d(s_a, s_b, x_k) = L(q, (s_b − s_a)/Δt, x_k), q by the model's quadrature; [batch]."""
        dt = self.step_size() if dt is None else dt
        if self.quadrature == "left":
            q = s_a
        elif self.quadrature == "midpoint":
            q = 0.5 * (s_a + s_b)
        else:
            raise ConfigurationError(f"Unknown quadrature {self.quadrature!r} on {type(self).__name__}; choose 'left' or 'midpoint'.")
        return self.lagrangian(q, (s_b - s_a) / dt, x_k)

    def step_action(self, s_a: Tensor, s_b: Tensor, x_k: Tensor, dt: Tensor | None = None) -> Tensor:
        """a_k = Δt L_d(s_a, s_b, x_k), per sample: one term of the discrete action."""
        dt = self.step_size() if dt is None else dt
        return dt * self.discrete_lagrangian(s_a, s_b, x_k, dt)

    def action_terms(self, trajectory: Tensor, x: Tensor) -> Tensor:
        """[batch, N]: Δt L_d(s_k, s_{k+1}, x_k) for k < N, in one call (time folded into the batch).

        ``trajectory`` is [batch, N + 1, n], ``x`` is [batch, N, ...].
        """
        batch, points, width = trajectory.shape
        steps = points - 1
        s_a = trajectory[:, :-1].reshape(batch * steps, width)
        s_b = trajectory[:, 1:].reshape(batch * steps, width)
        x_flat = x.reshape(batch * steps, *x.shape[2:])
        return self.step_action(s_a, s_b, x_flat).reshape(batch, steps)
