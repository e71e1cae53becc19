"""The fast path of sequence simulation: fused closed-form position-Verlet steps of the built-in HRUs.

The reference path steps any Hamiltonian model through ``Integrator.step`` (the model's
``kinetic_grad`` / ``potential_grad``, new tensors at every sub-step). For
:class:`eqprop.models.LinearHRU` and :class:`eqprop.models.NonlinearHRU` with their own physics and
``PositionVerlet`` the step is written out in place instead, with the constants (dt/2, dt·κ², dt·W)
computed once per run:

    q ← q + (dt/2) p;   p ← p − dt κ² ⊙ q + dt w_k  (linear)  or  p ← p − dt κ² ⊙ q − tanh(W q + w_k) (dt W)
    q ← q + (dt/2) p,   w_k = B u_k + b

:func:`fused_step` returns that step for one layer (``None`` when the layer or the integrator is
not one of these), :func:`hru_forward` runs a single HRU over a whole sequence with the drive
w_k precomputed for ``chunk`` steps at a time by one matrix product and the read-out applied
to a chunk of states at once (memory O(chunk), not O(T)). Both run under ``torch.no_grad`` on any
device. Check: tests/test_rhel_fast.py — equal to the reference path to round-off.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import ConfigurationError
from ..models.hru import LinearHRU, NonlinearHRU, _physics_is_builtin
from ..models.hssm import HSSM
from .integrators import PositionVerlet

__all__ = ["fused_step", "hru_forward", "stack_forward", "stack_kinds", "hru_kind", "DEFAULT_CHUNK", "check_chunk"]

DEFAULT_CHUNK = 256

Step = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def check_chunk(chunk) -> int:
    """A chunk is a whole number of steps ≥ 1."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigurationError(f"The chunk size must be an integer >= 1 (steps per chunk), got {chunk!r}.")
    return chunk


def hru_kind(layer, integrator) -> str | None:
    """"linear" / "nonlinear" for a built-in HRU (physics not rewritten) under exactly PositionVerlet, else None."""
    if type(integrator) is not PositionVerlet:
        return None
    for cls, name in ((NonlinearHRU, "nonlinear"), (LinearHRU, "linear")):
        if isinstance(layer, cls):
            return name if _physics_is_builtin(layer, cls) else None
    return None


class _Constants:
    """dt/2, dt κ², B, b and (nonlinear) Wᵀ, dt W of one layer, detached, computed once per run."""

    def __init__(self, layer, dt: Tensor, kind: str) -> None:
        with torch.no_grad():
            d = dt.detach()
            self.kind = kind
            self.half = 0.5 * d
            self.dta = d * layer.frequency.detach() ** 2
            self.weight_t = layer.input_weight.detach().t()
            self.bias = layer.input_bias.detach()
            self.dt = d
            if kind == "nonlinear":
                self.coupling_t = layer.coupling.detach().t().contiguous()
                self.coupling_dt = d * layer.coupling.detach()
                n = layer.coupling.shape[0]
                self.force = torch.cat([self.coupling_dt, torch.diag_embed(self.dta.expand(n))])  # [dt W; diag(dt κ²)]
            # a scalar step as a Python number (one read per run): add with alpha beats a broadcast multiply
            self.half_number = float(self.half) if d.dim() == 0 else None
            self.dt_number = float(d) if d.dim() == 0 else None

    def drive(self, u: Tensor) -> Tensor:
        """w = B u + b for u [..., m] (any leading axes), times dt for the linear HRU."""
        w = torch.matmul(u, self.weight_t).add_(self.bias)
        return w.mul_(self.dt) if self.kind == "linear" else w

    def step_from_drive(self, q: Tensor, p: Tensor, w: Tensor) -> Tensor:
        """One position-Verlet step on (q, p) in place, w the (linear: dt-scaled) drive of the step."""
        _half_drift(self, q, p, out=q)
        _kick(self, p, q, w)
        return _half_drift(self, q, p, out=q)


