"""Energy minimisers: relax a static energy model to its (free, nudged or clamped) equilibrium.

    state, status = solver.solve(model, x, state0, nudge=Nudge(cost, y, beta), clamp={k: value})

The total energy minimised is E(s, x) + β C(output(s), y), with β a number or one value per
sample (so the ± nudged phases of centered EP run as one batch). Clamped layers are held at
the given value (contrastive and coupled learning). Each solver stops when its residual falls
to ``tol`` or after ``max_steps``; the status reports the residual reached, and a relaxation
that did not converge warns (``ConvergenceWarning``) or raises (``ConvergenceError``) as
``on_nonconvergence`` says. ``tol=None`` runs exactly ``max_steps`` steps (the papers' fixed
T / K) and never warns.

This module knows models only through ``energy_grad`` / ``primitive_grad`` / ``project``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError, ConvergenceError, ConvergenceWarning, NonFiniteError

__all__ = ["Nudge", "SolverStatus", "Relaxation", "GradientDescent", "FixedPoint", "Asynchronous"]

_POLICIES = ("warn", "raise", "ignore")


@dataclass
class Nudge:
    """The nudging term β·C(output(s), y); ``beta`` is a float or a tensor of one value per sample."""

    cost: Cost
    target: Tensor
    beta: float | Tensor

    def force(self, model, state) -> tuple[Tensor | None, ...]:
        """β ∂C/∂s per layer (None for a layer the cost does not see)."""
        grad_out = self.cost.grad(model.output(state), self.target)
        beta = self.beta
        if isinstance(beta, Tensor):
            if beta.dim() != grad_out.dim():  # reshape once, to broadcast over the output axes
                beta = self.beta = beta.reshape((-1,) + (1,) * (grad_out.dim() - 1))
            if beta.dtype != grad_out.dtype:
                beta = self.beta = beta.to(grad_out.dtype)
        return model.output_grad_to_state(state, beta * grad_out)


@dataclass
class SolverStatus:
    """How a relaxation ended: the steps taken, the residual reached and whether it met ``tol``.

    With ``tol=None`` (a fixed number of steps) the residual of the last step is computed only
    when first read, so fixed-step training pays nothing for it.
    """

    steps: int
    _residual: float | None
    converged: bool
    _last_step: tuple | None = None

    @property
    def residual(self) -> float:
        if self._residual is None:
            old, new, scale = self._last_step
            self._residual = _max_change(old, new) / scale
            self._last_step = None
        return self._residual

    def __str__(self) -> str:
        word = "converged" if self.converged else "did not converge"
        return f"{word} after {self.steps} steps, residual {self.residual:.3e}"


class Relaxation:
    """Base class of the energy minimisers: the iteration loop, the residual and the policy."""

    def __init__(self, tol: float | None = 1e-6, max_steps: int = 500, on_nonconvergence: str = "warn") -> None:
        if tol is not None and (not math.isfinite(float(tol)) or float(tol) < 0):
            raise ConfigurationError(f"tol must be a non-negative number or None, got {tol!r}.")
        if int(max_steps) != max_steps or int(max_steps) < 1:
            raise ConfigurationError(f"max_steps must be a positive integer, got {max_steps!r}.")
        if on_nonconvergence not in _POLICIES:
            raise ConfigurationError(
                f"on_nonconvergence must be one of {_POLICIES}, got {on_nonconvergence!r}."
            )
        self.tol = None if tol is None else float(tol)
        self.max_steps = int(max_steps)
        self.on_nonconvergence = on_nonconvergence

    # one iteration; subclasses implement it with differentiable torch operations
    def step(self, model, x: Tensor, state, context: Any, nudge: Nudge | None, clamp: dict[int, Tensor] | None):
        raise NotImplementedError  # pragma: no cover

    def residual_scale(self) -> float:
        return 1.0

    def check_model(self, model) -> None:
        """Raise a ConfigurationError if this solver cannot relax ``model`` (called once per solve)."""

    def solve(
        self,
        model,
        x: Tensor,
        state,
        *,
        context: Any = None,
        nudge: Nudge | None = None,
        clamp: dict[int, Tensor] | None = None,
        differentiable: bool = False,
    ):
        """Iterate from ``state``; returns ``(state, SolverStatus)``.

        ``differentiable=True`` keeps the autograd graph through every step (BPTT).
        """
        self.check_model(model)
        if context is None:
            context = model.prepare(x)
        state = _apply_clamp(tuple(state), clamp)
        steps = self.max_steps
        residual = math.inf
        grad_mode = torch.enable_grad() if differentiable else torch.no_grad()
        with grad_mode:
            for t in range(steps):
                new_state = self.step(model, x, state, context, nudge, clamp)
                if self.tol is None:
                    previous, state = state, new_state
                    continue
                residual = _max_change(state, new_state) / self.residual_scale()
                state = new_state
                if residual <= self.tol:
                    break
        if self.tol is None:  # fixed number of steps: the residual is computed when read
            detached = (tuple(s.detach() for s in previous), tuple(s.detach() for s in state))
            return state, SolverStatus(t + 1, None, True, detached + (self.residual_scale(),))
        if not math.isfinite(residual):
            raise NonFiniteError(
                f"The relaxation diverged (residual {residual}); lower the step size or β, or check the weights."
            )
        converged = residual <= self.tol
        status = SolverStatus(t + 1, residual, converged)
        if not converged:
            message = (
                f"{type(self).__name__} stopped at max_steps={steps} with residual {residual:.3e} > "
                f"tol={self.tol:.1e}; raise max_steps, loosen tol, or lower the step size."
            )
            if self.on_nonconvergence == "raise":
                raise ConvergenceError(message)
            if self.on_nonconvergence == "warn":
                warnings.warn(message, ConvergenceWarning, stacklevel=3)
        return state, status

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class GradientDescent(Relaxation):
    """s ← project(s − η ∂_s[E + βC]); works for any energy. Residual: ‖∂_s[E + βC]‖_∞ (projected)."""

    def __init__(self, step_size: float = 0.1, tol: float | None = 1e-6, max_steps: int = 2000, on_nonconvergence: str = "warn") -> None:
        super().__init__(tol, max_steps, on_nonconvergence)
        if not float(step_size) > 0 or not math.isfinite(float(step_size)):
            raise ConfigurationError(f"step_size must be a positive number, got {step_size!r}.")
        self.step_size = float(step_size)

    def residual_scale(self) -> float:
        return self.step_size

    def step(self, model, x, state, context, nudge, clamp):
        differentiable = torch.is_grad_enabled()
        grads = model.energy_grad(state, x, context, create_graph=differentiable)
        grads = _add_nudge(grads, model, state, nudge)
        new = tuple(s - self.step_size * g for s, g in zip(state, grads))
        return _apply_clamp(model.project(new), clamp)


class _HopfieldSolver(Relaxation):
    """A solver of Hopfield-form energies (it needs ``primitive_grad`` and ``activations``)."""

    def check_model(self, model) -> None:
        _require_hopfield(model, self)


class FixedPoint(_HopfieldSolver):
    """s ← ρ(∂Φ/∂s − β ∂C/∂s), every layer at once (Hopfield-form energies, synchronous update).

    Residual: ‖Δs‖_∞. For layered networks each layer update is that layer's exact minimiser
    given its neighbours.
    """

    def step(self, model, x, state, context, nudge, clamp):
        # The body of drive() inlined: this runs at every step of every relaxation.
        differentiable = torch.is_grad_enabled()
        drive = model.primitive_grad(state, x, context, create_graph=differentiable)
        if nudge is not None:
            drive = _add_nudge(drive, model, state, nudge, sign=-1.0)
        new = tuple([_activate(a, h, model, differentiable) for a, h in zip(model.activations, drive)])
        return _apply_clamp(new, clamp) if clamp else new

    def drive(self, model, x, state, context, nudge):
        """The pre-activation u = ∂Φ/∂s − β ∂C/∂s of one step (the step is s ← ρ(u))."""
        drive = model.primitive_grad(state, x, context, create_graph=torch.is_grad_enabled())
        return _add_nudge(drive, model, state, nudge, sign=-1.0)


class Asynchronous(_HopfieldSolver):
    """Even/odd layer blocks (the comparative study's asynchronous update): odd-indexed layers
    first from the current state, then even-indexed layers from the updated one.

    Each block update is a block-coordinate minimisation of the energy, so the energy decreases
    monotonically for layered networks. Residual: ‖Δs‖_∞ over one sweep.
    """

    def step(self, model, x, state, context, nudge, clamp):
        differentiable = torch.is_grad_enabled()
        state = list(state)
        n = len(state)
        for block in (range(1, n, 2), range(0, n, 2)):
            drive = model.primitive_grad(tuple(state), x, context, create_graph=differentiable)
            drive = _add_nudge(drive, model, tuple(state), nudge, sign=-1.0)
            for k in block:
                state[k] = _activate(model.activations[k], drive[k], model, differentiable)
            state = list(_apply_clamp(tuple(state), clamp))
        return tuple(state)


def _activate(activation, drive: Tensor, model, differentiable: bool) -> Tensor:
    """ρ(drive), in place when the drive is a fresh tensor outside autograd (saves a copy)."""
    if not differentiable and activation.rho_ is not None and getattr(model, "fresh_drive", False):
        return activation.rho_(drive)
    return activation.rho(drive)


def _require_hopfield(model, solver) -> None:
    if not hasattr(model, "primitive_grad") or not hasattr(model, "activations"):
        raise ConfigurationError(
            f"{type(solver).__name__} needs a Hopfield-form energy (eqprop.models.HopfieldEnergy, with "
            f"primitive() and activations); use GradientDescent for {type(model).__name__}."
        )


def _add_nudge(grads, model, state, nudge: Nudge | None, sign: float = 1.0):
    if nudge is None:
        return grads
    force = nudge.force(model, state)
    if sign < 0:
        return tuple(g if f is None else g - f for g, f in zip(grads, force))
    return tuple(g if f is None else g + f for g, f in zip(grads, force))


def _apply_clamp(state, clamp):
    if not clamp:
        return state
    state = list(state)
    for k, value in clamp.items():
        state[k] = value
    return tuple(state)


def _max_change(old, new) -> float:
    return max(float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0 for a, b in zip(old, new))
