"""Boundary-value and shooting solvers for the discrete Euler–Lagrange equations (GLEP).

Action of a trajectory s_0..s_N under a nudge (Pourcel, Basu, Ernoult & Gilra 2025; docs/theory.md, "GLEP"):

    A_β[s] = Σ_{k<N} a_k(s_k, s_{k+1}) + Σ_k e_k(s_k),   a_k = Δt L_d(s_k, s_{k+1}, x_k),

where the nudge object supplies e_k = β Δt w_k c(s_k, y_k) through ``grad(k, s)`` (∂e_k/∂s, or
None) and ``value(trajectory)`` (Σ_k e_k, [batch]); ``None`` means β = 0. Stationarity at an
interior point is the discrete Euler–Lagrange equation

    EL_k:  D₂a_{k−1}(s_{k−1}, s_k) + D₁a_k(s_k, s_{k+1}) + ∇e_k(s_k) = 0,

and the momenta are P_0 = −D₁a_0(s_0, s_1) − ∇e_0(s_0), P_N = D₂a_{N−1}(s_{N−1}, s_N) + ∇e_N(s_N).

* :meth:`BoundaryNewton.shoot_forward` — constant initial value: (s_0, P_0) fixed, each EL_k
  solved for s_{k+1} by a batched Newton step (the forward run of the system).
* :meth:`BoundaryNewton.shoot_backward` — the echo (parametric final value): (s_N, P_N) fixed,
  each EL_k solved for s_{k−1}, inputs and targets replayed in reverse.
* :meth:`BoundaryNewton.solve` — fixed end points (s_0, s_N given) or periodic (s_0 = s_N):
  Newton on all interior EL_k at once with the banded Jacobian of :mod:`eqprop.solvers.newton`.

``differentiable`` re-applies one Newton correction per step with the autograd graph kept; at a
converged solution that is exactly the implicit derivative (the baseline and the R_N term use it).

This module knows models only through ``step_action`` / ``action_terms`` / ``step_size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import ConfigurationError, NonFiniteError
from .newton import banded_jacobian, default_tol, newton_step, newton_update, report_failure

__all__ = ["BoundaryNewton", "BoundaryStatus", "step_partials", "start_momentum", "end_momentum", "BOUNDARIES"]

BOUNDARIES = ("fixed_ends", "periodic")


def step_partials(model, s_a: Tensor, s_b: Tensor, x_k: Tensor, dt: Tensor, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """(D₁a, D₂a) of a = Δt L_d(s_a, s_b, x_k); with ``create_graph`` both keep their graph."""
    with torch.enable_grad():
        a_leaf = s_a if (create_graph and s_a.requires_grad) else s_a.detach().requires_grad_(True)
        b_leaf = s_b if (create_graph and s_b.requires_grad) else s_b.detach().requires_grad_(True)
        action = model.step_action(a_leaf, b_leaf, x_k, dt).sum()
        d1, d2 = torch.autograd.grad(action, (a_leaf, b_leaf), create_graph=create_graph)
    return d1, d2


def _nudge_grad(nudge, k: int, s: Tensor, create_graph: bool = False) -> Tensor | None:
    return None if nudge is None else nudge.grad(k, s, create_graph)


def start_momentum(model, trajectory: Tensor, x: Tensor, nudge=None, create_graph: bool = False) -> Tensor:
    """P_0 = −D₁a_0(s_0, s_1) − ∇e_0(s_0)."""
    d1, _ = step_partials(model, trajectory[:, 0], trajectory[:, 1], x[:, 0], model.step_size(), create_graph)
    g = _nudge_grad(nudge, 0, trajectory[:, 0], create_graph)
    return -d1 if g is None else -d1 - g


def end_momentum(model, trajectory: Tensor, x: Tensor, nudge=None, create_graph: bool = False) -> Tensor:
    """P_N = D₂a_{N−1}(s_{N−1}, s_N) + ∇e_N(s_N)."""
    steps = x.shape[1]
    _, d2 = step_partials(model, trajectory[:, -2], trajectory[:, -1], x[:, -1], model.step_size(), create_graph)
    g = _nudge_grad(nudge, steps, trajectory[:, -1], create_graph)
    return d2 if g is None else d2 + g


@dataclass(frozen=True)
class BoundaryStatus:
    """How a trajectory solve ended: the worst Newton residual over its solves (one per time step
    when shooting, one for a whole-trajectory solve), whether every solve met the tolerance, and
    how many solves there were. ``a | b`` is the status of both solves together."""

    residual: float
    converged: bool
    solves: int

    def __or__(self, other: "BoundaryStatus") -> "BoundaryStatus":
        return BoundaryStatus(max(self.residual, other.residual), self.converged and other.converged,
                              self.solves + other.solves)

    def __str__(self) -> str:
        word = "converged" if self.converged else "did not converge"
        return f"{word} ({self.solves} Newton solves), worst residual {self.residual:.3e}"


class BoundaryNewton:
    """Newton solvers for the discrete Euler–Lagrange equations, batched over samples.

    Args:
        tol: residual tolerance (max-norm of the EL residual); None: 1e-12 in float64, 1e-5 else.
        max_steps: Newton iterations per solve (per time step when shooting).
        on_failure: "warn" (:class:`eqprop.errors.ConvergenceWarning`) or "raise"
            (:class:`eqprop.errors.ConvergenceError`) when a solve misses ``tol``.

    Cost: shooting takes n + 1 reverse passes of the Lagrangian per Newton iteration and step
    (one residual, n Jacobian rows; n = state width); a boundary-value solve takes c·n + 1 passes
    per iteration over the whole trajectory (c = 3 to 5 colours) and one dense solve of size
    (N − 1)·n per sample. For L = ½ṡᵀMṡ − V(s) with quadrature="left" each shooting step is linear
    in the unknown: one Newton iteration solves it exactly.

    Every solve returns ``(trajectory, status)`` with a :class:`BoundaryStatus`, as the
    relaxation solvers return ``(state, status)``.
    """

    def __init__(self, tol: float | None = None, max_steps: int = 50, on_failure: str = "warn") -> None:
        if on_failure not in ("warn", "raise"):
            raise ConfigurationError(f"Unknown on_failure {on_failure!r}; choose 'warn' or 'raise'.")
        if tol is not None and not (isinstance(tol, (int, float)) and 0 <= tol < math.inf):
            raise ConfigurationError(f"tol must be a non-negative number or None (the dtype's default), got {tol!r}.")
        if not isinstance(max_steps, (int, float)) or not math.isfinite(max_steps) or int(max_steps) != max_steps or max_steps < 1:
            raise ConfigurationError(f"max_steps must be an integer ≥ 1, got {max_steps!r}.")
        self.tol, self.max_steps, self.on_failure = tol, int(max_steps), on_failure

    def __repr__(self) -> str:
        return f"BoundaryNewton(tol={self.tol}, max_steps={self.max_steps}, on_failure={self.on_failure!r})"

    def _tol(self, ref: Tensor) -> float:
        return default_tol(ref.dtype) if self.tol is None else float(self.tol)

    # -- one unknown point at a time (shooting) --------------------------------------------------
    def _local(self, partial, guess: Tensor, known: Tensor, what: str, cache: dict) -> tuple[Tensor, Tensor, float]:
        """Solve partial(u)[0] + known = 0 for u; return (u, the other partial at u, the residual).

        A chord method: the Jacobian of the previous time step (``cache``) is reused while it
        contracts the residual by 10× per iteration, and recomputed otherwise (for a quadratic
        kinetic energy with quadrature="left" it is constant, so it is computed once per run).
        """
        tol, u = self._tol(guess), guess.detach()
        previous = float("inf")
        for it in range(self.max_steps + 1):
            own, other = partial(u, False)
            r = (own + known).unsqueeze(1)
            res = float(r.abs().max())
            _check_finite_residual(res, what)
            if res <= tol or it == self.max_steps:
                if res > tol:
                    report_failure(what, res, tol, it, self.on_failure)
                return u, other, res
            if cache.get("jac") is None or res > 0.1 * previous:
                def residual(z: Tensor) -> Tensor:
                    return (partial(z[:, 0], True)[0] + known).unsqueeze(1)

                r, cache["jac"] = banded_jacobian(residual, u.unsqueeze(1), periodic=False)
            previous = res
            u = newton_update(u.unsqueeze(1), r, cache["jac"])[:, 0].detach()
        raise AssertionError("unreachable")  # pragma: no cover

    def shoot_forward(self, model, x: Tensor, s0: Tensor, p0: Tensor, nudge=None) -> tuple[Tensor, BoundaryStatus]:
        """Constant initial value: the trajectory [batch, N + 1, n] from (s_0, P_0) under the nudge, and its status."""
        dt = model.step_size().detach()
        states = [s0.detach()]
        g0 = _nudge_grad(nudge, 0, s0)
        known = p0.detach() if g0 is None else p0.detach() + g0
        prev, cache, residuals = None, {}, []
        for k in range(x.shape[1]):
            s_k, x_k = states[k], x[:, k]
            guess = s_k + dt * p0.detach() if prev is None else 2 * s_k - prev

            def partial(u: Tensor, graph: bool, s_k=s_k, x_k=x_k):
                return step_partials(model, s_k, u, x_k, dt, create_graph=graph)

            s_next, d2, res = self._local(partial, guess, known, "forward (initial-value) solve", cache)
            residuals.append(res)
            g = _nudge_grad(nudge, k + 1, s_next)
            known = d2 if g is None else d2 + g
            prev = s_k
            states.append(s_next)
        return torch.stack(states, dim=1), self._status(residuals, s0)

    def shoot_backward(self, model, x: Tensor, s_end: Tensor, p_end: Tensor, nudge=None) -> tuple[Tensor, BoundaryStatus]:
        """Echo (parametric final value): the trajectory [batch, N + 1, n] ending at (s_N, P_N), and its status.

        Solves D₂a_{N−1}(s_{N−1}, s_N) + ∇e_N(s_N) = P_N for s_{N−1}, then EL_k for s_{k−1},
        k = N−1..1, replaying inputs (and, through the nudge, targets) in reverse.
        """
        dt = model.step_size().detach()
        steps = x.shape[1]
        states = [s_end.detach()]
        g = _nudge_grad(nudge, steps, s_end)
        known = -p_end.detach() if g is None else g - p_end.detach()
        nxt, cache, residuals = None, {}, []
        for k in range(steps, 0, -1):
            s_k, x_prev = states[-1], x[:, k - 1]
            guess = s_k - dt * p_end.detach() if nxt is None else 2 * s_k - nxt

            def partial(u: Tensor, graph: bool, s_k=s_k, x_prev=x_prev):
                d1, d2 = step_partials(model, u, s_k, x_prev, dt, create_graph=graph)
                return d2, d1

            s_prev, d1, res = self._local(partial, guess, known, "echo (final-value) solve", cache)
            residuals.append(res)
            g = _nudge_grad(nudge, k - 1, s_prev)
            known = d1 if g is None else d1 + g
            nxt = s_k
            states.append(s_prev)
        return torch.stack(states[::-1], dim=1), self._status(residuals, s_end)

    def _status(self, residuals: list[float], ref: Tensor) -> BoundaryStatus:
        worst = max(residuals, default=0.0)
        return BoundaryStatus(worst, worst <= self._tol(ref), len(residuals))

    def differentiable_forward(self, model, x: Tensor, trajectory: Tensor, s0: Tensor, p0: Tensor) -> Tensor:
        """The free forward trajectory with its graph to θ (and to s_0, p_0), from a converged one.

        Step k: s_{k+1} = s*_{k+1} − J_k⁻¹ r_k, r_k the EL residual evaluated with the graph-carrying
        s_{k−1}, s_k and s*_{k+1} detached: the value is s*_{k+1} (r ≈ 0) and the derivative is the
        implicit-function derivative −J_k⁻¹ ∂r_k, exactly as autograd through a converged solve.
        """
        dt = model.step_size()
        states = [s0]
        with torch.enable_grad():
            known = p0
            for k in range(x.shape[1]):
                s_k, target = states[k], trajectory[:, k + 1].detach()

                def residual(z: Tensor, s_k=s_k, known=known, k=k) -> Tensor:
                    d1, _ = step_partials(model, s_k.detach(), z[:, 0], x[:, k], dt.detach(), create_graph=True)
                    return (d1 + known.detach()).unsqueeze(1)

                _, jac = banded_jacobian(residual, target.unsqueeze(1), periodic=False)
                d1, _ = step_partials(model, s_k, target, x[:, k], dt, create_graph=True)
                r = (d1 + known).unsqueeze(1)
                s_next = newton_update(target.unsqueeze(1), r, jac)[:, 0]
                _, d2 = step_partials(model, s_k, s_next, x[:, k], dt, create_graph=True)
                known = d2
                states.append(s_next)
        return torch.stack(states, dim=1)

    # -- the whole trajectory at once (fixed ends, periodic) -------------------------------------
    def solve(self, model, x: Tensor, boundary: str, guess: Tensor, nudge=None) -> tuple[Tensor, BoundaryStatus]:
        """Stationary trajectory [batch, N + 1, n] for ``boundary`` "fixed_ends" or "periodic", and its status.

        fixed_ends: s_0 = guess[:, 0] and s_N = guess[:, N] are kept, s_1..s_{N−1} solve EL_k.
        periodic: s_N = s_0, and s_0..s_{N−1} solve EL_k cyclically (inputs N-periodic).
        """
        if boundary not in BOUNDARIES:
            raise ConfigurationError(f"Unknown boundary {boundary!r} for BoundaryNewton.solve; choose 'fixed_ends' or 'periodic'.")
        periodic = boundary == "periodic"
        guess = guess.detach()
        z = guess[:, :-1] if periodic else guess[:, 1:-1]
        if z.shape[1] == 0:
            return guess, BoundaryStatus(0.0, True, 0)

        def assemble(z: Tensor) -> Tensor:
            if periodic:
                return torch.cat([z, z[:, :1]], dim=1)
            return torch.cat([guess[:, :1], z, guess[:, -1:]], dim=1)

        def residual(z: Tensor) -> Tensor:
            trajectory = assemble(z)
            action = model.action_terms(trajectory, x).sum()
            if nudge is not None:
                action = action + nudge.value(trajectory).sum()
            (g,) = torch.autograd.grad(action, z, create_graph=True)
            return g

        tol = self._tol(guess)
        r, jac = banded_jacobian(residual, z, periodic)
        for it in range(self.max_steps + 1):
            res = float(r.abs().max())
            _check_finite_residual(res, f"{boundary} boundary-value solve")
            if res <= tol or it == self.max_steps:
                if res > tol:
                    report_failure(f"{boundary} boundary-value solve", res, tol, it, self.on_failure)
                return assemble(z).detach(), BoundaryStatus(res, res <= tol, 1)
            step = newton_step(r, jac)
            z, r, jac = self._damped(residual, z, step, r, periodic)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _damped(residual, z: Tensor, step: Tensor, r: Tensor, periodic: bool, halvings: int = 12):
        """Backtracking on the Newton step, per sample: halve until the residual norm decreases."""
        batch = z.shape[0]
        norm = r.reshape(batch, -1).norm(dim=1)
        scale = torch.ones(batch, 1, 1, dtype=z.dtype, device=z.device)
        for _ in range(halvings):
            trial = (z - scale * step).detach()
            r_new, jac = banded_jacobian(residual, trial, periodic)
            worse = r_new.reshape(batch, -1).norm(dim=1) > norm
            if not bool(worse.any()):
                break
            scale = torch.where(worse.view(-1, 1, 1), 0.5 * scale, scale)
        return trial, r_new, jac


def _check_finite_residual(residual: float, what: str) -> None:
    """A NaN or infinite residual ends the solve at once (Newton steps cannot bring it back)."""
    if not math.isfinite(residual):
        raise NonFiniteError(
            f"The {what} reached a residual of {residual}: the Lagrangian or its derivatives are not finite there "
            f"(a NaN parameter or input, or a step size dt too large); check the model and lower dt."
        )
