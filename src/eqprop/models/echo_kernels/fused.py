"""The whole echo of a single built-in HRU in fused, chunked position-Verlet steps.

:meth:`PositionVerlet.echo` steps an echo kernel one sub-step at a time and every sub-step adds
its share of the contrast to the kernel's accumulators at once: ~30 small tensor operations per
step, whose Python and dispatch cost (2–4 µs each) is the whole cost at the widths of sequence
models. :func:`fused_verlet_echo` runs the same echo (the difference layout of the closed-form
kernels: rows ``[0, B)`` hold copy 0 − copy 1, rows ``[B, 2B)`` copy 1) with

* successive half drifts merged: q_{j+1/2} = q_{j−1/2} + dt p_j (the drift of the end of step j
  and of the start of step j + 1 read the same p when no nudge falls between them);
* the inputs of ``chunk`` steps turned into drives by one matrix product (zero in the
  difference rows, where the drive cancels);
* every per-step quantity the contrast needs (q_h, p, the pre-activations, tanh) written by
  ``out=`` into preallocated chunk buffers, and the contrast summed once per chunk by a few
  large reductions and matrix products over the K·B rows of the chunk.

A nonlinear step is then 6 operations (rows [d; q_1; q_0] with their momenta: one matmul for the
pre-activations of both copies and of their difference, one tanh, the stable difference
tanh(δ)(1 − t₀t₁) in two, one matmul for the force on the three blocks, one drift), a linear one 3.
Memory is O(chunk), independent of the sequence length. The accumulators filled are the
kernel's own (``q2``, ``p2``, ``t_q``, …), so ``kernel.grads()`` reads them as after the step-by-step
echo. Input gradients (``kernel.input_grad``) are not formed: the caller uses this only for a
model whose input reaches the layer unchanged (no parameter before it).

Check: tests/test_rhel_fused.py — equal to the step-by-step echo to round-off (float64), and
float32 against float64.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .hru import _log_cosh_difference

__all__ = ["fused_verlet_echo"]

Nudges = Callable[[int, int], Tensor]
OnChunk = Callable[[int, int, Tensor], None]


def fused_verlet_echo(kernel, q: Tensor, p: Tensor, x: Tensor, chunk: int, nudges: Nudges | None = None,
                      on_chunk: OnChunk | None = None) -> tuple[Tensor, Tensor]:
    """Run the echo of ``kernel`` (LinearHRUKernel / NonlinearHRUKernel, two copies, difference
    layout) from (q, p) [2B, n] over x [B, T, m] replayed in reverse time, each step position
    Verlet with the kernel's dt. Returns the final (q, p).

    ``nudges(start, count)``, when given, returns the increments [count, 2B, n] added to p before
    echo steps start … start + count − 1 (a loss at every step; the drifts are then not merged),
    and ``on_chunk(start, count, q)`` receives the positions q [count, 2B, n] at the start of those
    steps once the chunk has run (where the feedforward maps are read)."""
    nonlinear = hasattr(kernel, "coupling")
    if nudges is None:
        run = _nonlinear if nonlinear else _linear
        with torch.no_grad():
            return run(kernel, q, p.clone(), x, min(chunk, x.shape[1]))
    run = _nonlinear_nudged if nonlinear else _linear_nudged
    with torch.no_grad():
        return run(kernel, q, p.clone(), x, min(chunk, x.shape[1]), nudges, on_chunk)


def _chunks(steps: int, size: int):
    """(start, count, inputs slice) of each chunk: echo step j replays u_{T−1−j}."""
    for start in range(0, steps, size):
        count = min(size, steps - start)
        yield start, count, slice(steps - start - count, steps - start), start + count == steps


class _Scratch:
    """Buffers for the chunk-level work, made once per echo: the chunk's inputs latest first (U) and
    their drive w = B u + b (W), and three work arrays for the contrast sums. Nothing of a chunk's
    size is allocated after this (a temporary per chunk let the allocator's heap grow with T)."""

    def __init__(self, kernel, like: Tensor, size: int, n: int, input_size: int) -> None:
        batch = kernel.batch
        self.kernel, self.size = kernel, size
        self.U = like.new_empty(size, batch, input_size)
        self.W = like.new_empty(size, batch, n)
        self.work = [like.new_empty(size, batch, n) for _ in range(3)]
        self.mask = torch.empty(size, batch, n, dtype=torch.bool, device=like.device)
        self._reverse: dict[int, Tensor] = {}

    def inputs(self, x: Tensor, where: slice, count: int) -> tuple[Tensor, Tensor]:
        """(u, w) of a chunk, [count, B, ·], time-major, latest first."""
        if count not in self._reverse:
            self._reverse[count] = torch.arange(count - 1, -1, -1, device=x.device)
        u = self.U[:count].index_copy_(0, self._reverse[count], x[:, where].transpose(0, 1))
        w = torch.matmul(u, self.kernel.weight_t, out=self.W[:count]).add_(self.kernel.bias)
        return u, w

    def contrast_square(self, accumulator: Tensor, a: Tensor, b: Tensor, count: int, alpha: float = 1.0) -> None:
        """accumulator += alpha Σ_k a (a + 2b) (= Σ (b + a)² − b², a the difference), in the work arrays."""
        first, second = self.work[0][:count], self.work[1][:count]
        first.copy_(a)
        torch.add(first, b, alpha=2.0, out=second).mul_(first)
        accumulator.add_(second.sum(0), alpha=alpha)


def _drift(q: Tensor, p: Tensor, step, out: Tensor | None = None) -> Tensor:
    """q + step·p, ``step`` a Python number or a tensor (a step per unit)."""
    if isinstance(step, float):
        return torch.add(q, p, alpha=step, out=out)
    return torch.addcmul(q, p, step, out=out)


def _number(t: Tensor):
    return float(t) if t.dim() == 0 else t


class _NonlinearRows:
    """The nonlinear echo's chunk buffers and their per-step views, made once per echo (a view costs
    as much as a small operation). Rows [d; q_1; q_0] (q_0 = q_1 + d, so that one matmul gives all
    three pre-activations); the buffer G of a step holds [tanh | q_h] side by side,
    [t_0 − t_1; t_1; t_0 | d; q_1; q_0], so that the force on both p blocks,
    dt κ² ⊙ q_h + t·dt W, is one matmul of G's first 2B rows by ``force`` = [dt W; diag(dt κ²)].
    H holds the pre-activations [δ; h_1; h_0] (δ = W d, h_c = W q_c + B u + b), P the momenta after
    each kick, ``drive`` the drives [0; w; w].

    ``third_copy``: the momenta carry copy 0 too, [d_p; p_1; p_0], and the force acts on all three
    blocks with one matmul of all of G's rows, so that one drift advances [d; q_1; q_0] together (no
    q_0 = q_1 + d per step). Copy 0 then follows its own dynamics and drifts from q_1 + d by
    round-off; it enters only through t_0 (in 1 − t_0 t_1 and t_0ᵀd, relative precision), while the
    contrast keeps reading the difference d, δ = W d and tanh δ."""

    def __init__(self, kernel, like: Tensor, size: int, n: int, carry: bool = False, third_copy: bool = False) -> None:
        batch = kernel.batch
        B2, B3 = 2 * batch, 3 * batch
        self.batch = batch
        self.wt = kernel.coupling_t.contiguous()
        self.force = torch.cat([kernel.dt * kernel.coupling, torch.diag_embed((kernel.dt * kernel.a).expand(n))])
        self.G = like.new_empty(size + 1 if carry else size, B3, 2 * n)  # carry: row K is the next chunk's first
        self.H = like.new_empty(size, B3, n)
        self.P = like.new_empty(size, B3 if third_copy else B2, n)
        self.drive = like.new_zeros(size, B3, n)
        self.factor = like.new_empty(batch, n)
        self.ones = torch.ones_like(self.factor)
        G, H = self.G, self.H
        self.Hs, self.Ps, self.Ds, self.H_copies = H.unbind(0), self.P.unbind(0), self.drive.unbind(0), H[:, batch:].unbind(0)
        self.tanh_all, self.q_all = G[:, :, :n].unbind(0), G[:, :, n:].unbind(0)
        self.q_two, self.lower = G[:, :B2, n:].unbind(0), (G if third_copy else G[:, :B2]).unbind(0)
        blocks = ((0, batch), (batch, B2), (B2, B3))
        self.d_v, self.q1_v, self.q0_v = (G[:, a:b, n:].unbind(0) for a, b in blocks)
        self.diff_v, self.t1_v, self.t0_v = (G[:, a:b, :n].unbind(0) for a, b in blocks)

    def load(self, w: Tensor, count: int) -> None:
        """The drives of a chunk: w into both copy blocks (the difference rows keep 0)."""
        self.drive[:count, self.batch:2 * self.batch] = w
        self.drive[:count, 2 * self.batch:] = w


def _nonlinear(kernel, q: Tensor, p: Tensor, x: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Merged drifts, no nudge inside the sequence, the momenta of all three row blocks carried
    (:class:`_NonlinearRows` with ``third_copy``): 6 operations per step."""
    batch, n, steps = kernel.batch, q.shape[-1], x.shape[1]
    B2 = 2 * batch
    dt, half = _number(kernel.dt), _number(0.5 * kernel.dt)
    r = _NonlinearRows(kernel, q, size, n, carry=True, third_copy=True)
    G, H, P, wt, force, factor, ones = r.G, r.H, r.P, r.wt, r.force, r.factor, r.ones
    Hs, Ps, Ds, tanh_all, q_all, lower = r.Hs, r.Ps, r.Ds, r.tanh_all, r.q_all, r.lower
    t1_v, t0_v, diff_v = r.t1_v, r.t0_v, r.diff_v
    if kernel.train_dt:
        kernel._square_contrast(kernel.p2, p, 0.5)
    p = _with_copy0(p, batch)
    _drift(_with_copy0(q, batch), p, half, out=q_all[0])
    scratch = _Scratch(kernel, q, size, n, x.shape[-1])
    addmm, tanh, addcmul = torch.addmm, torch.tanh, torch.addcmul
    for start, count, where, last in _chunks(steps, size):
        u, w = scratch.inputs(x, where, count)
        r.load(w, count)
        for k in range(count):
            addmm(Ds[k], q_all[k], wt, out=Hs[k])
            tanh(Hs[k], out=tanh_all[k])
            addcmul(ones, t0_v[k], t1_v[k], value=-1.0, out=factor)
            diff_v[k].mul_(factor)                        # t_0 − t_1 = tanh(δ)(1 − t_0 t_1)
            p = addmm(p, lower[k], force, alpha=-1.0, out=Ps[k])
            _drift(q_all[k], p, dt, out=q_all[k + 1])
        _contrast_nonlinear(kernel, G, H, P, u, count, last, n, scratch)
        p = p.clone()
        if not last:
            G[0] = G[count]
    p = p[:B2].clone()
    return _drift(G[count - 1, :B2, n:], p, half), p


def _with_copy0(t: Tensor, batch: int) -> Tensor:
    """[d; x_1] → [d; x_1; x_1 + d] (copy 0 as a block of its own)."""
    return torch.cat([t, t[batch:2 * batch] + t[:batch]])


def _contrast_nonlinear(kernel, G, H, P, u, count: int, last: bool, n: int, scratch: _Scratch) -> None:
    """One chunk's share of the contrast, summed over its K·B rows at once, in the scratch arrays."""
    batch = kernel.batch
    d, q1 = G[:count, :batch, n:], G[:count, batch:2 * batch, n:]
    diff, t1, t0 = G[:count, :batch, :n], G[:count, batch:2 * batch, :n], G[:count, 2 * batch:, :n]
    scratch.contrast_square(kernel.q2, d, q1, count)  # leaves a copy of d in work[0]
    flat_d, flat_q1, flat = (w[:count].view(-1, n) for w in scratch.work)
    flat_q1.view(count, batch, n).copy_(q1)
    flat.view(count, batch, n).copy_(diff)
    kernel.t_q.addmm_(flat.t(), flat_q1)
    kernel.dt_sum.add_(flat.view(count, batch, n).sum(0))
    kernel.dt_u.addmm_(flat.t(), u.reshape(-1, u.shape[-1]))
    flat.view(count, batch, n).copy_(t0)
    kernel.t_q.addmm_(flat.t(), flat_d)
    if kernel.train_dt:
        _log_cosh_contrast(kernel, H[:count, batch:2 * batch], H[:count, :batch], t1, count, scratch)
        if P is not None:
            _momentum_contrast(kernel, P, count, last, scratch=scratch)


def _log_cosh_contrast(kernel, h1: Tensor, delta: Tensor, t1: Tensor, count: int, scratch: _Scratch) -> None:
    """log_cosh += Σ [log cosh(h_1 + δ) − log cosh h_1] over the chunk, in the work arrays."""
    difference = _log_cosh_difference(h1, delta, t1, [w[:count] for w in scratch.work], scratch.mask[:count])
    kernel.log_cosh.add_(difference.sum(0))


def _momentum_contrast(kernel, P, count: int, last: bool, weight: float = 1.0, scratch: _Scratch | None = None) -> None:
    """weight·Σ (p_0² − p_1²) over the drifts. Merged drifts (weight 1): each p is read by two half
    drifts (½ + ½), the last one by one; otherwise each buffer of p is read by one (weight ½)."""
    batch = kernel.batch
    dp, p1 = P[:count, :batch], P[:count, batch:2 * batch]
    scratch.contrast_square(kernel.p2, dp, p1, count, alpha=weight)
    if last and weight == 1.0:
        kernel.p2.sub_(scratch.work[1][count - 1], alpha=0.5)  # the last step's term, still in the work array


def _contrast_linear(kernel, Q, u: Tensor, w: Tensor, count: int, n: int, scratch: _Scratch) -> None:
    """One chunk's share of the linear HRU's contrast (q², q ⊙ w, q, qᵀu sums), in the scratch arrays."""
    batch = kernel.batch
    scratch.contrast_square(kernel.q2, Q[:count, :batch], Q[:count, batch:2 * batch], count)
    d = scratch.work[0][:count]  # the copy of the difference rows contrast_square left
    if kernel.train_dt:
        kernel.qw.add_(torch.mul(d, w, out=scratch.work[1][:count]).sum(0))
    kernel.dq.add_(d.sum(0))
    kernel.dq_u.addmm_(d.view(-1, n).t(), u.reshape(-1, u.shape[-1]))


def _linear(kernel, q: Tensor, p: Tensor, x: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Rows [d; q_1]; the drive (times dt) is zero in the difference rows, where it cancels."""
    batch, n, steps = kernel.batch, q.shape[-1], x.shape[1]
    dt, half = kernel.dt, 0.5 * kernel.dt
    dta = dt * kernel.a
    Q = q.new_empty(size + 1, 2 * batch, n)  # q_h at each kick (row K: the next chunk's first)
    P = q.new_empty(size, 2 * batch, n)
    drive = q.new_zeros(size, 2 * batch, n)
    Qs, Ps, Ds = Q.unbind(0), P.unbind(0), drive.unbind(0)
    if kernel.train_dt:
        kernel._square_contrast(kernel.p2, p, 0.5)
    torch.addcmul(q, p, half, out=Q[0])
    scratch = _Scratch(kernel, q, size, n, x.shape[-1])
    addcmul = torch.addcmul
    for start, count, where, last in _chunks(steps, size):
        u, w = scratch.inputs(x, where, count)
        drive[:count, batch:].copy_(w).mul_(dt)
        for k in range(count):
            p = addcmul(p, Qs[k], dta, value=-1.0, out=Ps[k]).add_(Ds[k])
            addcmul(Qs[k], p, dt, out=Qs[k + 1])
        _contrast_linear(kernel, Q, u, w, count, n, scratch)
        if kernel.train_dt:
            _momentum_contrast(kernel, P, count, last, scratch=scratch)
        p = p.clone()
        if not last:
            Q[0] = Q[count]
    return torch.addcmul(Q[count - 1], p, half), p


# -- a loss at every step: a nudge before every step, so the half drifts are not merged ---------------
def _nonlinear_nudged(kernel, q: Tensor, p: Tensor, x: Tensor, size: int, nudges: Nudges,
                      on_chunk: OnChunk | None) -> tuple[Tensor, Tensor]:
    """As :func:`_nonlinear`, with p ← p + nudge, a half drift, the kick and a half drift per step
    (8 operations); ``start`` holds the positions [d; q_1; q_0] at integer times (row k: the start
    of step k of the chunk), the nudges of copy 0 are those of the difference plus those of copy 1."""
    batch, n, steps = kernel.batch, q.shape[-1], x.shape[1]
    B2, B3 = 2 * batch, 3 * batch
    half = _number(0.5 * kernel.dt)
    r = _NonlinearRows(kernel, q, size, n, third_copy=True)
    G, H, P, wt, force, factor, ones = r.G, r.H, r.P, r.wt, r.force, r.factor, r.ones
    Hs, Ps, Ds, tanh_all, q_all, lower = r.Hs, r.Ps, r.Ds, r.tanh_all, r.q_all, r.lower
    t1_v, t0_v, diff_v = r.t1_v, r.t0_v, r.diff_v
    nudged = q.new_empty(size, B3, n)        # p after each nudge
    start = q.new_empty(size + 1, B3, n)     # q at the start of each step
    increments = q.new_empty(size, B3, n)
    Ns, S, Is = nudged.unbind(0), start.unbind(0), increments.unbind(0)
    start[0] = _with_copy0(q, batch)
    p = _with_copy0(p, batch)
    scratch = _Scratch(kernel, q, size, n, x.shape[-1])
    addmm, tanh, addcmul, add = torch.addmm, torch.tanh, torch.addcmul, torch.add
    for first, count, where, last in _chunks(steps, size):
        u, w = scratch.inputs(x, where, count)
        r.load(w, count)
        given = nudges(first, count)                        # [count, 2B, n]: difference, copy 1
        increments[:count, :B2] = given
        torch.add(given[:, :batch], given[:, batch:], out=increments[:count, B2:])
        for k in range(count):
            p = add(p, Is[k], out=Ns[k])
            _drift(S[k], p, half, out=q_all[k])
            addmm(Ds[k], q_all[k], wt, out=Hs[k])
            tanh(Hs[k], out=tanh_all[k])
            addcmul(ones, t0_v[k], t1_v[k], value=-1.0, out=factor)
            diff_v[k].mul_(factor)
            p = addmm(p, lower[k], force, alpha=-1.0, out=Ps[k])
            _drift(q_all[k], p, half, out=S[k + 1])
        _contrast_nonlinear(kernel, G, H, None, u, count, last, n, scratch)
        _end_of_nudged_chunk(kernel, nudged, P, start, first, count, last, scratch, on_chunk)
        p = p.clone()
    return start[0, :B2].clone(), p[:B2].clone()


def _end_of_nudged_chunk(kernel, nudged: Tensor, P: Tensor, start: Tensor, first: int, count: int, last: bool,
                         scratch: _Scratch, on_chunk: OnChunk | None) -> None:
    """The momentum contrast of a chunk (each p read by one half drift), the positions handed to
    ``on_chunk``, and the chunk's last position moved to row 0 for the next chunk."""
    if kernel.train_dt:
        _momentum_contrast(kernel, nudged, count, last, 0.5, scratch)
        _momentum_contrast(kernel, P, count, last, 0.5, scratch)
    if on_chunk is not None:
        on_chunk(first, count, start[:count, :2 * kernel.batch])  # [d; q_1] (not copy 0's own block)
    start[0] = start[count]


def _linear_nudged(kernel, q: Tensor, p: Tensor, x: Tensor, size: int, nudges: Nudges,
                   on_chunk: OnChunk | None) -> tuple[Tensor, Tensor]:
    """As :func:`_linear` with a nudge before every step (4 operations per step)."""
    batch, n, steps = kernel.batch, q.shape[-1], x.shape[1]
    dt, half = kernel.dt, 0.5 * kernel.dt
    dta = dt * kernel.a
    Q = q.new_empty(size, 2 * batch, n)      # q_h at each kick
    P = q.new_empty(size, 2 * batch, n)
    nudged = q.new_empty(size, 2 * batch, n)
    start = q.new_empty(size + 1, 2 * batch, n)
    drive = q.new_zeros(size, 2 * batch, n)
    Qs, Ps, Ns, Ds, S = Q.unbind(0), P.unbind(0), nudged.unbind(0), drive.unbind(0), start.unbind(0)
    start[0] = q
    scratch = _Scratch(kernel, q, size, n, x.shape[-1])
    addcmul, add = torch.addcmul, torch.add
    for first, count, where, last in _chunks(steps, size):
        u, w = scratch.inputs(x, where, count)
        drive[:count, batch:].copy_(w).mul_(dt)
        increments = nudges(first, count).unbind(0)
        for k in range(count):
            p = add(p, increments[k], out=Ns[k])
            addcmul(S[k], p, half, out=Qs[k])
            p = addcmul(p, Qs[k], dta, value=-1.0, out=Ps[k]).add_(Ds[k])
            addcmul(Qs[k], p, half, out=S[k + 1])
        _contrast_linear(kernel, Q, u, w, count, n, scratch)
        _end_of_nudged_chunk(kernel, nudged, P, start, first, count, last, scratch, on_chunk)
        p = p.clone()
    return start[0].clone(), p
