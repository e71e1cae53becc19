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

A nonlinear step is then 7 operations (one matmul for the pre-activations of both copies and
their difference, one tanh, the stable difference tanh(δ)(1 − t₀t₁), one matmul for the force
on both p blocks, two drifts), a linear one 3.
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


def _reversed_inputs(x: Tensor, where: slice) -> Tensor:
    """A chunk's inputs, latest first, time-major [K, B, m]."""
    return x[:, where].flip(1).transpose(0, 1)


def _drift(q: Tensor, p: Tensor, step, out: Tensor | None = None) -> Tensor:
    """q + step·p, ``step`` a Python number or a tensor (a step per unit)."""
    if isinstance(step, float):
        return torch.add(q, p, alpha=step, out=out)
    return torch.addcmul(q, p, step, out=out)


def _number(t: Tensor):
    return float(t) if t.dim() == 0 else t


def _nonlinear(kernel, q: Tensor, p: Tensor, x: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Rows: [d; q_1; q_0] (q_0 = q_1 + d, so that one matmul gives all three pre-activations) —
    the buffer G of a step holds [tanh | q_h] side by side, [t_0 − t_1; t_1; t_0 | d; q_1; q_0], so
    that the force on both p blocks, dt κ² ⊙ q_h + t·dt W, is one matmul of G's first 2B rows by
    [dt W; diag(dt κ²)]."""
    batch, n, steps = kernel.batch, q.shape[-1], x.shape[1]
    B2, B3 = 2 * batch, 3 * batch
    dt, half = _number(kernel.dt), _number(0.5 * kernel.dt)
    wt = kernel.coupling_t.contiguous()
    force = torch.cat([kernel.dt * kernel.coupling, torch.diag_embed((kernel.dt * kernel.a).expand(n))])
    G = q.new_empty(size + 1, B3, 2 * n)
    H = q.new_empty(size, B3, n)            # [δ; h_1; h_0], δ = W d, h_c = W q_c + B u + b
    P = q.new_empty(size, B2, n)            # p after each kick
    drive = q.new_zeros(size, B3, n)        # [0; w; w], w = B u + b
    factor = q.new_empty(batch, n)
    ones = torch.ones_like(factor)
    # per-step views, made once (a view costs as much as a small operation)
    Gs, Hs, Ps, Ds = G.unbind(0), H.unbind(0), P.unbind(0), drive.unbind(0)
    tanh_all, q_all = G[:, :, :n].unbind(0), G[:, :, n:].unbind(0)
    q_two, lower = G[:, :B2, n:].unbind(0), G[:, :B2].unbind(0)
    d_v, q1_v, q0_v = G[:, :batch, n:].unbind(0), G[:, batch:B2, n:].unbind(0), G[:, B2:, n:].unbind(0)
    diff_v, t1_v, t0_v = G[:, :batch, :n].unbind(0), G[:, batch:B2, :n].unbind(0), G[:, B2:, :n].unbind(0)
    if kernel.train_dt:
        kernel._square_contrast(kernel.p2, p, 0.5)
    _drift(q, p, half, out=q_two[0])
    torch.add(q1_v[0], d_v[0], out=q0_v[0])
    addmm, tanh, addcmul, add = torch.addmm, torch.tanh, torch.addcmul, torch.add
    for start, count, where, last in _chunks(steps, size):
        u = _reversed_inputs(x, where)
        w = torch.matmul(u, kernel.weight_t).add_(kernel.bias)
        drive[:count, batch:B2] = w
        drive[:count, B2:] = w
        for k in range(count):
            addmm(Ds[k], q_all[k], wt, out=Hs[k])
            tanh(Hs[k], out=tanh_all[k])
            addcmul(ones, t0_v[k], t1_v[k], value=-1.0, out=factor)
            diff_v[k].mul_(factor)                        # t_0 − t_1 = tanh(δ)(1 − t_0 t_1)
            p = addmm(p, lower[k], force, alpha=-1.0, out=Ps[k])
            _drift(q_two[k], p, dt, out=q_two[k + 1])
            add(q1_v[k + 1], d_v[k + 1], out=q0_v[k + 1])
        _contrast_nonlinear(kernel, G, H, P, u, count, last, n)
        p = p.clone()
        if not last:
            G[0] = G[count]
    return _drift(G[count - 1, :B2, n:], p, half), p


def _contrast_nonlinear(kernel, G, H, P, u, count: int, last: bool, n: int) -> None:
    """One chunk's share of the contrast, summed over its K·B rows at once."""
    batch = kernel.batch
    d, q1 = G[:count, :batch, n:], G[:count, batch:2 * batch, n:]
    diff, t1, t0 = G[:count, :batch, :n], G[:count, batch:2 * batch, :n], G[:count, 2 * batch:, :n]
    kernel.q2.add_((d * torch.add(d, q1, alpha=2.0)).sum(0))
    flat_diff, flat_d = diff.reshape(-1, n), d.reshape(-1, n)
    kernel.t_q.addmm_(flat_diff.t(), q1.reshape(-1, n)).addmm_(t0.reshape(-1, n).t(), flat_d)
    kernel.dt_sum.add_(diff.sum(0))
    kernel.dt_u.addmm_(flat_diff.t(), u.reshape(-1, u.shape[-1]))
    if kernel.train_dt:
        from .hru import _log_cosh_difference

        kernel.log_cosh.add_(_log_cosh_difference(H[:count, batch:2 * batch], H[:count, :batch], t1).sum(0))
        if P is not None:
            _momentum_contrast(kernel, P, count, last)


def _momentum_contrast(kernel, P, count: int, last: bool, weight: float = 1.0) -> None:
    """weight·Σ (p_0² − p_1²) over the drifts. Merged drifts (weight 1): each p is read by two half
    drifts (½ + ½), the last one by one; otherwise each buffer of p is read by one (weight ½)."""
    batch = kernel.batch
    dp, p1 = P[:count, :batch], P[:count, batch:2 * batch]
    contrast = dp * torch.add(dp, p1, alpha=2.0)
    kernel.p2.add_(contrast.sum(0), alpha=weight)
    if last and weight == 1.0:
        kernel.p2.sub_(contrast[count - 1], alpha=0.5)


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
    addcmul = torch.addcmul
    for start, count, where, last in _chunks(steps, size):
        u = _reversed_inputs(x, where)
        w = torch.matmul(u, kernel.weight_t).add_(kernel.bias)
        drive[:count, batch:] = w * dt
        for k in range(count):
            p = addcmul(p, Qs[k], dta, value=-1.0, out=Ps[k]).add_(Ds[k])
            addcmul(Qs[k], p, dt, out=Qs[k + 1])
        d, q1 = Q[:count, :batch], Q[:count, batch:]
        kernel.q2.add_((d * torch.add(d, q1, alpha=2.0)).sum(0))
        if kernel.train_dt:
            kernel.qw.add_((d * w).sum(0))
            _momentum_contrast(kernel, P, count, last)
        kernel.dq.add_(d.sum(0))
        kernel.dq_u.addmm_(d.reshape(-1, n).t(), u.reshape(-1, u.shape[-1]))
        p = p.clone()
        if not last:
            Q[0] = Q[count]
    return torch.addcmul(Q[count - 1], p, half), p


# -- a loss at every step: a nudge before every step, so the half drifts are not merged ---------------
def _nonlinear_nudged(kernel, q: Tensor, p: Tensor, x: Tensor, size: int, nudges: Nudges,
                      on_chunk: OnChunk | None) -> tuple[Tensor, Tensor]:
    """As :func:`_nonlinear`, with p ← p + nudge, a half drift, the kick and a half drift per step;
    ``start`` holds the positions at integer times (row k: the start of step k of the chunk)."""
    batch, n, steps = kernel.batch, q.shape[-1], x.shape[1]
    B2, B3 = 2 * batch, 3 * batch
    half = _number(0.5 * kernel.dt)
    wt = kernel.coupling_t.contiguous()
    force = torch.cat([kernel.dt * kernel.coupling, torch.diag_embed((kernel.dt * kernel.a).expand(n))])
    G = q.new_empty(size, B3, 2 * n)
    H = q.new_empty(size, B3, n)
    P = q.new_empty(size, B2, n)             # p after each kick
    nudged = q.new_empty(size, B2, n)        # p after each nudge
    start = q.new_empty(size + 1, B2, n)     # q at the start of each step
    drive = q.new_zeros(size, B3, n)
    factor = q.new_empty(batch, n)
    ones = torch.ones_like(factor)
    Hs, Ps, Ns, Ds, S = H.unbind(0), P.unbind(0), nudged.unbind(0), drive.unbind(0), start.unbind(0)
    tanh_all, q_all = G[:, :, :n].unbind(0), G[:, :, n:].unbind(0)
    q_two, lower = G[:, :B2, n:].unbind(0), G[:, :B2].unbind(0)
    d_v, q1_v, q0_v = G[:, :batch, n:].unbind(0), G[:, batch:B2, n:].unbind(0), G[:, B2:, n:].unbind(0)
    diff_v, t1_v, t0_v = G[:, :batch, :n].unbind(0), G[:, batch:B2, :n].unbind(0), G[:, B2:, :n].unbind(0)
    start[0] = q
    addmm, tanh, addcmul, add = torch.addmm, torch.tanh, torch.addcmul, torch.add
    for first, count, where, last in _chunks(steps, size):
        u = _reversed_inputs(x, where)
        w = torch.matmul(u, kernel.weight_t).add_(kernel.bias)
        drive[:count, batch:B2] = w
        drive[:count, B2:] = w
        increments = nudges(first, count).unbind(0)
        for k in range(count):
            p = add(p, increments[k], out=Ns[k])
            _drift(S[k], p, half, out=q_two[k])
            add(q1_v[k], d_v[k], out=q0_v[k])
            addmm(Ds[k], q_all[k], wt, out=Hs[k])
            tanh(Hs[k], out=tanh_all[k])
            addcmul(ones, t0_v[k], t1_v[k], value=-1.0, out=factor)
            diff_v[k].mul_(factor)
            p = addmm(p, lower[k], force, alpha=-1.0, out=Ps[k])
            _drift(q_two[k], p, half, out=S[k + 1])
        _contrast_nonlinear(kernel, G, H, None, u, count, last, n)
        if kernel.train_dt:
            _momentum_contrast(kernel, nudged, count, last, 0.5)
            _momentum_contrast(kernel, P, count, last, 0.5)
        if on_chunk is not None:
            on_chunk(first, count, start[:count])
        p = p.clone()
        start[0] = start[count]
    return start[0].clone(), p


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
    addcmul, add = torch.addcmul, torch.add
    for first, count, where, last in _chunks(steps, size):
        u = _reversed_inputs(x, where)
        w = torch.matmul(u, kernel.weight_t).add_(kernel.bias)
        drive[:count, batch:] = w * dt
        increments = nudges(first, count).unbind(0)
        for k in range(count):
            p = add(p, increments[k], out=Ns[k])
            addcmul(S[k], p, half, out=Qs[k])
            p = addcmul(p, Qs[k], dta, value=-1.0, out=Ps[k]).add_(Ds[k])
            addcmul(Qs[k], p, half, out=S[k + 1])
        d, q1 = Q[:count, :batch], Q[:count, batch:]
        kernel.q2.add_((d * torch.add(d, q1, alpha=2.0)).sum(0))
        if kernel.train_dt:
            kernel.qw.add_((d * w).sum(0))
            _momentum_contrast(kernel, nudged, count, last, 0.5)
            _momentum_contrast(kernel, P, count, last, 0.5)
        kernel.dq.add_(d.sum(0))
        kernel.dq_u.addmm_(d.reshape(-1, n).t(), u.reshape(-1, u.shape[-1]))
        if on_chunk is not None:
            on_chunk(first, count, start[:count])
        p = p.clone()
        start[0] = start[count]
    return start[0].clone(), p
