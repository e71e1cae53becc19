"""Energy minimisers: relax a static energy model to its (free, nudged or clamped) equilibrium.

    state, status = solver.solve(model, x, state0, nudge=Nudge(cost, y, beta), clamp={k: value})

The total energy minimised is E(s, x) + β C(output(s), y), with β a number or one value per
sample (so the ± nudged phases of centered EP run as one batch). Clamped layers are held at
the given value (contrastive and coupled learning). Each solver stops when its residual falls
to ``tol`` or after ``max_steps``; the status reports the residual reached, and a relaxation
that did not converge warns (``ConvergenceWarning``) or raises (``ConvergenceError``) as
``on_nonconvergence`` says. ``tol=None`` runs exactly ``max_steps`` steps (the papers' fixed
T / K) and does not warn by itself; its final state is checked for NaN, and a learner whose
gradient assumes an equilibrium compares the residual with ``equilibrium_tol``
(:meth:`Relaxation.check_equilibrium`).

``state_dtype`` (``torch.bfloat16`` / ``torch.float16``) relaxes in 16 bits: the state, the
input, the model's context and a 16-bit copy of the parameters (made once per solve) take that
dtype, so every drive is computed in 16 bits; the nudging force is computed in the model's dtype
and rounded once. The last ``full_precision_steps`` steps (default 1) run in the model's dtype,
so the returned state carries no 16-bit rounding (one step removes most of it: the contrast of
EP divides state differences by β); the learner's parameter derivatives and its contrast are
then accumulated in the model's dtype (float32).

``compile=True`` runs each relaxation step through ``torch.compile`` (one compiled function per
solver, ``dynamic=False``; the loop, the residual and the policy stay in Python). It is used
outside autograd only: ``differentiable=True`` (BPTT) steps eagerly. If compilation fails the
solver warns once (``CompileWarning``) and steps eagerly from then on, with the same result.

This module knows models only through ``energy_grad`` / ``primitive_grad`` / ``layer_drive`` /
``project``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import (CompileWarning, ConfigurationError, ConvergenceError, ConvergenceWarning, EqpropError,
                      NonFiniteError, ShapeError)
from ..models._checks import all_finite, positive_int
from .options import (_cast, _dtype_name, _low_precision, _relaxing, check_order, check_state_dtype, check_tol,
                      positive_number)

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

    #: True: each step outside autograd runs through ``torch.compile`` (see the module docstring).
    compile: bool = False

    def __init__(self, tol: float | None = 1e-6, max_steps: int = 500, on_nonconvergence: str = "warn",
                 state_dtype: torch.dtype | str | None = None, full_precision_steps: int = 1,
                 compile: bool = False) -> None:
        self.tol = check_tol("tol", tol)
        self.max_steps = positive_int("max_steps", max_steps)
        if on_nonconvergence not in _POLICIES:
            raise ConfigurationError(
                f"on_nonconvergence must be one of {_POLICIES}, got {on_nonconvergence!r}."
            )
        self.on_nonconvergence = on_nonconvergence
        self.state_dtype = check_state_dtype(state_dtype)
        self.full_precision_steps = positive_int("full_precision_steps", full_precision_steps, minimum=0)
        if not isinstance(compile, bool):
            raise ConfigurationError(f"compile must be True or False (torch.compile each step), got {compile!r}.")
        self.compile = compile

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
        low = _low_precision(self.state_dtype, state)
        phases = [(None, steps)]
        if low is not None:  # 16-bit steps, then the last full_precision_steps in the model's dtype
            polish = min(self.full_precision_steps, steps)
            phases = [(low, steps - polish), (None, polish)]
        grad_mode = torch.enable_grad() if differentiable else torch.no_grad()
        # compiled outside autograd only, and not over a step replaced on the instance (a recorder)
        step = self._compiled_step if self.compile and not differentiable and "step" not in vars(self) else self.step
        taken = 0
        with grad_mode:
            for dtype, count in phases:
                if count == 0:
                    continue
                with _relaxing(self, model, dtype):
                    xs, ctx, cl = (x, context, clamp) if dtype is None else _cast((x, context, clamp), dtype)
                    dtypes = [s.dtype for s in state]
                    if dtype is not None:
                        state = _cast(state, dtype)
                    for t in range(count):
                        new_state = self._first_step(model, xs, state, ctx, nudge, cl, dtype) if t == 0 else \
                            step(model, xs, state, ctx, nudge, cl)
                        taken += 1
                        if self.tol is None:
                            previous, state = state, new_state
                            continue
                        residual = _max_change(state, new_state) / self.residual_scale()
                        state = new_state
                        if residual <= self.tol:
                            break
                    if dtype is not None:
                        state = tuple(s.to(d) for s, d in zip(state, dtypes))
        t = taken - 1
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
            if low is not None:
                message = (
                    f"{type(self).__name__} stopped at max_steps={steps} with residual {residual:.3e} > "
                    f"tol={self.tol:.1e} with states in {_dtype_name(low)}, whose spacing near 1 "
                    f"({torch.finfo(low).eps:.1e}) bounds how close a 16-bit relaxation gets; loosen tol to "
                    f"about {torch.finfo(low).eps:.0e} or pass state_dtype=None."
                )
            if self.on_nonconvergence == "raise":
                raise ConvergenceError(message)
            if self.on_nonconvergence == "warn":
                warnings.warn(message, ConvergenceWarning, stacklevel=3)
        return state, status

    def _compiled_step(self, model, x, state, context, nudge, clamp):
        """:meth:`step` through ``torch.compile`` (compiled once per solver); eager after a failure."""
        compiled = self.__dict__.get("_compiled")
        if compiled is None:
            compiled = self._compiled = torch.compile(self.step, dynamic=False)
        if compiled is False:
            return self.step(model, x, state, context, nudge, clamp)
        try:
            return compiled(model, x, state, context, nudge, clamp)
        except EqpropError:
            raise
        except Exception as error:  # a dynamo / inductor failure: the same step, eagerly
            self._compiled = False
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            warnings.warn(
                f"{type(self).__name__}(compile=True) could not torch.compile its step for {type(model).__name__} "
                f"({reason}), so it steps eagerly from now on, with the same result.", CompileWarning, stacklevel=4)
            return self.step(model, x, state, context, nudge, clamp)

    def __getstate__(self) -> dict:  # copies and pickles drop the compiled function (recompiled on use)
        state = dict(self.__dict__)
        state.pop("_compiled", None)
        return state

    def _first_step(self, model, x, state, context, nudge, clamp, low):
        """The first step; in 16 bits a missing kernel is refused in one sentence."""
        if low is None:
            return self.step(model, x, state, context, nudge, clamp)
        try:
            return self.step(model, x, state, context, nudge, clamp)
        except (RuntimeError, NotImplementedError) as error:
            if "not implemented" not in str(error) and "not supported" not in str(error):
                raise
            raise ConfigurationError(
                f"state_dtype={_dtype_name(low)} needs {type(model).__name__}'s operations in {_dtype_name(low)} on "
                f"{x.device.type}, which this torch build lacks ({str(error).splitlines()[0]}); use "
                f"state_dtype=torch.bfloat16 or None."
            ) from None

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
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields})"


class GradientDescent(Relaxation):
    """s ← project(s − η ∂_s[E + βC]); works for any energy. Residual: ‖∂_s[E + βC]‖_∞ (projected)."""

    def __init__(self, step_size: float = 0.1, tol: float | None = 1e-6, max_steps: int = 2000, on_nonconvergence: str = "warn",
                 state_dtype: torch.dtype | str | None = None, full_precision_steps: int = 1,
                 compile: bool = False) -> None:
        super().__init__(tol, max_steps, on_nonconvergence, state_dtype, full_precision_steps, compile)
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
    """Layer blocks updated in turn (the comparative study's asynchronous update): with layers
    indexed from 0 (``state[0]`` the first hidden layer), ``order="odd_first"`` (default) updates
    the odd-indexed layers from the current state, then the even-indexed ones from the updated
    state; ``"even_first"`` the reverse — the order of the comparative study's reference code
    ({layer 1, output} first in a two-hidden-layer net). An explicit order is a list of blocks of
    layer indices covering every layer once, e.g. ``[[0, 2], [1]]``.

    Each block update is a block-coordinate minimisation of the energy, so the energy decreases
    monotonically for layered networks. A block's drive is computed only for its layers
    (``model.layer_drive``, in closed form for HopfieldMLP and ConvHopfield), so one sweep costs
    one synchronous step. Residual: ‖Δs‖_∞ over one sweep.
    """

    def __init__(self, tol: float | None = 1e-6, max_steps: int = 500, on_nonconvergence: str = "warn",
                 state_dtype: torch.dtype | str | None = None, full_precision_steps: int = 1,
                 order: str | Sequence[Sequence[int]] = "odd_first", compile: bool = False) -> None:
        super().__init__(tol, max_steps, on_nonconvergence, state_dtype, full_precision_steps, compile)
        self.order = check_order(order)

    def blocks(self, n: int) -> tuple[tuple[int, ...], ...]:
        """The layer blocks of one sweep for a state of ``n`` layers, in update order."""
        if self.order == "odd_first":
            return tuple(b for b in (tuple(range(1, n, 2)), tuple(range(0, n, 2))) if b)
        if self.order == "even_first":
            return tuple(b for b in (tuple(range(0, n, 2)), tuple(range(1, n, 2))) if b)
        flat = sorted(k for block in self.order for k in block)
        if flat != list(range(n)):
            raise ConfigurationError(
                f"Asynchronous(order={[list(b) for b in self.order]}) must list every layer index 0..{n - 1} of this "
                f"{n}-layer state exactly once."
            )
        return self.order

    def step(self, model, x, state, context, nudge, clamp):
        differentiable = torch.is_grad_enabled()
        state = list(state)
        layer_drive = getattr(model, "layer_drive", None)
        cache = getattr(self, "_cache", None)
        for block in self.blocks(len(state)):
            if clamp:
                block = tuple(k for k in block if k not in clamp and k - len(state) not in clamp)
                if not block:
                    continue
            current = tuple(state)
            if layer_drive is not None:
                drive = layer_drive(current, x, block, context, create_graph=differentiable, cache=cache)
            else:  # a Hopfield energy without layer_drive: the full drive, half of it kept
                drive = model.primitive_grad(current, x, context, create_graph=differentiable)
            drive = _add_nudge(drive, model, current, nudge, sign=-1.0, layers=block)
            for k in block:
                state[k] = _activate(model.activations[k], drive[k], model, differentiable)
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


def _add_nudge(grads, model, state, nudge: Nudge | None, sign: float = 1.0, layers: Sequence[int] | None = None):
    """grads ± β ∂C/∂s; a 16-bit drive gets the force computed in the model's dtype, rounded once."""
    if nudge is None:
        return grads
    force = nudge.force(model, state)
    n = len(grads)
    out = list(grads)
    for k, (g, f) in enumerate(zip(grads, force)):
        if f is None or g is None or (layers is not None and k not in layers and k - n not in layers):
            continue
        total = g - f if sign < 0 else g + f
        out[k] = total if total.dtype == g.dtype else total.to(g.dtype)
    return tuple(out)


def _apply_clamp(state, clamp):
    if not clamp:
        return state
    state = list(state)
    for k, value in clamp.items():
        state[k] = value
    return tuple(state)


def _max_change(old, new) -> float:
    return max(float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0 for a, b in zip(old, new))


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
