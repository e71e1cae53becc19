"""Closed-form echo kernels of the built-in HRUs (eqprop.models.LinearHRU, NonlinearHRU).

Check: tests/test_echo_kernels.py compares each with :class:`~.autograd.AutogradEchoKernel`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._common import is_param, reduce_like

__all__ = ["LinearHRUKernel", "NonlinearHRUKernel"]


def _log_cosh_difference(h1: Tensor, delta: Tensor, t1: Tensor, work: list[Tensor] | None = None,
                         mask: Tensor | None = None) -> Tensor:
    """log cosh(h_1 + δ) − log cosh h_1 = log1p(2 sinh²(δ/2) + t_1 sinh δ) for |δ| < 1 (no
    cancellation at small δ); for larger δ, where nothing cancels, the two terms directly
    (log cosh h + log 2 = |h| + log1p(e^{−2|h|}), stable for large |h|).

    ``work``: three arrays shaped like δ to compute in (the result is the first), and ``mask`` a
    boolean one — the fused echo passes buffers made once; fresh ones are made when None."""
    first, second, third = work if work is not None else [torch.empty_like(delta) for _ in range(3)]
    torch.mul(delta, 0.5, out=first).sinh_()
    first.mul_(first).mul_(2.0)
    torch.sinh(delta, out=second).mul_(t1)
    first.add_(second).clamp_(min=-0.9).log1p_()  # the argument is ≥ e^{−1} − 1 where |δ| < 1
    torch.abs(delta, out=second)
    if not bool(second.amax() >= 1.0):  # the usual case at small ε: no second branch to evaluate
        return first
    far = torch.ge(second, 1.0, out=mask) if mask is not None else second >= 1.0
    torch.add(h1, delta, out=second)
    for h, sign in ((second, 1.0), (h1, -1.0)):
        torch.abs(h, out=third)
        if sign > 0:
            second.abs_()
        else:
            second.sub_(third)
        third.mul_(-2.0).exp_().log1p_()
        second.add_(third, alpha=sign)
    return torch.where(far, second, first, out=first)


class _HRUKernel:
    """What the closed-form HRU kernels share: the detached parameters read once, the running
    contrasts of q² and p², and the drift (which does not touch θ but dt).

    Rows ``[0, B)`` of an echo state hold d = Φ_0 − Φ_1 (copy 0 minus copy 1, ``difference``
    layout), the other row blocks the copies themselves: every ± pair is combined before it is
    summed (q_0² − q_1² = d (2q_1 + d), tanh h_0 − tanh h_1 = tanh(δ)(1 − t_0 t_1), …), so the
    contrast keeps the dtype's relative precision whatever ε.
    """

    difference = True
    fused = True  # eqprop.models.echo_kernels.fused runs a whole echo of this kernel

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
        self.q2 = zeros(batch, n)     # Σ f (q_0² − q_1²)
        self.p2 = zeros(batch, n)     # Σ f (p_0² − p_1²) (drifts)
        self.input_grad: Tensor | None = None

    def _scaled(self, fraction: float) -> tuple[Tensor, ...]:  # pragma: no cover - per kernel
        raise NotImplementedError

    def _square_contrast(self, acc: Tensor, t: Tensor, fraction: float) -> None:
        """acc += f (t_0² − t_1²) = f d (2 t_1 + d), d = t_0 − t_1 (rows [0, B))."""
        d, t1 = t[:self.batch], t[self.batch:2 * self.batch]
        acc.addcmul_(d, torch.add(d, t1, alpha=2.0), value=fraction)

    def drift(self, q: Tensor, p: Tensor, fraction: float) -> Tensor:
        if self.train_dt:
            self._square_contrast(self.p2, p, fraction)
        return torch.addcmul(q, p, self._scaled(fraction)[0])  # linear: the same map for d and the copies


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
        self.qw = zeros(batch, n)        # Σ f (q_0 − q_1) ⊙ w
        self.dq = zeros(batch, n)        # Σ f (q_0 − q_1)
        self.dq_u = zeros(n, model.input_size)  # Σ f (q_0 − q_1)ᵀ u

    def _scaled(self, fraction: float) -> tuple[Tensor, Tensor]:
        if fraction not in self._cache:
            self._cache[fraction] = (fraction * self.dt, fraction * self.dt * self.a)
        return self._cache[fraction]

    def kick(self, p: Tensor, q: Tensor, u: Tensor, fraction: float) -> Tensor:
        dt_f, dta_f = self._scaled(fraction)
        batch = self.batch
        w = torch.addmm(self.bias, u, self.weight_t)
        p_new = torch.addcmul(p, q, dta_f, value=-1.0)
        p_new.view(self.copies, batch, -1)[1:].add_(dt_f * w)  # the drive cancels in the difference d
        d = q[:batch]
        self._square_contrast(self.q2, q, fraction)
        if self.train_dt:
            self.qw.addcmul_(d, w, value=fraction)
        self.dq.add_(d, alpha=fraction)
        self.dq_u.addmm_(d.t(), u, alpha=fraction)
        g = torch.mm(d, self.neg_weight_dt)
        if fraction != 1.0:
            g.mul_(fraction)
        self.input_grad = g if self.input_grad is None else self.input_grad + g
        return p_new

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        m, dt = self.model, self.dt
        dt_col = dt.reshape(-1, 1) if dt.dim() else dt
        q2 = self.q2.sum(0)
        out = [(m.frequency, dt * self.kappa * q2), (m.input_weight, -dt_col * self.dq_u),
               (m.input_bias, -dt * self.dq.sum(0))]
        if self.train_dt:
            per_unit = 0.5 * self.a * q2 - self.qw.sum(0) + 0.5 * self.p2.sum(0)
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
        self.log_cosh = zeros(batch, n)      # Σ f (log cosh h_0 − log cosh h_1)
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
        batch = self.batch
        w = torch.addmm(self.bias, u, self.weight_t)
        q3 = q.view(self.copies, batch, -1)
        h = torch.matmul(q3, self.coupling_t)   # block 0: δ = W d (the drive cancels)
        h[1:].add_(w)
        delta, h1 = h[0], h[1]
        t = torch.tanh(h)                       # block 0: tanh δ
        t1 = t[1]
        t0 = torch.tanh(h1 + delta)
        # t_0 − t_1 = tanh(δ)(1 − t_0 t_1): from δ, never from two nearly equal tanh
        diff = torch.addcmul(torch.ones_like(t1), t0, t1, value=-1.0).mul_(t[0])
        if self.train_dt:
            self.log_cosh.add_(_log_cosh_difference(h1, delta, t1), alpha=fraction)
        t[0] = diff
        p_new = torch.addcmul(p, q, dta_f, value=-1.0).sub_(torch.matmul(t, coupling_f).view_as(p))
        d, q1 = q3[0], q3[1]
        self._square_contrast(self.q2, q, fraction)
        # t_0ᵀq_0 − t_1ᵀq_1 = (t_0 − t_1)ᵀ q_1 + t_0ᵀ d
        self.t_q.addmm_(diff.t(), q1, alpha=fraction).addmm_(t0.t(), d, alpha=fraction)
        self.dt_sum.add_(diff, alpha=fraction)
        self.dt_u.addmm_(diff.t(), u, alpha=fraction)
        g = torch.mm(diff, weight_f)
        self.input_grad = g if self.input_grad is None else self.input_grad + g
        return p_new

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        m, dt = self.model, self.dt
        q2 = self.q2.sum(0)
        out = [(m.frequency, dt * self.kappa * q2), (m.coupling, dt * self.t_q), (m.input_weight, dt * self.dt_u),
               (m.input_bias, dt * self.dt_sum.sum(0))]
        if self.train_dt:
            energy = 0.5 * (self.a * q2).sum() + self.log_cosh.sum() + 0.5 * self.p2.sum()
            out.append((m.dt, reduce_like(energy.reshape(1), dt)))
        return out
