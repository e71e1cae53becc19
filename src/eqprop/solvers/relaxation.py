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
from ..errors import ConfigurationError, ConvergenceError, ConvergenceWarning, NonFiniteError, ShapeError
from ..models._checks import all_finite, positive_int

__all__ = ["Nudge", "SolverStatus", "Relaxation", "GradientDescent", "FixedPoint", "Asynchronous", "check_tol",
           "positive_number"]

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

    With ``tol=None`` (a fixed number of steps) there is no tolerance to meet, so ``converged``
    is ``None``; the residual of the last step is computed only when first read, so fixed-step
    training pays nothing for it (``check_equilibrium`` compares it with ``equilibrium_tol``).
    """

    steps: int
    _residual: float | None
    converged: bool | None
    _last_step: tuple | None = None

    @property
    def residual(self) -> float:
        if self._residual is None:
            old, new, scale = self._last_step
            self._residual = _max_change(old, new) / scale
            self._last_step = None
        return self._residual

    def __str__(self) -> str:
        if self.converged is None:
            return f"ran a fixed {self.steps} steps, residual {self.residual:.3e}"
        word = "converged" if self.converged else "did not converge"
        return f"{word} after {self.steps} steps, residual {self.residual:.3e}"


class Relaxation:
    """Base class of the energy minimisers: the iteration loop, the residual and the policy."""

    #: True when one :meth:`step` is the discrete-time map s ← ρ(∂Φ/∂s − β∂C/∂s) whose per-step
    #: updates continual EP and the GDU check read (``FixedPoint``); a user solver may declare it.
    discrete_time_map: bool = False

    #: With ``tol=None``: the residual above which a learner whose gradient assumes an
    #: equilibrium warns or raises (``on_nonconvergence``) — see :meth:`check_equilibrium`.
    #: Settable per solver: ``solver.equilibrium_tol = 1e-4``.
    equilibrium_tol: float = 1e-3

    def __init__(self, tol: float | None = 1e-6, max_steps: int = 500, on_nonconvergence: str = "warn") -> None:
        self.tol = check_tol("tol", tol)
        self.max_steps = positive_int("max_steps", max_steps)
        if on_nonconvergence not in _POLICIES:
            raise ConfigurationError(
                f"on_nonconvergence must be one of {_POLICIES}, got {on_nonconvergence!r}."
            )
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
        if isinstance(state, Tensor) or not all(isinstance(s, Tensor) for s in state):
            raise ShapeError(
                f"{type(self).__name__}.solve takes the state as a tuple of tensors, one per layer (for one layer: "
                f"(s,)), got {type(state).__name__}; pass model.init_state(x)."
            )
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
            if not all_finite(detached[1]):
                raise NonFiniteError(_diverged(self, model, x, steps))
            return state, SolverStatus(t + 1, None, None, detached + (self.residual_scale(),))
        if not math.isfinite(residual):
            raise NonFiniteError(_diverged(self, model, x, t + 1))
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

    def check_equilibrium(self, status: SolverStatus, learner: str, phase: str = "free phase") -> None:
        """Report a fixed-step relaxation that ended away from the equilibrium a learner's theory needs.

        EP, contrastive and coupled learning, holomorphic EP and implicit differentiation derive
        their gradient at an equilibrium. With ``tol`` set, :meth:`solve` has already applied
        ``on_nonconvergence``; with ``tol=None`` (a fixed number of steps) this applies it to the
        residual reached, against :attr:`equilibrium_tol`. ``"ignore"`` reads no residual.
        """
        if self.tol is not None or self.on_nonconvergence == "ignore":
            return
        residual = status.residual
        if residual <= self.equilibrium_tol:
            return
        message = (
            f"{learner} assumes its {phase} at an equilibrium, but {type(self).__name__}(tol=None, "
            f"max_steps={self.max_steps}) stopped with residual {residual:.3e} > equilibrium_tol="
            f"{self.equilibrium_tol:.0e}, so the gradient is biased; raise max_steps, set a tol, or pass "
            f"on_nonconvergence='ignore' to train with the truncated relaxation on purpose."
        )
        if self.on_nonconvergence == "raise":
            raise ConvergenceError(message)
        warnings.warn(message, ConvergenceWarning, stacklevel=4)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class GradientDescent(Relaxation):
    """s ← project(s − η ∂_s[E + βC]); works for any energy. Residual: ‖∂_s[E + βC]‖_∞ (projected)."""

    def __init__(self, step_size: float = 0.1, tol: float | None = 1e-6, max_steps: int = 2000, on_nonconvergence: str = "warn") -> None:
        super().__init__(tol, max_steps, on_nonconvergence)
        self.step_size = positive_number("step_size", step_size)

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

    discrete_time_map = True

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


def check_tol(name: str, value: Any, allow_none: bool = True) -> float | None:
    """A tolerance: a finite number ≥ 0 (or None, a fixed number of steps, where allowed)."""
    if value is None and allow_none:
        return None
    number = _number(value)
    if number is None or not math.isfinite(number) or number < 0:
        none = " or None (a fixed number of steps)" if allow_none else ""
        raise ConfigurationError(f"{name} must be a non-negative number{none}, got {value!r}.")
    return number


def positive_number(name: str, value: Any) -> float:
    """A finite number > 0 (a step size, a time step)."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigurationError(f"{name} must be a positive finite number, got {value!r}.")
    return number


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or isinstance(value, str):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _diverged(solver: Relaxation, model, x: Tensor, steps: int) -> str:
    """One sentence naming why a relaxation ended in NaN or infinity: a parameter, the input, or the dynamics."""
    for name, p in model.named_parameters():
        if (p.is_floating_point() or p.is_complex()) and not bool(torch.isfinite(p.detach()).all()):
            return (
                f"The parameter {name} of {type(model).__name__} holds NaN or infinity, so the relaxation did too; "
                f"re-initialise it or reload a checkpoint (a diverged update: lower the learning rate)."
            )
    if (x.is_floating_point() or x.is_complex()) and not bool(torch.isfinite(x).all()):
        return "The input contains NaN or infinity, so the relaxation did too; clean the data."
    return (
        f"{type(solver).__name__} reached NaN or infinity within {steps} steps: the energy or its force is not finite "
        f"on the states visited (e.g. log of a state outside its domain) or the dynamics diverged; lower the step "
        f"size or β, or check {type(model).__name__}.energy."
    )