def fused_step(layer, integrator, dt: Tensor) -> Step | None:
    """The fused in-place step (q, p, u) → (q, p) of a built-in HRU under PositionVerlet, or None."""
    kind = hru_kind(layer, integrator)
    if kind is None:
        return None
    constants = _Constants(layer, dt, kind)

    def step(q: Tensor, p: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        constants.step_from_drive(q, p, constants.drive(u))
        return q, p

    return step


def hru_forward(model, x: Tensor, integrator, keep_outputs: bool, chunk: int = DEFAULT_CHUNK
                ) -> tuple[list[tuple[Tensor, Tensor]], Tensor] | None:
    """A single built-in HRU over x [batch, T, m]: (final (q, p), outputs), or None when unsupported.

    The outputs are [batch, T, ...] with ``keep_outputs``, else the last one; the drive and the
    read-out are computed ``chunk`` steps at a time. Successive half drifts are merged: the
    state carried is the half-step position q_{k+1/2} = q_{k−1/2} + dt p_k, and the position after
    step k, q_{k+1} = q_{k+1/2} + (dt/2) p_{k+1}, is the midpoint of q_{k+1/2} and q_{k+3/2}, read
    off a chunk's buffer at once. A nonlinear step is then 4 operations, a linear one 3.
    """
    kind = hru_kind(model, integrator)
    if kind is None or model.hamiltonian_layers() != [model] or getattr(model, "pooling", "last") != "last":
        return None
    chunk = check_chunk(chunk)
    with torch.no_grad():
        steps = x.shape[1]
        layer = _Layer(model, integrator, kind, model.init_states(x)[0], min(chunk, steps), keep_outputs)
        pieces = []
        for start, count, final in _chunks(steps, layer.size):
            positions = layer.advance(x[:, start:start + count].transpose(0, 1), final)
            if keep_outputs:
                pieces.append(model.output(positions).transpose(0, 1))
        outputs = torch.cat(pieces, dim=1) if keep_outputs else model.output(layer.q)
    return [(layer.q, layer.p)], outputs


def stack_forward(model, x: Tensor, integrator, keep_outputs: bool, chunk: int = DEFAULT_CHUNK
                  ) -> tuple[list[tuple[Tensor, Tensor]], Tensor] | None:
    """An :class:`~eqprop.models.HSSM` of built-in HRUs, layer after layer within each chunk of
    steps: layer i runs over the chunk (fused merged steps), then its feedforward map (read-out,
    activation, residual, norm — row-wise maps) and the decoder are applied to all the chunk's
    steps at once. Returns (final (q, p) per layer, outputs) as :func:`hru_forward`, or None when
    the model is not such a stack (a user's encode / mix / decode may not be row-wise)."""
    kinds = stack_kinds(model, integrator)
    if kinds is None:
        return None
    layers = model.hamiltonian_layers()
    chunk = check_chunk(chunk)
    mean = model.pooling == "mean"
    with torch.no_grad():
        steps = x.shape[1]
        size = min(chunk, steps)
        runs = [_Layer(layer, integrator, kind, state, size, True)
                for layer, kind, state in zip(layers, kinds, model.init_states(x))]
        pieces, total, last = [], None, None
        for start, count, final in _chunks(steps, size):
            z = model.encode(x[:, start:start + count].transpose(0, 1))  # [K, batch, H]
            for index, run in enumerate(runs):
                z = model.mix(index, z, run.advance(z, final))
            if mean:  # o_k = (Σ_{i ≤ k} Dec(z_i)) / (k + 1)
                running = model.decode(z).cumsum(0)
                if total is not None:
                    running += total
                total = running[-1]
                if keep_outputs:
                    counts = torch.arange(start + 1, start + count + 1, dtype=running.dtype, device=running.device)
                    pieces.append((running / counts.view(-1, *([1] * (running.dim() - 1)))).transpose(0, 1))
            elif keep_outputs:
                pieces.append(model.decode(z).transpose(0, 1))
            else:
                last = z[-1]
        if keep_outputs:
            outputs = torch.cat(pieces, dim=1)
        else:
            outputs = total / steps if mean else model.decode(last)
    return [(run.q, run.p) for run in runs], outputs


def stack_kinds(model, integrator) -> list[str] | None:
    """The kind ("linear" / "nonlinear") of every layer of an :class:`~eqprop.models.HSSM` whose maps
    are its own (row-wise) and whose layers are all built-in HRUs under exactly PositionVerlet — the
    stacks the layer-major fast paths take — else None."""
    if not isinstance(model, HSSM) or any(getattr(type(model), n) is not getattr(HSSM, n)
                                          for n in ("encode", "mix", "decode", "hamiltonian_layers")):
        return None
    kinds = [hru_kind(layer, integrator) for layer in model.hamiltonian_layers()]
    return None if any(kind is None for kind in kinds) else kinds


def _chunks(steps: int, size: int):
    """(start, count, is the last chunk) of each chunk of ``size`` steps."""
    for start in range(0, steps, size):
        count = min(size, steps - start)
        yield start, count, start + count == steps


class _Layer:
    """One HRU layer run chunk after chunk in merged steps: ``advance(u, final)`` consumes a
    chunk's inputs u [K, batch, m] (time-major) and returns its positions q_1..q_K [K, batch, n]
    (``keep``; else None), leaving the final (q, p) in ``q``, ``p`` after the last chunk."""

    def __init__(self, layer, integrator, kind: str, state: tuple[Tensor, Tensor], size: int, keep: bool) -> None:
        self.c = _Constants(layer, integrator.step_size(layer), kind)
        q, p = state
        self.p = p.clone()
        self.q = None
        self.size, self.keep = size, keep
        self.run = _Chunk(self.c, q, size, keep)
        _half_drift(self.c, q, self.p, out=self.run.positions[0])

    def advance(self, u: Tensor, final: bool) -> Tensor | None:
        c, run, p = self.c, self.run, self.p
        count = u.shape[0]
        drive = run.load(u)
        merged = count - 1 if final else count  # the last step of all ends with a half drift
        run(p, merged)
        buffer = run.positions
        if final:  # q_T = q_{T−1/2} + (dt/2) p_T
            last = buffer[merged] if self.keep else buffer[0]
            _kick(c, p, last, drive[merged])
            self.q = _half_drift(c, last, p, out=torch.empty_like(last))
        if not self.keep:
            return None
        positions = torch.add(buffer[:merged], buffer[1:merged + 1]).mul_(0.5)
        if final:
            positions = torch.cat([positions, self.q.unsqueeze(0)])
        buffer[0] = buffer[count]
        return positions


def _half_drift(c: _Constants, q: Tensor, p: Tensor, out: Tensor) -> Tensor:
    """out = q + (dt/2) p."""
    if c.half_number is not None:
        return torch.add(q, p, alpha=c.half_number, out=out)
    return torch.addcmul(q, p, c.half, out=out)


def _kick(c: _Constants, p: Tensor, qh: Tensor, w: Tensor) -> None:
    """p ← p − dt ∂_qV(q_h, u) in place."""
    p.addcmul_(qh, c.dta, value=-1.0)
    if c.kind == "nonlinear":
        p.addmm_(torch.addmm(w, qh, c.coupling_t).tanh_(), c.coupling_dt, alpha=-1.0)
    else:
        p.add_(w)


class _Chunk:
    """The buffers of a chunk of merged steps and their per-step views, made once per run (at width
    32 making a view costs as much as a small operation). ``positions[k]`` holds q_{k+1/2} (row K:
    the next chunk's first) — only row 0, updated in place, without ``keep``; nonlinear:
    ``[tanh h | q_{k+1/2}]`` side by side, so that the force dt κ² ⊙ q + tanh(h)·dt W is one matmul
    by [dt W; diag(dt κ²)]."""

    def __init__(self, c: _Constants, q: Tensor, size: int, keep: bool) -> None:
        self.c, self.keep = c, keep
        n = q.shape[-1]
        rows = size + 1 if keep else 1
        self.wide = q.new_zeros(rows, *q.shape[:-1], 2 * n) if c.kind == "nonlinear" else None
        self.positions = self.wide[..., n:] if self.wide is not None else q.new_empty(rows, *q.shape)
        self.drive = q.new_empty(size, *q.shape)
        self.drives = self.drive.unbind(0)
        self.rows = self.positions.unbind(0)
        if self.wide is not None:
            self.tanh_rows, self.wide_rows = self.wide[..., :n].unbind(0), self.wide.unbind(0)

    def load(self, u: Tensor) -> Tensor:
        """The drives of a chunk's inputs u [K, batch, m] (time-major), into the drive buffer."""
        out = self.drive[:u.shape[0]]
        torch.matmul(u, self.c.weight_t, out=out).add_(self.c.bias)
        return out.mul_(self.c.dt) if self.c.kind == "linear" else out

    def __call__(self, p: Tensor, count: int) -> None:
        """``count`` merged steps (kick, then a drift by dt), p in place. Written out with local
        names: at width 32 an operation costs a few µs of Python and dispatch, which is the step's
        whole cost (nonlinear: 4 operations, linear: 3)."""
        c, rows, drives = self.c, self.rows, self.drives
        scalar = c.dt_number is not None
        dt, dta = c.dt_number if scalar else c.dt, c.dta
        if c.kind == "nonlinear":
            wt, force, addmm = c.coupling_t, c.force, torch.addmm
            if not self.keep:
                qh, t, both = rows[0], self.tanh_rows[0], self.wide_rows[0]
                for k in range(count):
                    addmm(drives[k], qh, wt, out=t).tanh_()
                    p.addmm_(both, force, alpha=-1.0)
                    qh.add_(p, alpha=dt) if scalar else qh.addcmul_(p, dt)
                return
            tanh_rows, wide_rows = self.tanh_rows, self.wide_rows
            for k in range(count):
                addmm(drives[k], rows[k], wt, out=tanh_rows[k]).tanh_()
                p.addmm_(wide_rows[k], force, alpha=-1.0)
                torch.add(rows[k], p, alpha=dt, out=rows[k + 1]) if scalar else \
                    torch.addcmul(rows[k], p, dt, out=rows[k + 1])
            return
        if not self.keep:
            qh = rows[0]
            for k in range(count):
                p.addcmul_(qh, dta, value=-1.0).add_(drives[k])
                qh.addcmul_(p, c.dt)
            return
        for k in range(count):
            p.addcmul_(rows[k], dta, value=-1.0).add_(drives[k])
            torch.addcmul(rows[k], p, c.dt, out=rows[k + 1])
