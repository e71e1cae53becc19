"""Echo kernels: the per-call objects that RHEL's echo steps through, closed-form or by autograd.

An echo runs several copies of a Hamiltonian layer at once, stacked along the batch axis, copy
major: rows ``[c·B, (c+1)·B)`` are copy c (copy 0 at +ε, copy 1 at −ε or 0, an optional copy
2 at ε = 0 for the self-check). The contrast RHEL needs is ``Σ_c w_c ∂_θS_c`` with w = (+1, −1,
0, …), S the integrator's generating sum (ALGORITHMS.md §2). An integrator step is a sequence
of sub-steps, and each sub-step calls the kernel once:

    kernel.drift(q, p, f)      -> q + f·dt ∂_pT(p)       and adds f·Σ_c w_c ∂_θ(dt T)(p_c)
    kernel.kick(p, q, u, f)    -> p − f·dt ∂_qV(q, u)    and adds f·Σ_c w_c ∂_θ(dt V)(q_c, u),
                                                          and f·Σ_c w_c ∂_u(dt V) into ``input_grad``
    kernel.grads()             -> [(parameter, Σ_j Σ_c w_c ∂_θS_j,c)]   (dt included)

The input u of a step is the same for every copy (batch rows only), so it is never repeated.
A kernel fetches the parameters once per call (detached) and keeps plain tensor accumulators:
no autograd, no module call in the inner loop. :class:`AutogradEchoKernel` does the same for any
:class:`~eqprop.models.HamiltonianModel` by autograd (one call per sub-step); the built-in HRUs
give closed forms (:class:`LinearHRUKernel`, :class:`NonlinearHRUKernel`).

The feedforward maps of a stack (encode, mix, decode) get the same treatment: a *stack kernel*
evaluates them at the reference copy and pulls a cotangent back through them (a
vector-Jacobian product), accumulating the feedforward parameters' gradients.
:class:`AutogradStackKernel` works for any stack; :class:`HSSMStackKernel` is the closed form
of the HSSM's linear encoder / decoder and readout–activation–residual–LayerNorm mixing.

Check: tests/test_echo_kernels.py compares every closed form with its autograd kernel.
This module knows models only; it knows nothing of integrators, costs or learners.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["AutogradEchoKernel", "AutogradStackKernel", "LinearHRUKernel", "NonlinearHRUKernel", "HSSMStackKernel"]


def _copy_weights(like: Tensor, batch: int, copies: int) -> Tensor:
    return like.new_tensor([1.0, -1.0] + [0.0] * (copies - 2)).repeat_interleave(batch)


def _reduce_like(g: Tensor, dt: Tensor) -> Tensor:
    """Sum per-coordinate contributions [..., n] down to dt's shape (scalar or [n])."""
    return g.sum() if dt.dim() == 0 else g.reshape(-1, *dt.shape).sum(0)


def _is_param(dt: Tensor, param) -> bool:
    return param is not None and dt is param and dt.requires_grad


class AutogradEchoKernel:
    """Any Hamiltonian model, by autograd: one ``torch.autograd.grad`` per kick (and per drift for a
    non-default kinetic energy). The reference implementation the closed forms are checked against."""

    def __init__(self, model, dt: Tensor, batch: int, copies: int) -> None:
        from .hamiltonian import default_kinetic

        self.model, self.dt, self.batch, self.copies = model, dt, batch, copies
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sums: list[Tensor | None] = [None] * len(self.params)
        self.weights = _copy_weights(dt, batch, copies)
        self.default_kinetic = default_kinetic(model)
        self.dt_index = next((i for i, p in enumerate(self.params) if p is dt), None)
        self.input_grad: Tensor | None = None

    def _add(self, grads) -> None:
        for i, g in enumerate(grads):
            if g is not None:
                self.sums[i] = g if self.sums[i] is None else self.sums[i] + g

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
                self._add([_reduce_like(terms, dt) if i == self.dt_index else None for i in range(len(self.params))])
            return q + fraction * dt * p
        leaf = p.detach().requires_grad_(True)
        velocity, grads = self._weighted_grad(lambda t: self.model.scaled_kinetic(t, dt), leaf, [], fraction)
        if self.copies > 2:  # rows outside the contrast: their velocity, unweighted
            rows = slice(2 * self.batch, None)
            velocity[rows] = self.model.kinetic_grad(p[rows]) * dt
        self._add(grads)
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
        self._add(grads[1:])
        return p - fraction * force.detach()

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        return [(p, g) for p, g in zip(self.params, self.sums) if g is not None]


