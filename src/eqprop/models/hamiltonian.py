"""Hamiltonian models H(q, p, θ, u_t) = T(p) + V(q, u_t): the systems RHEL trains.

A user writes one class::

    class MyHamiltonian(HamiltonianModel):
        def potential(self, q, u): ...    # -> [batch]; u is the input of this step
        def init_state(self, u_seq): ...  # -> (q, p), batch first
        def output(self, q): ...          # the readout the per-step loss sees
        # optional: kinetic(p) (default |p|²/2), a trainable step size `dt`

and every force, generating sum and parameter derivative follows by autograd. Built-in models
may override :meth:`potential_grad` / :meth:`kinetic_grad` with closed forms (tests check the
override against autograd).

Step sizes. ``dt`` is either a scalar or, for a model whose potential and kinetic energies are
separable per coordinate (``V = Σ_i V_i(q_i, u)``, ``T = Σ_i T_i(p_i)``), a vector with one
step per coordinate. Both cases are one rule: a step of size ``dt`` on H is a unit step on the
*scaled* Hamiltonian ``H̃ = Σ_i dt_i (T_i + V_i)`` (scalar: ``dt·H``), which stays symplectic and
reversible; :meth:`scaled_potential` and :meth:`scaled_kinetic` compute ``Ṽ`` and ``T̃``. A vector
``dt`` needs :meth:`potential_terms` (the per-coordinate ``V_i``), which is how a model declares
separability.

Stacks. Every Hamiltonian model is also a one-layer *stack* (see :class:`eqprop.models.HSSM`
for more layers): ``hamiltonian_layers()`` lists the Hamiltonian layers, ``encode(x_t)`` maps
the sequence input to the stream ``z`` fed to layer 0, ``mix(i, z, q)`` maps layer ``i``'s input
stream and new position to the next stream, and ``decode(z)`` gives the output the cost reads.
For a single model these are identity, identity, ``output(q)`` and identity. Learners and
baselines only use this protocol, so a new stacked architecture is one class.

This module knows nothing of integrators, learners or costs.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigurationError, NonFiniteError, ShapeError
from ._checks import check_per_sample
from .echo_kernels import AutogradEchoKernel, AutogradStackKernel

__all__ = ["HamiltonianModel", "default_kinetic"]


def _sum_per_sample(value: Tensor) -> Tensor:
    return value.reshape(value.shape[0], -1).sum(dim=1)


def default_kinetic(model: "HamiltonianModel") -> bool:
    """True when the model keeps T(p) = |p|²/2 (so ∂T/∂p = p in closed form)."""
    cls = type(model)
    return cls.kinetic is HamiltonianModel.kinetic and cls.kinetic_terms is HamiltonianModel.kinetic_terms


class HamiltonianModel(nn.Module):
    """A separable, time-reversal-symmetric Hamiltonian H = T(p) + V(q, u_t), T(−p) = T(p).

    Dynamics q̇ = ∂_pH, ṗ = −∂_qH (Pourcel & Ernoult 2025, "Learning long range dependencies
    through time reversal symmetry breaking"). Subclasses implement :meth:`potential`,
    :meth:`init_state` and :meth:`output`; optionally :meth:`kinetic` and a step size ``dt``
    (a float, a buffer or an ``nn.Parameter``, trained like any other parameter by RHEL).

    ``input_size`` (optional attribute): the width of the input u_t, checked by the learners.

    Check: tests/test_hamiltonian_models.py compares closed-form forces with autograd and
    tests/test_rhel.py checks RHEL on a model defined inside the test against BPTT.
    """

    input_size: int | None = None
    #: "last": the output at step k is decode(z_k); "mean": it is the running mean of decode(z_0..k),
    #: so a final-step loss reads the time-averaged output (see eqprop.estimators.sequence.simulate).
    pooling: str = "last"

    # -- the physics a user writes -------------------------------------------------------------
    def kinetic(self, p: Tensor) -> Tensor:
        """T(p) per sample, shape [batch]; default |p|²/2. Must be even: T(−p) = T(p)."""
        return _sum_per_sample(self.kinetic_terms(p))

    def kinetic_terms(self, p: Tensor) -> Tensor:
        """Per-coordinate kinetic energies T_i(p_i) (needed only with a vector ``dt``)."""
        return 0.5 * p * p

    def potential(self, q: Tensor, u: Tensor) -> Tensor:
        """V(q, u) per sample, shape [batch]; by default the sum of :meth:`potential_terms`."""
        if type(self).potential_terms is HamiltonianModel.potential_terms:
            raise NotImplementedError(f"{type(self).__name__} must implement potential(q, u) -> [batch].")
        return _sum_per_sample(self.potential_terms(q, u))

    def potential_terms(self, q: Tensor, u: Tensor) -> Tensor:
        """Per-coordinate potentials V_i(q_i, u), shape like q; defines separability (vector dt)."""
        raise ConfigurationError(
            f"{type(self).__name__} has a vector step size dt but no potential_terms(q, u); use a scalar "
            f"dt or implement potential_terms returning the per-coordinate potentials V_i."
        )

    def init_state(self, u_seq: Tensor) -> tuple[Tensor, Tensor]:
        """Initial (q, p) for the input sequence u_seq of shape [batch, T, ...]."""
        raise NotImplementedError(f"{type(self).__name__} must implement init_state(u_seq) -> (q, p).")

    def output(self, q: Tensor) -> Tensor:
        """The readout the cost compares with the target (per step or at the final step)."""
        raise NotImplementedError(f"{type(self).__name__} must implement output(q).")

    # -- derived by autograd (closed forms may override) ---------------------------------------
    def hamiltonian(self, q: Tensor, p: Tensor, u: Tensor) -> Tensor:
        """H(q, p, u) = T(p) + V(q, u), per sample."""
        return self.kinetic(p) + self.potential(q, u)

    def potential_grad(self, q: Tensor, u: Tensor, create_graph: bool = False) -> Tensor:
        """∂V/∂q (per coordinate, unscaled by dt), by autograd unless overridden."""
        with torch.enable_grad():
            leaf = q if (create_graph and q.requires_grad) else q.detach().requires_grad_(True)
            energy = self.potential(leaf, u)
            (grad,) = torch.autograd.grad(energy.sum(), leaf, create_graph=create_graph)
        return grad

    def kinetic_is_default(self) -> bool:
        """True when the model keeps T(p) = |p|²/2 (∂T/∂p = p in closed form); the echo kernels ask."""
        return default_kinetic(self)

    def kinetic_grad(self, p: Tensor, create_graph: bool = False) -> Tensor:
        """∂T/∂p, the velocity; p itself for the default kinetic energy."""
        if default_kinetic(self):
            return p
        with torch.enable_grad():
            leaf = p if (create_graph and p.requires_grad) else p.detach().requires_grad_(True)
            energy = self.kinetic(leaf)
            (grad,) = torch.autograd.grad(energy.sum(), leaf, create_graph=create_graph)
        return grad

    def scaled_potential(self, q: Tensor, u: Tensor, dt: Tensor) -> Tensor:
        """Ṽ = dt·V (scalar dt) or Σ_i dt_i V_i (vector dt), per sample."""
        if dt.dim() == 0:
            return dt * self.potential(q, u)
        return _sum_per_sample(dt * self.potential_terms(q, u))

    def scaled_kinetic(self, p: Tensor, dt: Tensor) -> Tensor:
        """T̃ = dt·T (scalar dt) or Σ_i dt_i T_i (vector dt), per sample."""
        if dt.dim() == 0:
            return dt * self.kinetic(p)
        return _sum_per_sample(dt * self.kinetic_terms(p))

    def step_size(self, override: float | None = None) -> Tensor:
        """The step used by an integrator: ``override`` if given, else the model's own ``dt``."""
        ref = next(iter(self.parameters()), None)
        dtype = ref.dtype if ref is not None else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        if override is not None:
            return torch.tensor(float(override), dtype=dtype, device=device)
        dt = getattr(self, "dt", None)
        if dt is None:
            raise ConfigurationError(
                f"{type(self).__name__} has no attribute dt; give the integrator a step, e.g. PositionVerlet(dt=0.1)."
            )
        if not isinstance(dt, Tensor):
            return torch.tensor(float(dt), dtype=dtype, device=device)
        if not bool(torch.isfinite(dt).all()):
            raise NonFiniteError(f"The step size dt of {type(self).__name__} is not finite; lower the learning rate.")
        return dt

    # -- the stack protocol (one layer) ----------------------------------------------------------
    def hamiltonian_layers(self) -> Sequence["HamiltonianModel"]:
        """The Hamiltonian layers, bottom first; a plain model is its own single layer."""
        return [self]

    def encode(self, x_t: Tensor) -> Tensor:
        """Input stream of layer 0 at one step (identity for a single model)."""
        return x_t

    def mix(self, index: int, z: Tensor, q: Tensor) -> Tensor:
        """Stream after layer ``index`` from its input stream z and its new position q."""
        return self.output(q)

    def decode(self, z: Tensor) -> Tensor:
        """The output the cost reads, from the top stream (identity for a single model)."""
        return z

    def init_states(self, x: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Initial (q, p) of every layer."""
        return [self.init_state(x)]

    def check_physics(self, x: Tensor) -> None:
        """Check what the user's methods return on the first step of ``x`` [batch, T, features]:
        each layer's initial state a pair (q, p) of equal shapes, batch first, and ``potential``
        and ``kinetic`` one value per sample. Every learner and baseline calls it (once per input
        shape) before simulating; a ShapeError names the method and the fix."""
        if x.dim() != 3 or x.shape[1] < 1:
            return  # the learner's sequence check names the expected input shape
        batch = x.shape[0]
        z = self.encode(x[:, 0])
        for index, (layer, state) in enumerate(zip(self.hamiltonian_layers(), self.init_states(x))):
            name = type(layer).__name__
            if not isinstance(state, (tuple, list)) or len(state) != 2 or not all(isinstance(t, Tensor) for t in state):
                raise ShapeError(f"{name}.init_state must return a pair (q, p) of tensors, got {type(state).__name__}.")
            q, p = state
            if q.dim() == 0 or q.shape[0] != batch or p.shape != q.shape:
                raise ShapeError(
                    f"{name}.init_state must return q and p of one shape with the batch first, got {tuple(q.shape)} "
                    f"and {tuple(p.shape)} for a batch of {batch}."
                )
            check_per_sample(f"{name}.potential", layer.potential(q, z), batch)
            check_per_sample(f"{name}.kinetic", layer.kinetic(p), batch)
            z = self.mix(index, z, q)

    # -- echo kernels (eqprop.models.echo_kernels): autograd by default, closed forms may override --
    def echo_kernel(self, dt: Tensor, batch: int, copies: int):
        """The object an RHEL echo steps this layer with (drift, kick, contrasts); autograd by default."""
        return AutogradEchoKernel(self, dt, batch, copies)

    def stack_kernel(self):
        """encode / mix / decode and their vector-Jacobian products for the echo; autograd by default."""
        return AutogradStackKernel(self)
