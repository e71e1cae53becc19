"""Closed-form stack kernel of the HSSM's feedforward maps (eqprop.models.HSSM).

Check: tests/test_echo_kernels.py compares it with :class:`~.autograd.AutogradStackKernel`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional

__all__ = ["HSSMStackKernel"]


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
        # a mean over the features as a product with a constant column: ~3× cheaper than mean() on small rows
        width = model.hidden_size
        self._mean = self.dec_w.new_full((width, 1), 1.0 / width)
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
        centred = s - torch.mm(s, self._mean)
        r = torch.rsqrt(torch.mm(centred * centred, self._mean).add_(eps))
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
            ds = dn - torch.mm(dn, self._mean)
            ds.sub_(n_hat * torch.mm(dn * n_hat, self._mean)).mul_(r)
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
