"""One fused position-Verlet echo step at a time, for the layers of a stack (an HSSM).

In a stack the layers echo together: at every step the feedforward maps read each layer's
position and the nudge of a layer comes from the input gradient of the layer above, so the
echo runs step by step (the whole-sequence fusion of :mod:`.fused` applies to a single HRU only).
:class:`VerletEchoStepper` still removes most of a step's operations: the drift, kick and drift
of both copies and their difference written out (rows ``[d; q_1]``, and ``q_0 = q_1 + d`` for
one pre-activation matmul), every quantity the contrast needs written by ``out=`` into chunk
buffers, and the contrast summed once per ``chunk`` steps (:func:`.fused._contrast_nonlinear`
and the linear sums). A nonlinear step is 13 operations instead of ~31, a linear one 8 instead
of ~20. ``kernel.input_grad`` (the contrast of ∂_uS, which the stack chains downward) is set at
every step as :meth:`PositionVerlet.echo` through the kernel sets it.

Check: tests/test_rhel_fused.py — an HSSM's RHEL gradient through the stepper equals the one
through the step-by-step kernels to round-off (float64).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fused import _contrast_linear, _contrast_nonlinear, _momentum_contrast, _NonlinearRows, _number, _Scratch

__all__ = ["VerletEchoStepper"]


class VerletEchoStepper:
    """``step(q, p, u)`` = ``PositionVerlet().echo(kernel, q, p, u)`` for a LinearHRUKernel or
    NonlinearHRUKernel with two copies (difference layout); call :meth:`finish` after the last
    step. The returned states are views of the stepper's buffers, valid until ``chunk`` steps later:
    the caller must not modify them in place."""

    def __init__(self, kernel, n: int, input_size: int, like: Tensor, chunk: int) -> None:
        self.kernel, self.size, self.row = kernel, chunk, 0
        self.nonlinear = hasattr(kernel, "coupling")
        batch = kernel.batch
        self.batch, self.n = batch, n
        new = like.new_empty
        self.start = new(chunk, 2 * batch, n)        # q after each step (integer time)
        self.nudged = new(chunk, 2 * batch, n)       # p at the first drift of each step
        self.scratch = _Scratch(kernel, like, chunk, n, input_size)
        self.U = self.scratch.U                      # each step's input
        dt = kernel.dt
        if self.nonlinear:
            self.half = _number(0.5 * dt)
            self.input_force = dt * kernel.weight    # ∂_u(dt V) = (t_0 − t_1) dt B
            self.rows = rows = _NonlinearRows(kernel, like, chunk, n)
            self.G, self.H, self.P = rows.G, rows.H, rows.P
        else:
            self.dt, self.dta, self.half = dt, dt * kernel.a, 0.5 * dt
            self.Q = new(chunk, 2 * batch, n)        # q_h at each kick
            self.P = new(chunk, 2 * batch, n)        # p after each kick
            self.Qs, self.P_copies = self.Q.unbind(0), self.P[:, batch:].unbind(0)
            self.input_force = kernel.neg_weight_dt  # ∂_u(dt V) = −(d dt) B
        self.S, self.Ps, self.Ns, self.Us = (t.unbind(0) for t in (self.start, self.P, self.nudged, self.U))

    def step(self, q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        k, kernel = self.row, self.kernel
        if kernel.train_dt:
            self.Ns[k].copy_(p)
        self.Us[k].copy_(u)
        w = torch.addmm(kernel.bias, u, kernel.weight_t)
        if self.nonlinear:
            r, half = self.rows, self.half
            qh = torch.add(q, p, alpha=half, out=r.q_two[k]) if isinstance(half, float) else \
                torch.addcmul(q, p, half, out=r.q_two[k])
            torch.add(r.q1_v[k], r.d_v[k], out=r.q0_v[k])
            torch.mm(r.q_all[k], r.wt, out=r.Hs[k])
            r.H_copies[k].view(2, self.batch, -1).add_(w)
            torch.tanh(r.Hs[k], out=r.tanh_all[k])
            torch.addcmul(r.ones, r.t0_v[k], r.t1_v[k], value=-1.0, out=r.factor)
            diff = r.diff_v[k].mul_(r.factor)
            p = torch.addmm(p, r.lower[k], r.force, alpha=-1.0, out=r.Ps[k])
            kernel.input_grad = torch.mm(diff, self.input_force)
        else:
            qh = torch.addcmul(q, p, self.half, out=self.Qs[k])
            p = torch.addcmul(p, qh, self.dta, value=-1.0, out=self.Ps[k])
            self.P_copies[k].addcmul_(w, self.dt)  # the drive cancels in the difference rows
            kernel.input_grad = torch.mm(qh[:self.batch], self.input_force)
        q = torch.addcmul(qh, p, self.half, out=self.S[k]) if not isinstance(self.half, float) else \
            torch.add(qh, p, alpha=self.half, out=self.S[k])
        self.row += 1
        if self.row == self.size:
            self._flush()
            q, p = q.clone(), p.clone()  # the buffers are reused from here on
        return q, p

    def finish(self) -> None:
        """Add the contrast of the steps since the last full chunk."""
        if self.row:
            self._flush()

    def _flush(self) -> None:
        count, kernel, scratch = self.row, self.kernel, self.scratch
        u = self.U[:count]
        if self.nonlinear:
            _contrast_nonlinear(kernel, self.G, self.H, None, u, count, False, self.n, scratch)
        else:
            w = torch.matmul(u, kernel.weight_t, out=scratch.W[:count]).add_(kernel.bias) if kernel.train_dt else None
            _contrast_linear(kernel, self.Q, u, w, count, self.n, scratch)
        if kernel.train_dt:
            _momentum_contrast(kernel, self.nudged, count, False, 0.5, scratch)
            _momentum_contrast(kernel, self.P, count, False, 0.5, scratch)
        self.row = 0
