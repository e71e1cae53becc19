"""Closed-form echo kernels of the built-in HRUs (eqprop.models.LinearHRU, NonlinearHRU).

Check: tests/test_echo_kernels.py compares each with :class:`~.autograd.AutogradEchoKernel`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import is_param, reduce_like

__all__ = ["LinearHRUKernel", "NonlinearHRUKernel"]


class _HRUKernel:
    """What the closed-form HRU kernels share: the detached parameters read once, the running
    sums of q² and p² over the two echo copies, and the drift (which does not touch θ but dt)."""

    def __init__(self, model, dt: Tensor, batch: int, copies: int) -> None:
        self.model, self.batch, self.copies = model, batch, copies
        self.train_dt = is_param(dt, getattr(model, "dt", None))
        with torch.no_grad():
            self.dt = dt.detach()
            self.kappa = model.frequency.detach()
            self.a = self.kappa * self.kappa
            self.weight = model.input_weight.detach()
            self.weight_t = self.weight.t()
            self.bias = model.input_bias.detach()
        self._cache: dict[float, tuple[Tensor, ...]] = {}
        n, zeros = model.hidden_size, self.a.new_zeros
        self.q2 = zeros(2, batch, n)     # Σ f q_c² per copy (c = 0, 1)
        self.p2 = zeros(2, batch, n)     # Σ f p_c² (drifts)
        self.input_grad: Tensor | None = None

    def _scaled(self, fraction: float) -> tuple[Tensor, ...]:  # pragma: no cover - per kernel
        raise NotImplementedError

    def drift(self, q: Tensor, p: Tensor, fraction: float) -> Tensor:
        if self.train_dt:
            p3 = p.view(self.copies, self.batch, -1)[:2]
            self.p2.addcmul_(p3, p3, value=fraction)
        return torch.addcmul(q, p, self._scaled(fraction)[0])


class LinearHRUKernel(_HRUKernel):
    """Closed form for :class:`~eqprop.models.LinearHRU`, Ṽ = Σ_i dt_i [½κ_i² q_i² − q_i w_i], w = Bu + b.

        force      dt ⊙ (κ² ⊙ q − w)
        ∂Ṽ/∂κ_i   = dt_i κ_i q_i²          ∂Ṽ/∂B = −(dt ⊙ q) uᵀ       ∂Ṽ/∂b = −dt ⊙ q
        ∂Ṽ/∂dt_i  = ½κ_i² q_i² − q_i w_i   (+ ½p_i² from each drift)  ∂Ṽ/∂u = −(dt ⊙ q) B
    """

    def __init__(self, model, dt: Tensor, batch: int, copies: int) -> None:
        super().__init__(model, dt, batch, copies)
        with torch.no_grad():
            self.neg_weight_dt = -(self.dt.reshape(-1, 1) * self.weight) if self.dt.dim() else -self.dt * self.weight
        n, zeros = model.hidden_size, self.a.new_zeros
        self.qw = zeros(2, batch, n)     # Σ f q_c ⊙ w
        self.dq = zeros(batch, n)        # Σ f (q_0 − q_1)
        self.dq_u = zeros(n, model.input_size)  # Σ f (q_0 − q_1)ᵀ u

    def _scaled(self, fraction: float) -> tuple[Tensor, Tensor]:
        if fraction not in self._cache:
            self._cache[fraction] = (fraction * self.dt, fraction * self.dt * self.a)
        return self._cache[fraction]

    def kick(self, p: Tensor, q: Tensor, u: Tensor, fraction: float) -> Tensor:
        dt_f, dta_f = self._scaled(fraction)
        w = torch.addmm(self.bias, u, self.weight_t)
        p_new = torch.addcmul(p, q, dta_f, value=-1.0)
        p_new.view(self.copies, self.batch, -1).add_(dt_f * w)
        q3 = q.view(self.copies, self.batch, -1)
        q01 = q3[:2]
        self.q2.addcmul_(q01, q01, value=fraction)
        if self.train_dt:
            self.qw.addcmul_(q01, w, value=fraction)
        diff = q3[0] - q3[1]
        self.dq.add_(diff, alpha=fraction)
        self.dq_u.addmm_(diff.t(), u, alpha=fraction)
        g = torch.mm(diff, self.neg_weight_dt)
        if fraction != 1.0:
            g.mul_(fraction)
        self.input_grad = g if self.input_grad is None else self.input_grad + g
        return p_new

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        m, dt = self.model, self.dt
        dt_col = dt.reshape(-1, 1) if dt.dim() else dt
        q2 = (self.q2[0] - self.q2[1]).sum(0)
        out = [(m.frequency, dt * self.kappa * q2), (m.input_weight, -dt_col * self.dq_u),
               (m.input_bias, -dt * self.dq.sum(0))]
        if self.train_dt:
            per_unit = 0.5 * self.a * q2 - (self.qw[0] - self.qw[1]).sum(0) + 0.5 * (self.p2[0] - self.p2[1]).sum(0)
            out.append((m.dt, reduce_like(per_unit, dt)))
        return out


class NonlinearHRUKernel(_HRUKernel):
    """Closed form for :class:`~eqprop.models.NonlinearHRU`, Ṽ = dt [½Σκ_i²q_i² + Σ_j log cosh h_j],
    h = Wq + Bu + b, t = tanh h:

        force    dt (κ² ⊙ q + Wᵀt)
        ∂Ṽ/∂κ = dt κ ⊙ q²     ∂Ṽ/∂W = dt t qᵀ     ∂Ṽ/∂B = dt t uᵀ     ∂Ṽ/∂b = dt t
        ∂Ṽ/∂dt = V (+ ½|p|² from each drift)      ∂Ṽ/∂u = dt Bᵀt
    """

    def __init__(self, model, dt: Tensor, batch: int, copies: int) -> None:
        super().__init__(model, dt, batch, copies)
        with torch.no_grad():
            self.coupling = model.coupling.detach()
            self.coupling_t = self.coupling.t()
        n, zeros = model.hidden_size, self.a.new_zeros
        self.log_cosh = zeros(2, batch, n)   # Σ f (h + softplus(−2h)) = Σ f (log cosh h + log 2)
        self.t_q = zeros(n, n)                # Σ f (t_0ᵀ q_0 − t_1ᵀ q_1)
        self.dt_sum = zeros(batch, n)         # Σ f (t_0 − t_1)
        self.dt_u = zeros(n, model.input_size)  # Σ f (t_0 − t_1)ᵀ u
        self.input_grad: Tensor | None = None

    def _scaled(self, fraction: float):
        if fraction not in self._cache:
            d = fraction * self.dt
            self._cache[fraction] = (d, d * self.a, d * self.coupling, d * self.weight)
        return self._cache[fraction]

    def kick(self, p: Tensor, q: Tensor, u: Tensor, fraction: float) -> Tensor:
        dt_f, dta_f, coupling_f, weight_f = self._scaled(fraction)
        w = torch.addmm(self.bias, u, self.weight_t)
        q3 = q.view(self.copies, self.batch, -1)
        h = torch.matmul(q3, self.coupling_t).add_(w)
        t = torch.tanh(h)
        p_new = torch.addcmul(p, q, dta_f, value=-1.0).sub_(torch.matmul(t, coupling_f).view_as(p))
        q01, t0, t1 = q3[:2], t[0], t[1]
        self.q2.addcmul_(q01, q01, value=fraction)
        self.t_q.addmm_(t0.t(), q3[0], alpha=fraction).addmm_(t1.t(), q3[1], alpha=-fraction)
        diff = t0 - t1
        self.dt_sum.add_(diff, alpha=fraction)
        self.dt_u.addmm_(diff.t(), u, alpha=fraction)
        if self.train_dt:
            h01 = h[:2]
            self.log_cosh.add_(h01, alpha=fraction).add_(torch.nn.functional.softplus(-2.0 * h01), alpha=fraction)
        g = torch.mm(diff, weight_f)
        self.input_grad = g if self.input_grad is None else self.input_grad + g
        return p_new

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        m, dt = self.model, self.dt
        q2 = (self.q2[0] - self.q2[1]).sum(0)
        out = [(m.frequency, dt * self.kappa * q2), (m.coupling, dt * self.t_q), (m.input_weight, dt * self.dt_u),
               (m.input_bias, dt * self.dt_sum.sum(0))]
        if self.train_dt:
            energy = 0.5 * (self.a * q2).sum() + (self.log_cosh[0] - self.log_cosh[1]).sum() \
                + 0.5 * (self.p2[0] - self.p2[1]).sum()
            out.append((m.dt, reduce_like(energy.reshape(1), dt)))
        return out
