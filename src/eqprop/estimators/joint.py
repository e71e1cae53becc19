"""The joint system of HEB: a Hamiltonian model whose parameters are positions with momenta.

López-Pastor & Marquardt 2023 ("Self-learning machines based on Hamiltonian echo
backpropagation"; docs/heb.md) make the parameters θ dynamical: with momenta π and a
mass m they evolve under one Hamiltonian

    H(q, θ, p, π) = T(p) + ½|π|²/m + V(q, u; θ)           (1/m = 0 allowed: θ frozen)

so q̇ = ∂_pT, θ̇ = π/m, ṗ = −∂_qV, π̇ = −∂_θV. :class:`JointSystem` packs (q, θ) into one flat
position Q and (p, π) into one flat momentum P per row (a row is one sample, or one sample of one
echo copy), and offers ``kinetic_grad`` / ``potential_grad`` so that any eqprop integrator that
steps through those two methods (``LeapFrog``, ``PositionVerlet``) steps the whole state.
Every row carries its own copy of θ (rows do not share parameters once θ moves): V, the output
and the cost are evaluated per row with ``torch.func.vmap`` over ``functional_call``.

:func:`run` is the forward simulation used by the learner (no graph) and by the full-dynamics
baseline (``create_graph=True``); it lives below both (``eqprop.learners.HEB``,
``eqprop.baselines.FullDynamicsBPTT``). This module knows models through ``potential``,
``kinetic_grad``, ``output`` and ``init_state``; it knows nothing of learners or baselines.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import Tensor, nn
from torch.func import vmap

from ..errors import ConfigurationError
from .functional import call_with_parameters
from .sequence import check_sequence, check_single_hamiltonian, target_mode

__all__ = ["JointSystem", "run", "parameter_rows"]


def _potential(model: nn.Module, q: Tensor, u: Tensor) -> Tensor:
    return model.potential(q, u)


def _output(model: nn.Module, q: Tensor) -> Tensor:
    return model.output(q)


class JointSystem:
    """Positions Q = (q, θ) and momenta P = (p, π), flattened per row; 1/m = ``inv_mass``.

    Args:
        model: a ``HamiltonianModel`` with a scalar step and a kinetic energy free of parameters.
        names: the trainable parameters that become positions (as in ``model.named_parameters()``).
        inv_mass: 1/m ≥ 0; 0 freezes θ (its momentum still integrates −∂_θV).
        q_shape: the per-sample shape of the model's q (and p).
        dtype: evaluate V and the output in this dtype (the model's other parameters and buffers
            cast to it for the call, the model itself untouched); ``None``: the model's own. HEB's
            echo runs in float64 this way when the model is float32 or 16-bit.
    """

    def __init__(self, model: nn.Module, names: list[str], inv_mass: float, q_shape: torch.Size,
                 dtype: torch.dtype | None = None) -> None:
        self.model = model
        self.names = list(names)
        params = dict(model.named_parameters())
        self.shapes = [params[n].shape for n in self.names]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.inv_mass = float(inv_mass)
        self.q_shape = torch.Size(q_shape)
        self.q_size = math.prod(self.q_shape)
        self.fixed: dict[str, Tensor] = {}  # the tensors that are not positions, in ``dtype``
        if dtype is not None:
            others = [(n, t) for n, t in params.items() if n not in self.names] + list(model.named_buffers())
            self.fixed = {n: t.detach().to(dtype) for n, t in others if t.is_floating_point()}

    # -- packing -----------------------------------------------------------------------------
    def split(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """(q or p shaped [rows, *q_shape], θ or π flat [rows, n_θ])."""
        rows = flat.shape[0]
        return flat[:, :self.q_size].reshape(rows, *self.q_shape), flat[:, self.q_size:]

    def join(self, q: Tensor, theta: Tensor) -> Tensor:
        return torch.cat([q.reshape(q.shape[0], -1), theta], dim=1)

    def parameters_of(self, theta: Tensor) -> dict[str, Tensor]:
        """Per-row parameter dictionary {name: [rows, *shape]} from flat rows θ."""
        out, start = {}, 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            out[name] = theta[:, start:start + size].reshape(theta.shape[0], *shape)
            start += size
        return out

    # -- per-row evaluations -----------------------------------------------------------------
    def energy(self, q: Tensor, theta: Tensor, u: Tensor) -> Tensor:
        """V(q_r, u_r; θ_r) for every row r, shape [rows]."""
        def one(params, q1, u1):
            return call_with_parameters(self.model, {**params, **self.fixed}, _potential, q1.unsqueeze(0),
                                        u1.unsqueeze(0))[0]

        return vmap(one)(self.parameters_of(theta), q, u)

    def output(self, q: Tensor, theta: Tensor) -> Tensor:
        """output(q_r; θ_r) for every row r."""
        def one(params, q1):
            return call_with_parameters(self.model, {**params, **self.fixed}, _output, q1.unsqueeze(0))[0]

        return vmap(one)(self.parameters_of(theta), q)

    # -- the two methods an integrator calls ---------------------------------------------------
    def kinetic_grad(self, P: Tensor, create_graph: bool = False) -> Tensor:
        """(∂_pT(p), π/m)."""
        p, pi = self.split(P)
        return self.join(self.model.kinetic_grad(p, create_graph), pi * self.inv_mass)

    def potential_grad(self, Q: Tensor, u: Tensor, create_graph: bool = False) -> Tensor:
        """(∂_qV, ∂_θV) per row, by autograd through the vmapped potential."""
        with torch.enable_grad():
            if create_graph and Q.requires_grad:
                q, theta = self.split(Q)
            else:
                q, theta = (t.detach().requires_grad_(True) for t in self.split(Q))
            energy = self.energy(q, theta, u)
            grad_q, grad_theta = torch.autograd.grad(energy.sum(), [q, theta], create_graph=create_graph,
                                                     allow_unused=True)
        grad_q = torch.zeros_like(q) if grad_q is None else grad_q
        grad_theta = torch.zeros_like(theta) if grad_theta is None else grad_theta
        return self.join(grad_q, grad_theta)


def parameter_rows(model: nn.Module, names: list[str], rows: int) -> Tensor:
    """θ₀ flattened and repeated once per row, [rows, n_θ] (keeps the graph to the parameters)."""
    params = dict(model.named_parameters())
    if not names:  # nothing trained: an empty θ (the joint system is then the model alone)
        ref = next(iter(params.values()), None)
        return torch.zeros(rows, 0, dtype=ref.dtype if ref is not None else torch.get_default_dtype(),
                           device=ref.device if ref is not None else None)
    flat = torch.cat([params[n].reshape(-1) for n in names])
    return flat.unsqueeze(0).expand(rows, -1)


def run(joint: JointSystem, integrator, Q: Tensor, P: Tensor, inputs: Iterable[Tensor], dt: Tensor,
        create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Step (Q, P) through ``inputs`` in the order given (one integrator step per input; an iterator
    is read one input at a time, so a sequence of N steps needs no list of N tensors)."""
    context = torch.enable_grad() if create_graph else torch.no_grad()
    with context:
        for u in inputs:
            Q, P = integrator.step(joint, Q, P, u, dt, create_graph)
    return Q, P


