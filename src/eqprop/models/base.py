"""Energy models E(s, θ, x): the one class a user writes to add a static system.

A model knows nothing of learners. The user writes ``energy``, ``init_state`` and ``output``;
forces ∂E/∂s and parameter derivatives ∂_θE follow by autograd. A built-in model may override
``energy_grad`` / ``param_grads`` with a closed form (a test then checks it against autograd)
and ``prepare`` to compute, once per batch, what stays constant during a relaxation (the input
drive of the first layer).

States are tuples of tensors, one per layer, batch first; energies are one value per sample.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, NonFiniteError, ShapeError
from ._checks import check_per_sample, check_state
from .activations import Activation, get_activation

State = tuple[Tensor, ...]

__all__ = ["State", "EnergyModel", "HopfieldEnergy"]


class EnergyModel(nn.Module):
    """Base class of energy-based models E(s, θ, x).

    Subclass and write three methods::

        def energy(self, state, x): ...   # -> [batch]
        def init_state(self, x): ...      # -> tuple of [batch, ...] tensors
        def output(self, state): ...      # -> what the cost compares with the target

    Optional class attributes: ``output_layer`` — the index of the state layer that ``output``
    returns unchanged (enables clamping, used by contrastive and coupled learning, and a nudge
    without autograd); ``output_is_parameter_free`` — ``output`` has no trainable parameter.
    """

    output_layer: int | None = None
    output_is_parameter_free: bool = False

    # -- what the user writes ------------------------------------------------------------------
    def energy(self, state: State, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define energy(state, x).")

    def init_state(self, x: Tensor) -> State:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define init_state(x).")

    def output(self, state: State) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define output(state).")

    # -- what follows by autograd (overridable with closed forms) ------------------------------
    def prepare(self, x: Tensor) -> Any:
        """What stays constant during a relaxation on input x; passed back as ``context``."""
        return None

    def project(self, state: State) -> State:
        """Map a state into the set where the energy is defined (identity by default)."""
        return state

    def checked_energy(self, state: State, x: Tensor) -> Tensor:
        """``energy`` with its shape and finiteness checked (one sentence on failure)."""
        e = self.energy(state, x)
        check_per_sample(f"{type(self).__name__}.energy", e, state[0].shape[0])
        if not bool(torch.isfinite(e).all()):
            raise NonFiniteError(
                f"{type(self).__name__}.energy returned NaN or infinity; the state left the energy's "
                "domain or the relaxation diverged (lower the step size)."
            )
        return e

    def check_physics(self, x: Tensor) -> None:
        """Check what the user's methods return on input ``x``: ``init_state`` a tuple of tensors,
        batch first, and ``energy`` one value per sample. Every learner and baseline calls it
        (once per input shape) before simulating; a ShapeError names the method and the fix."""
        name = type(self).__name__
        state = check_state(f"{name}.init_state", self.init_state(x), x.shape[0])
        check_per_sample(f"{name}.energy", self.energy(state, x), x.shape[0])

    def energy_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        """∂E/∂s for each layer, per sample (autograd)."""
        return state_gradient(lambda leaves: self.energy(leaves, x), state, create_graph)

    def param_grads(self, state: State, x: Tensor, weights: Tensor) -> dict[str, Tensor]:
        """∂_θ Σ_b w_b E(s_b, θ, x_b) for every trainable parameter (autograd)."""
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        with torch.enable_grad():
            state = tuple(s.detach() for s in state)
            e = (self.energy(state, x) * weights).sum()
            grads = torch.autograd.grad(e, list(params.values()), allow_unused=True)
        return {n: (torch.zeros_like(p) if g is None else g) for (n, p), g in zip(params.items(), grads)}

    def output_grad_to_state(self, state: State, grad_output: Tensor) -> tuple[Tensor | None, ...]:
        """Pull a gradient on the output back onto the state: Jᵀ_output · grad_output."""
        if self.output_layer is not None:
            out: list[Tensor | None] = [None] * len(state)
            out[self.output_layer] = grad_output
            return tuple(out)
        with torch.enable_grad():
            leaves = tuple(s.detach().requires_grad_() for s in state)
            o = self.output(leaves)
            if o.is_complex():  # Jᵀv for a holomorphic output: torch's backward conjugates
                grads = torch.autograd.grad(o, leaves, grad_output.conj(), allow_unused=True)
                return tuple(None if g is None else g.conj() for g in grads)
            grads = torch.autograd.grad(o, leaves, grad_output, allow_unused=True)
        return tuple(grads)

    #: The solver a learner uses when given ``solver=None``: a class name of :mod:`eqprop.solvers`
    #: and its options (models import no solver; ``eqprop.estimators.default_solver(model)`` builds
    #: it). A model may instead define a method ``default_solver()`` returning a solver.
    default_solver_spec: tuple[str, dict[str, Any]] = (
        "GradientDescent", {"step_size": 0.1, "tol": 1e-6, "max_steps": 2000})


class HopfieldEnergy(EnergyModel):
    """Hopfield-form energy E(s) = Σ_k Σ_i G_k(s_k,i) − Φ(s, x), with G_k' = ρ_k⁻¹.

    Subclass and write the *primitive function* ``primitive(state, x)`` = Φ (a scalar per
    sample) and ``activations`` (one :class:`Activation` per layer). Stationary points satisfy
    s = ρ(∂Φ/∂s), so :class:`eqprop.solvers.FixedPoint` (every layer at once) and
    :class:`eqprop.solvers.Asynchronous` (even/odd layer blocks) apply; when Φ is linear in each
    layer given the others (layered networks), each layer update is that layer's exact minimiser.
    """

    activations: tuple[Activation, ...]
    #: Set to True when ``primitive_grad`` always returns new tensors (never the context, a
    #: state or a parameter): solvers then apply ρ in place outside autograd, saving a copy.
    fresh_drive: bool = False

    def primitive(self, state: State, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define primitive(state, x).")

    def energy(self, state: State, x: Tensor) -> Tensor:
        legendre = sum(a.legendre(s).reshape(s.shape[0], -1).sum(1) for a, s in zip(self.activations, state))
        return legendre - self.primitive(state, x)

    def project(self, state: State) -> State:
        return tuple(a.project(s) for a, s in zip(self.activations, state))

    def check_physics(self, x: Tensor) -> None:
        """As :meth:`EnergyModel.check_physics`, plus one activation per layer and ``primitive``
        one value per sample (a summed Φ would broadcast against the Legendre terms)."""
        name = type(self).__name__
        state = check_state(f"{name}.init_state", self.init_state(x), x.shape[0])
        bad = [k for k, a in enumerate(self.activations) if not isinstance(a, Activation)]
        if bad:
            raise ConfigurationError(
                f"{name}.activations[{bad[0]}] is {self.activations[bad[0]]!r}, not an eqprop.models.Activation; "
                f"look built-ins up with eqprop.models.get_activation(name)."
            )
        if len(self.activations) != len(state):
            raise ShapeError(
                f"{name} has {len(self.activations)} activations for a state of {len(state)} layers; give one per layer."
            )
        check_per_sample(f"{name}.primitive", self.primitive(state, x), x.shape[0])
        check_per_sample(f"{name}.energy", self.energy(state, x), x.shape[0])

    def primitive_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        """∂Φ/∂s per layer (autograd; layered models override with a closed form)."""
        return state_gradient(lambda leaves: self.primitive(leaves, x), state, create_graph)

    def layer_drive(self, state: State, x: Tensor, layers: Sequence[int], context: Any = None,
                    create_graph: bool = False, cache: dict | None = None) -> tuple[Tensor | None, ...]:
        """∂Φ/∂s_k for the layers ``k`` in ``layers`` only (``None`` for the others): the drive of
        one block of an asynchronous sweep. This generic version computes every layer's drive and
        keeps the requested ones; layered models override it so that a block costs only its own
        layers. ``cache`` is a dict a solver keeps for one relaxation, where a model may store
        pieces of the drive keyed by the state tensors they were computed from."""
        full = self.primitive_grad(state, x, context, create_graph=create_graph)
        n = len(full)
        wanted = {k % n for k in layers}
        return tuple(d if k in wanted else None for k, d in enumerate(full))

    def energy_grad(self, state: State, x: Tensor, context: Any = None, create_graph: bool = False) -> State:
        drive = self.primitive_grad(state, x, context, create_graph=create_graph)
        return tuple(_legendre_grad(a, s, create_graph) - d for a, s, d in zip(self.activations, state, drive))

    default_solver_spec = ("FixedPoint", {"tol": 1e-6, "max_steps": 500})


def state_gradient(per_sample, state: State, create_graph: bool = False) -> State:
    """∂/∂s of Σ_b per_sample(s)_b for each layer (complex derivative for complex states).

    With ``create_graph`` the graph through ``state`` is kept (BPTT); otherwise the state is
    detached and the result carries no graph.
    """
    with torch.enable_grad():
        if create_graph:
            leaves = tuple(s if s.requires_grad else s.detach().requires_grad_() for s in state)
        else:
            leaves = tuple(s.detach().requires_grad_() for s in state)
        return tuple(_holomorphic_grad(per_sample(leaves).sum(), leaves, create_graph))


def _holomorphic_grad(value: Tensor, leaves, create_graph: bool):
    """dvalue/ds; for a complex (holomorphic) value, the complex derivative conj(∂Re value/∂s̄)."""
    if not value.is_complex():
        return torch.autograd.grad(value, leaves, create_graph=create_graph)
    grads = torch.autograd.grad(value.real, leaves, create_graph=create_graph)
    return tuple(g.conj() for g in grads)


def _legendre_grad(activation: Activation, s: Tensor, create_graph: bool = False) -> Tensor:
    """G'(s) = ρ⁻¹(s): the activation's closed form ``rho_inverse`` if it gives one, else autograd
    of G (keeping the graph through ``s`` with ``create_graph``, as BPTT needs)."""
    if activation.rho_inverse is not None:
        return activation.rho_inverse(s)
    with torch.enable_grad():
        leaf = s if (create_graph and s.requires_grad) else s.detach().requires_grad_()
        return torch.autograd.grad(activation.legendre(leaf).sum(), leaf, create_graph=create_graph)[0]


def resolve_activations(activation: str | Activation | list | tuple, n_layers: int) -> tuple[Activation, ...]:
    """One activation for all layers, or one per layer."""
    if not isinstance(activation, (str, Activation)) and hasattr(activation, "__iter__"):
        activation = list(activation)  # a list, a tuple, or a config's list
        if len(activation) != n_layers:
            raise ShapeError(f"Got {len(activation)} activations for {n_layers} layers; give one or one per layer.")
        return tuple(get_activation(a) for a in activation)
    return (get_activation(activation),) * n_layers
