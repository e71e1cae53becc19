"""The autograd echo kernels: any Hamiltonian model and any stack, by ``torch.autograd.grad``.

The references every closed form is checked against (tests/test_echo_kernels.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import GradientSums, copy_weights, reduce_like

__all__ = ["AutogradEchoKernel", "AutogradStackKernel"]


class AutogradEchoKernel:
    """Any Hamiltonian model, by autograd: one ``torch.autograd.grad`` per kick (and per drift for a
    non-default kinetic energy). The reference implementation the closed forms are checked against."""

    def __init__(self, model, dt: Tensor, batch: int, copies: int) -> None:
        self.model, self.dt, self.batch, self.copies = model, dt, batch, copies
        self._sums = GradientSums(model)
        self.params = self._sums.params
        self.weights = copy_weights(dt, batch, copies)
        self.default_kinetic = model.kinetic_is_default()
        self.dt_index = next((i for i, p in enumerate(self.params) if p is dt), None)
        self.input_grad: Tensor | None = None

    def _view(self, w: Tensor, x: Tensor) -> Tensor:
        return w.reshape(-1, *([1] * (x.dim() - 1)))

    def _weighted_grad(self, energy_fn, leaf: Tensor, extra: list[Tensor], fraction: float):
        """Gradients of Σ_rows f·w_row·E_row; the leaf's gradient divided back by the weights."""
        with torch.enable_grad():
            energy = energy_fn(leaf)
            grads = torch.autograd.grad(energy, [leaf] + extra + self.params, grad_outputs=fraction * self.weights,
                                        allow_unused=True)
        safe = torch.where(self.weights != 0, self.weights, torch.ones_like(self.weights))
        return grads[0] / (fraction * self._view(safe, grads[0])), grads[1:]

    def drift(self, q: Tensor, p: Tensor, fraction: float) -> Tensor:
        dt = self.dt
        if self.default_kinetic:
            if self.dt_index is not None:
                terms = 0.5 * fraction * p * p * self._view(self.weights, p)
                self._sums.add([reduce_like(terms, dt) if i == self.dt_index else None for i in range(len(self.params))])
            return q + fraction * dt * p
        leaf = p.detach().requires_grad_(True)
        velocity, grads = self._weighted_grad(lambda t: self.model.scaled_kinetic(t, dt), leaf, [], fraction)
        if self.copies > 2:  # rows outside the contrast: their velocity, unweighted
            rows = slice(2 * self.batch, None)
            velocity[rows] = self.model.kinetic_grad(p[rows]) * dt
        self._sums.add(grads)
        return q + fraction * velocity.detach()

    def kick(self, p: Tensor, q: Tensor, u: Tensor, fraction: float) -> Tensor:
        dt, copies = self.dt, self.copies
        leaf = q.detach().requires_grad_(True)
        u_leaf = u.detach().requires_grad_(True)

        def energy(t):
            return self.model.scaled_potential(t, u_leaf.repeat(copies, *([1] * (u.dim() - 1))), dt)

        force, grads = self._weighted_grad(energy, leaf, [u_leaf], fraction)
        if copies > 2:
            rows = slice(2 * self.batch, None)
            rest = u.repeat(copies - 2, *([1] * (u.dim() - 1)))
            force[rows] = dt * self.model.potential_grad(q[rows], rest) if dt.dim() == 0 else \
                self.model.potential_grad(q[rows], rest) * dt
        if grads[0] is not None:
            self.input_grad = grads[0] if self.input_grad is None else self.input_grad + grads[0]
        self._sums.add(grads[1:])
        return p - fraction * force.detach()

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        return self._sums.grads()


class AutogradStackKernel:
    """encode / mix / decode of any stack and their vector-Jacobian products, by autograd.

    ``mix(i, z, q)`` evaluates the map with a graph (z, q as leaves); ``mix_vjp(i, delta)`` pulls
    ``delta`` back through the last evaluation at index i, returning (dz, dq) and accumulating the
    parameters' gradients. Graphs are dropped at the next evaluation, so memory does not grow with T.
    """

    def __init__(self, model) -> None:
        self.model = model
        self._sums = GradientSums(model)
        self.params = self._sums.params
        self._mixes: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def encode(self, x_t: Tensor) -> Tensor:
        return self.model.encode(x_t)

    def encode_vjp(self, x_t: Tensor, delta: Tensor) -> None:
        with torch.enable_grad():
            z = self.model.encode(x_t)
            if z.requires_grad:
                self._sums.add(torch.autograd.grad(z, self.params, grad_outputs=delta, allow_unused=True))

    def mix(self, index: int, z: Tensor, q: Tensor) -> Tensor:
        with torch.enable_grad():
            z_leaf = z.detach().requires_grad_(True)
            q_leaf = q.detach().requires_grad_(True)
            out = self.model.mix(index, z_leaf, q_leaf)
        self._mixes[index] = (z_leaf, q_leaf, out)
        return out.detach()

    def mix_vjp(self, index: int, delta: Tensor) -> tuple[Tensor | None, Tensor | None]:
        z_leaf, q_leaf, out = self._mixes.pop(index)
        if not out.requires_grad:
            return None, None
        grads = torch.autograd.grad(out, [z_leaf, q_leaf] + self.params, grad_outputs=delta, allow_unused=True)
        self._sums.add(grads[2:])
        return grads[0], grads[1]

    def decode_vjp(self, z: Tensor, delta: Tensor) -> Tensor | None:
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            out = self.model.decode(leaf)
            if not out.requires_grad:
                return None
            grads = torch.autograd.grad(out, [leaf] + self.params, grad_outputs=delta, allow_unused=True)
        self._sums.add(grads[1:])
        return grads[0]

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        return self._sums.grads()