class _HRUKernel:
    """What the closed-form HRU kernels share: the detached parameters read once, the running
    sums of q² and p² over the two echo copies, and the drift (which does not touch θ but dt)."""

    def __init__(self, model, dt: Tensor, batch: int, copies: int) -> None:
        self.model, self.batch, self.copies = model, batch, copies
        self.train_dt = _is_param(dt, getattr(model, "dt", None))
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
            out.append((m.dt, _reduce_like(per_unit, dt)))
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
            out.append((m.dt, _reduce_like(energy.reshape(1), dt)))
        return out


class AutogradStackKernel:
    """encode / mix / decode of any stack and their vector-Jacobian products, by autograd.

    ``mix(i, z, q)`` evaluates the map with a graph (z, q as leaves); ``mix_vjp(i, delta)`` pulls
    ``delta`` back through the last evaluation at index i, returning (dz, dq) and accumulating the
    parameters' gradients. Graphs are dropped at the next evaluation, so memory does not grow with T.
    """

    def __init__(self, model) -> None:
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.sums: list[Tensor | None] = [None] * len(self.params)
        self._mixes: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def _add(self, grads) -> None:
        for i, g in enumerate(grads):
            if g is not None:
                self.sums[i] = g if self.sums[i] is None else self.sums[i] + g

    def encode(self, x_t: Tensor) -> Tensor:
        return self.model.encode(x_t)

    def encode_vjp(self, x_t: Tensor, delta: Tensor) -> None:
        with torch.enable_grad():
            z = self.model.encode(x_t)
            if z.requires_grad:
                self._add(torch.autograd.grad(z, self.params, grad_outputs=delta, allow_unused=True))

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
        self._add(grads[2:])
        return grads[0], grads[1]

    def decode_vjp(self, z: Tensor, delta: Tensor) -> Tensor | None:
        with torch.enable_grad():
            leaf = z.detach().requires_grad_(True)
            out = self.model.decode(leaf)
            if not out.requires_grad:
                return None
            grads = torch.autograd.grad(out, [leaf] + self.params, grad_outputs=delta, allow_unused=True)
        self._add(grads[1:])
        return grads[0]

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        return [(p, g) for p, g in zip(self.params, self.sums) if g is not None]