def check_joint(model: nn.Module, integrator, names: list[str], p0: Tensor) -> Tensor:
    """The scalar step HEB integrates with; refuses a vector or trainable step and a θ-dependent T."""
    dt = integrator.step_size(model)
    if dt.dim() != 0:
        raise ConfigurationError(
            f"{type(model).__name__} has a per-coordinate step dt; HEB steps the joint state (q, θ) with one "
            f"scalar step, so give the integrator a scalar dt, e.g. LeapFrog(dt=0.1)."
        )
    if dt.requires_grad:
        raise ConfigurationError(
            f"{type(model).__name__}.dt is trainable but is not a position of H, so HEB has no gradient for it; "
            f"freeze it (model.dt.requires_grad_(False)) or give the integrator a fixed dt."
        )
    params = dict(model.named_parameters())
    with torch.enable_grad():
        leaves = [params[n] for n in names]
        kinetic = model.kinetic(p0.detach()).sum()
        grads = torch.autograd.grad(kinetic, leaves, allow_unused=True) if kinetic.requires_grad else []
    for name, g in zip(names, grads):
        if g is not None:
            raise ConfigurationError(
                f"The kinetic energy of {type(model).__name__} depends on the parameter {name}, which makes the "
                f"joint H non-separable; HEB needs T(p) free of parameters (put {name} in the potential)."
            )
    return dt.detach()


def prepare(model: nn.Module, x: Tensor, y: Tensor | None, steps: int | None, cost) -> Tensor:
    """Checks shared by HEB and its baseline; returns the input as a sequence [batch, N, features].

    A static input [batch, features] is held for ``steps`` steps (H time-independent, the setting
    of the paper); a sequence [batch, T, features] is stepped as given and replayed in reverse by
    the echo. The target is a final-time one: [batch, ...] like one output.
    """
    check_single_hamiltonian(model, "HEB")
    if isinstance(x, Tensor) and x.dim() == 2:
        if steps is None:
            raise ConfigurationError(
                f"A static input {tuple(x.shape)} is held for a fixed number of steps; give HEB(..., steps=N) "
                f"or pass a sequence shaped [batch, T, features]."
            )
        x = x.unsqueeze(1).expand(x.shape[0], steps, x.shape[1])
    elif steps is not None and isinstance(x, Tensor) and x.dim() == 3 and x.shape[1] != steps:
        raise ConfigurationError(
            f"steps={steps} but the input sequence has {x.shape[1]} steps; pass steps=None for sequence inputs."
        )
    check_sequence(model, x)
    if y is not None and target_mode(model, x, y, cost) != "final":
        raise ConfigurationError(
            "HEB nudges with the cost at the final time only; pass a target shaped like one output [batch, ...]."
        )
    return x


def check_steps(steps: int | None) -> int | None:
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigurationError(f"steps must be a positive integer (or None for sequence inputs), got {steps!r}.")
    return steps


def check_mass(mass: float) -> float:
    """1/m from m; m = inf (the default) freezes θ, m must be positive."""
    try:
        mass = float(mass)
    except (TypeError, ValueError):
        raise ConfigurationError(f"mass must be a positive number or float('inf'), got {mass!r}.") from None
    if not mass > 0:  # also NaN
        raise ConfigurationError(f"mass must be positive (float('inf') freezes the parameters), got {mass}.")
    return 0.0 if math.isinf(mass) else 1.0 / mass
