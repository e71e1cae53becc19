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
from .integrators import PositionVerlet

__all__ = ["fused_step", "hru_forward", "DEFAULT_CHUNK", "check_chunk"]

DEFAULT_CHUNK = 256

Step = Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def check_chunk(chunk) -> int:
    """A chunk is a whole number of steps ≥ 1."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigurationError(f"The chunk size must be an integer >= 1 (steps per chunk), got {chunk!r}.")
    return chunk


def _kind(layer, integrator) -> str | None:
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
            # a scalar step as a Python number (one read per run): add with alpha beats a broadcast multiply
            self.half_number = float(self.half) if d.dim() == 0 else None

    def drive(self, u: Tensor) -> Tensor:
        """w = B u + b for u [..., m] (any leading axes), times dt for the linear HRU."""
        w = torch.matmul(u, self.weight_t).add_(self.bias)
        return w.mul_(self.dt) if self.kind == "linear" else w


    def step_from_drive(self, q: Tensor, p: Tensor, w: Tensor, out: Tensor | None = None) -> Tensor:
        """One position-Verlet step on (q, p), w the (linear: dt-scaled) drive of the step: p in
        place, the new q into ``out`` when given (q itself is then left as it was), else into q."""
        half = self.half_number
        if out is None:
            q_half = q.add_(p, alpha=half) if half is not None else q.addcmul_(p, self.half)
        else:
            q_half = torch.add(q, p, alpha=half, out=out) if half is not None else torch.addcmul(q, p, self.half, out=out)
        p.addcmul_(q_half, self.dta, value=-1.0)
        if self.kind == "linear":
            p.add_(w)
        else:
            p.addmm_(torch.addmm(w, q_half, self.coupling_t).tanh_(), self.coupling_dt, alpha=-1.0)
        return q_half.add_(p, alpha=half) if half is not None else q_half.addcmul_(p, self.half)


def fused_step(layer, integrator, dt: Tensor) -> Step | None:
    """The fused in-place step (q, p, u) → (q, p) of a built-in HRU under PositionVerlet, or None."""
    kind = _kind(layer, integrator)
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
    read-out are computed ``chunk`` steps at a time.
    """
    kind = _kind(model, integrator)
    if kind is None or model.hamiltonian_layers() != [model] or getattr(model, "pooling", "last") != "last":
        return None
    chunk = check_chunk(chunk)
    with torch.no_grad():
        constants = _Constants(model, integrator.step_size(model), kind)
        (q, p), = model.init_states(x)
        q, p = q.clone(), p.clone()
        steps = x.shape[1]
        pieces = []
        buffer = None
        for start in range(0, steps, chunk):
            stop = min(start + chunk, steps)
            drive = constants.drive(x[:, start:stop].transpose(0, 1))  # [K, batch, n]
            buffer = q.new_empty(stop - start, *q.shape) if keep_outputs else None
            q = _run_chunk(constants, q, p, drive, buffer)
            if keep_outputs:
                pieces.append(model.output(buffer).transpose(0, 1))
                q = q.clone()  # the last state, no longer a view of the chunk's buffer
        outputs = torch.cat(pieces, dim=1) if keep_outputs else model.output(q)
    return [(q, p)], outputs


def _run_chunk(c: _Constants, q: Tensor, p: Tensor, drive: Tensor, buffer: Tensor | None) -> Tensor:
    """The steps of one chunk, in place; q_k written into buffer[k] when given. The common case (a
    scalar dt, nonlinear, no outputs kept) is written out with local names: at width 32 a step is
    ~6 small kernels, and Python's per-call overhead is of their order."""
    if c.kind == "nonlinear" and c.half_number is not None and buffer is None:
        half, dta, wt, wd = c.half_number, c.dta, c.coupling_t, c.coupling_dt
        addmm = torch.addmm
        for w in drive:
            q.add_(p, alpha=half)
            p.addcmul_(q, dta, value=-1.0).addmm_(addmm(w, q, wt).tanh_(), wd, alpha=-1.0)
            q.add_(p, alpha=half)
        return q
    for k in range(drive.shape[0]):
        q = c.step_from_drive(q, p, drive[k], out=None if buffer is None else buffer[k])
    return q