class HSSMStackKernel:
    """Closed forms of the HSSM's feedforward maps and their VJPs (tests/test_echo_kernels.py).

        encode  z = E x + e                      mix  y = C q + c,  a = σ(y),  s = z + a,
        decode  o = D z + d                           n̂ = (s − mean s) r,  r = (var s + eps)^(−½),  z' = γ ⊙ n̂ + β
        VJP of mix:  dβ = δ, dγ = δ ⊙ n̂, ds = r (δγ − mean(δγ) − n̂ mean(δγ ⊙ n̂)),
                     dy = σ'(y) ds (GELU, GLU, tanh by torch's backward kernels), dC = dyᵀq, dc = dy,
                     dz = ds, dq = dy C
    Parameter gradients are accumulated per row and reduced once at the end.
    """

    def __init__(self, model) -> None:
        from torch.nn import functional

        self.model = model
        self.activation = model.activation
        self._act = {"gelu": functional.gelu, "tanh": torch.tanh, "identity": None,
                     "glu": lambda y: functional.glu(y, dim=-1)}[model.activation]
        detach = lambda t: t.detach()  # noqa: E731
        self.enc_w, self.enc_b = detach(model.encoder.weight), detach(model.encoder.bias)
        self.enc_wt = self.enc_w.t()
        self.dec_w, self.dec_b = detach(model.decoder.weight), detach(model.decoder.bias)
        self.read_w = [detach(r.weight) for r in model.readouts]
        self.read_wt = [w.t() for w in self.read_w]
        self.read_b = [detach(r.bias) for r in model.readouts]
        self.norms = None if model.norms is None else [(detach(n.weight), detach(n.bias), n.eps) for n in model.norms]
        self._ctx: dict[int, tuple] = {}
        self.enc_w_acc = self.enc_b_acc = self.dec_w_acc = self.dec_b_acc = None
        layers = len(self.read_w)
        self.read_w_acc: list[Tensor | None] = [None] * layers
        self.read_b_acc: list[Tensor | None] = [None] * layers
        self.gamma_acc: list[Tensor | None] = [None] * layers
        self.beta_acc: list[Tensor | None] = [None] * layers

    def encode(self, x_t: Tensor) -> Tensor:
        return torch.addmm(self.enc_b, x_t, self.enc_wt)

    def encode_vjp(self, x_t: Tensor, delta: Tensor) -> None:
        if self.enc_w_acc is None:
            self.enc_w_acc, self.enc_b_acc = torch.mm(delta.t(), x_t), delta.clone()
        else:
            self.enc_w_acc.addmm_(delta.t(), x_t)
            self.enc_b_acc.add_(delta)

    def mix(self, index: int, z: Tensor, q: Tensor) -> Tensor:
        y = torch.addmm(self.read_b[index], q, self.read_wt[index])
        a = y if self._act is None else self._act(y)
        s = z + a
        if self.norms is None:
            self._ctx[index] = (q, y, a, None, None)
            return s
        gamma, beta, eps = self.norms[index]
        centred = s - s.mean(-1, keepdim=True)
        r = torch.rsqrt((centred * centred).mean(-1, keepdim=True) + eps)
        n_hat = centred * r
        self._ctx[index] = (q, y, a, n_hat, r)
        return torch.addcmul(beta, n_hat, gamma)

    def _act_backward(self, ds: Tensor, y: Tensor, a: Tensor) -> Tensor:
        if self.activation == "gelu":
            return torch.ops.aten.gelu_backward(ds, y)
        if self.activation == "tanh":
            return torch.ops.aten.tanh_backward(ds, a)
        if self.activation == "glu":
            return torch.ops.aten.glu_backward(ds, y, -1)
        return ds

    def mix_vjp(self, index: int, delta: Tensor) -> tuple[Tensor, Tensor]:
        q, y, a, n_hat, r = self._ctx.pop(index)
        if n_hat is None:
            ds = delta
        else:
            gamma = self.norms[index][0]
            if self.gamma_acc[index] is None:
                self.gamma_acc[index], self.beta_acc[index] = delta * n_hat, delta.clone()
            else:
                self.gamma_acc[index].addcmul_(delta, n_hat)
                self.beta_acc[index].add_(delta)
            dn = delta * gamma
            ds = dn - dn.mean(-1, keepdim=True)
            ds.sub_(n_hat * (dn * n_hat).mean(-1, keepdim=True)).mul_(r)
        dy = self._act_backward(ds, y, a)
        if self.read_w_acc[index] is None:
            self.read_w_acc[index], self.read_b_acc[index] = torch.mm(dy.t(), q), dy.clone()
        else:
            self.read_w_acc[index].addmm_(dy.t(), q)
            self.read_b_acc[index].add_(dy)
        return ds, torch.mm(dy, self.read_w[index])

    def decode_vjp(self, z: Tensor, delta: Tensor) -> Tensor:
        if self.dec_w_acc is None:
            self.dec_w_acc, self.dec_b_acc = torch.mm(delta.t(), z), delta.clone()
        else:
            self.dec_w_acc.addmm_(delta.t(), z)
            self.dec_b_acc.add_(delta)
        return torch.mm(delta, self.dec_w)

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        m = self.model
        out = []
        if self.enc_w_acc is not None:
            out += [(m.encoder.weight, self.enc_w_acc), (m.encoder.bias, self.enc_b_acc.sum(0))]
        if self.dec_w_acc is not None:
            out += [(m.decoder.weight, self.dec_w_acc), (m.decoder.bias, self.dec_b_acc.sum(0))]
        for i, readout in enumerate(m.readouts):
            if self.read_w_acc[i] is not None:
                out += [(readout.weight, self.read_w_acc[i]), (readout.bias, self.read_b_acc[i].sum(0))]
            if self.gamma_acc[i] is not None:
                out += [(m.norms[i].weight, self.gamma_acc[i].sum(0)), (m.norms[i].bias, self.beta_acc[i].sum(0))]
        return out
