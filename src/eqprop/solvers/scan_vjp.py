"""BPTT without a graph: the closed-form reverse-mode step of position Verlet for the built-in HRUs.

Autograd through T position-Verlet steps records ~10 nodes per step; at width 32 their Python and
dispatch overhead is most of the cost of BPTT. For a single :class:`eqprop.models.LinearHRU` or
:class:`eqprop.models.NonlinearHRU` with its own physics, stepped by exactly ``PositionVerlet``,
:func:`hru_outputs` runs the sequence as one ``torch.autograd.Function`` instead. With the half
drifts merged (h_k = q_k + (dt/2) p_k) the forward is

    p_{k+1} = p_k − dt F(h_k, u_k),   h_{k+1} = h_k + dt p_{k+1},   q_{k+1} = h_k + (dt/2) p_{k+1}
    F = κ² ⊙ h − (B u + b)  (linear, dt a vector)   or   κ² ⊙ h + Wᵀ tanh(W h + B u + b)  (nonlinear)

and its backward is the hand-derived adjoint of that step: with μ_k the cotangent of p_{k+1} out
of the kick, λ_k that of h_k, ν_k = dt (μ_k Wᵀ) ⊙ (1 − s_k²) and g_k the loss gradient on q_k,

    μ_k = μ_{k+1} + dt λ_{k+1} + (dt/2) g_{k+1},   λ_k = λ_{k+1} + g_{k+1} − dt κ² ⊙ μ_k − ν_k W

(the linear HRU has no ν term). The parameter gradients are sums over steps of products of these
with the stored h_k, s_k, p_k and the input, formed a chunk at a time by matrix products over
[chunk·batch, n] views: ∂W = −Σ νᵀh − dt Σ sᵀμ, ∂B = Σ Λ_wᵀ u, ∂b = Σ Λ_w (Λ_w = −ν, or dt ⊙ μ for
the linear HRU), ∂κ² = −dt Σ μ ⊙ h, and ∂dt = Σ_k [½ ρ_{k+1}·p_{k+1} + ½ λ_k·p_k − μ_k·F_k]
(ρ the cotangent of q).

Memory: the forward keeps (h, p) every ``chunk`` steps and the last chunk's buffers; the backward
recomputes each earlier chunk from its checkpoint (the same code, so bit-identical) and runs its
adjoint: O(T/chunk + chunk) states instead of BPTT's O(T) graph. ``chunk >= T`` stores the whole
trajectory and recomputes nothing.

An :class:`eqprop.models.HSSM` of such HRUs is feedforward in depth, so :func:`stack_outputs` runs
it layer after layer over the whole sequence: the encoder on all T steps, then per layer one such
Function on the layer's whole input stream (all q_k kept, the stream's gradient returned) and the
row-wise feedforward map ``mix`` on all T steps, then the decoder — a graph of O(layers) nodes,
the streams kept (O(T·H) memory per layer, BPTT's order). Any other model or integrator (a
subclass of PositionVerlet included) returns ``None`` and takes autograd through
``Integrator.step``, the reference. Check: tests/test_bptt_fast.py and tests/test_bptt_stack.py
(equal to autograd through the reference path to round-off, and ``torch.autograd.gradcheck``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..models.hamiltonian import HamiltonianModel
from ..models.hru import NonlinearHRU
from .scan import DEFAULT_CHUNK, check_chunk, hru_kind, stack_kinds

__all__ = ["hru_outputs", "hru_scan", "stack_outputs"]

_PROTOCOL = ("kinetic_grad", "hamiltonian_layers", "encode", "mix", "decode")


def _kind(model, integrator) -> str | None:
    """"linear" / "nonlinear" for a single built-in HRU under exactly PositionVerlet, else None."""
    if getattr(model, "pooling", "last") != "last":
        return None
    if any(getattr(type(model), n, None) is not getattr(HamiltonianModel, n) for n in _PROTOCOL):
        return None
    return hru_kind(model, integrator)


class _Plan:
    """The constants of one run (dt/2, dt κ², the stacked kick matrix, ...) and the chunk buffers,
    each also unbound along time once so that the step loops index nothing."""

    def __init__(self, kind: str, x: Tensor, q0: Tensor, frequency: Tensor, weight: Tensor, bias: Tensor,
                 dt: Tensor, coupling: Tensor | None, chunk: int) -> None:
        self.kind, self.steps, self.chunk = kind, x.shape[1], min(chunk, x.shape[1])
        batch, n = q0.shape
        self.a, self.weight, self.bias, self.coupling = frequency * frequency, weight, bias, coupling
        self.weight_t = weight.t()
        if kind == "nonlinear":
            d = float(dt)
            self.dt, self.half = d, 0.5 * d
            self.dta = d * self.a
            self.coupling_t = coupling.t().contiguous()
            self.coupling_dt_t = d * self.coupling_t
            # p' = p − [h, s] [diag(dt κ²); dt W] and λ' = λ − [μ, ν] [diag(dt κ²); W]: one product each
            self.kick = torch.cat([torch.diag(self.dta), d * coupling])
            self.adjoint_kick = torch.cat([torch.diag(self.dta), coupling])
            width = 2 * n
        else:
            self.dt = dt.expand(n).contiguous()
            self.half = 0.5 * self.dt
            self.dta = self.dt * self.a
            width = n
        length = self.chunk
        new = q0.new_empty
        self.hs, self.p, self.drive = new(length + 1, batch, width), new(length + 1, batch, n), new(length, batch, n)
        self.h, self.s = self.hs[..., :n], self.hs[..., n:]
        self.mn, self.lam = new(length + 1, batch, width), new(length + 1, batch, n)
        self.m, self.nu = self.mn[..., :n], self.mn[..., n:]
        self.lists = {name: getattr(self, name).unbind(0) for name in ("hs", "h", "s", "p", "drive", "mn", "m", "nu", "lam")}

    def bounds(self) -> list[tuple[int, int]]:
        return [(start, min(start + self.chunk, self.steps)) for start in range(0, self.steps, self.chunk)]

    def inputs(self, x: Tensor, start: int, stop: int) -> Tensor:
        """u_k for k in [start, stop), time-major and flat: [K·batch, m]."""
        return x[:, start:stop].transpose(0, 1).reshape(-1, x.shape[-1])

    def run(self, x: Tensor, start: int, stop: int) -> None:
        """Steps start..stop−1 from (h, p) in the buffers' row 0, writing rows 1..K (and s_k)."""
        K, batch = stop - start, x.shape[0]
        drive = self.drive[:K].view(K * batch, -1)
        torch.addmm(self.bias, self.inputs(x, start, stop), self.weight_t, out=drive)
        L = self.lists
        if self.kind == "nonlinear":
            wt, kick, d = self.coupling_t, self.kick, self.dt
            addmm, add = torch.addmm, torch.add
            for hs, h, s, h1, w, p, p1 in zip(L["hs"][:K], L["h"], L["s"], L["h"][1:], L["drive"], L["p"], L["p"][1:]):
                addmm(w, h, wt, out=s).tanh_()
                addmm(p, hs, kick, alpha=-1.0, out=p1)
                add(h, p1, alpha=d, out=h1)
        else:
            drive.mul_(self.dt)
            dta, d, addcmul = self.dta, self.dt, torch.addcmul
            for h, h1, w, p, p1 in zip(L["h"][:K], L["h"][1:], L["drive"], L["p"], L["p"][1:]):
                addcmul(p, h, dta, value=-1.0, out=p1).add_(w)
                addcmul(h, p1, d, out=h1)

    def positions(self, K: int, out: Tensor | None = None) -> Tensor:
        """q_{k+1} = h_k + (dt/2) p_{k+1} for the K steps in the buffers: [K, batch, n]."""
        h, p = self.h[:K], self.p[1:K + 1]
        if self.kind == "nonlinear":
            return torch.add(h, p, alpha=self.half, out=out)
        return torch.addcmul(h, p, self.half, out=out)

    def adjoint(self, K: int, g: Tensor | None) -> None:
        """The adjoint of the K steps in the buffers, from (μ, λ) in row K down to row 0; g [K, batch, n]
        the loss gradients on q_{start+1..stop} (None: a final-step loss)."""
        L = self.lists
        rows = lambda *names: zip(*(reversed(L[n][:K]) for n in names), *(reversed(L[n][1:K + 1]) for n in ("m", "lam")))
        gs = reversed(g.unbind(0)) if g is not None else None
        if self.kind == "nonlinear":
            decay = torch.mul(self.s[:K], self.s[:K]).neg_().add_(1.0).unbind(0)  # 1 − s_k² = tanh'
            d, half, wdt, back = self.dt, self.half, self.coupling_dt_t, self.adjoint_kick
            add, mm, addmm = torch.add, torch.mm, torch.addmm
            for (mn, m, nu, lam, m1, lam1), dk in zip(rows("mn", "m", "nu", "lam"), reversed(decay)):
                add(m1, lam1, alpha=d, out=m)
                if gs is not None:
                    gk = next(gs)
                    m.add_(gk, alpha=half)
                mm(m, wdt, out=nu).mul_(dk)
                addmm(lam1, mn, back, alpha=-1.0, out=lam)
                if gs is not None:
                    lam.add_(gk)
        else:
            d, half, dta, addcmul = self.dt, self.half, self.dta, torch.addcmul
            for m, lam, m1, lam1 in rows("m", "lam"):
                addcmul(m1, lam1, d, out=m)
                if gs is not None:
                    gk = next(gs)
                    m.addcmul_(gk, half)
                    addcmul(lam1, m, dta, value=-1.0, out=lam).add_(gk)
                else:
                    addcmul(lam1, m, dta, value=-1.0, out=lam)

    def accumulate(self, grads: dict, x: Tensor, start: int, stop: int, g: Tensor | None, need: dict) -> None:
        """Add the chunk's share of every needed gradient (big products over [K·batch, n] views)."""
        K, n = stop - start, self.p.shape[-1]
        flat = lambda t: t.reshape(-1, n)
        h, m, p, lam = flat(self.h[:K]), flat(self.m[:K]), self.p, self.lam
        u = self.inputs(x, start, stop)
        mh = (m * h).sum(0)
        if self.kind == "nonlinear":
            nu, s = flat(self.nu[:K]), flat(self.s[:K])
            sm = s.t() @ m
            dw = -(self.dt * sm).addmm_(nu.t(), h)  # −dt sᵀμ − νᵀh
            grads["coupling"] = grads.get("coupling", 0) + dw
            force = self.a.dot(mh) + (self.coupling * sm).sum()  # Σ μ·F, F = κ² h + s W
            drive_cot = -nu
        else:
            drive_cot = m * self.dt
            force = None
        if need["dt"]:
            cross = (lam[:K] * p[:K] + lam[1:K + 1] * p[1:K + 1]).sum((0, 1))
            if g is not None:
                cross = cross + (g * p[1:K + 1]).sum((0, 1))
            if force is None:  # linear: Σ μ ⊙ F per unit, F = κ² h − (B u + b)
                force = self.a * mh - ((m.t() @ u) * self.weight).sum(1) - self.bias * m.sum(0)
                share = 0.5 * cross - force
            else:
                share = 0.5 * cross.sum() - force
            grads["dt"] = grads.get("dt", 0) + share
        grads["a"] = grads.get("a", 0) + mh
        grads["weight"] = grads.get("weight", 0) + drive_cot.t() @ u
        grads["bias"] = grads.get("bias", 0) + drive_cot.sum(0)
        if need["x"]:
            grads.setdefault("x", []).append((drive_cot @ self.weight).view(K, x.shape[0], -1))


class _HRUScan(torch.autograd.Function):
    """(x, q0, p0, κ, B, b, dt, W) → (q_T, p_T), or all q_k [batch, T, n] with ``keep_outputs``."""

    @staticmethod
    def forward(ctx, kind, keep_outputs, chunk, x, q0, p0, frequency, weight, bias, dt, coupling):
        plan = _Plan(kind, x, q0, frequency, weight, bias, dt, coupling, chunk)
        bounds = plan.bounds()
        checkpoints = q0.new_empty(len(bounds), 2, *q0.shape)
        torch.add(q0, p0 * plan.half, out=plan.h[0])
        plan.p[0].copy_(p0)
        trajectory = q0.new_empty(plan.steps, *q0.shape) if keep_outputs else None
        for index, (start, stop) in enumerate(bounds):
            if index:  # the previous chunk's last (h, p) starts this one
                K = bounds[index - 1][1] - bounds[index - 1][0]
                plan.h[0].copy_(plan.h[K])
                plan.p[0].copy_(plan.p[K])
            checkpoints[index].copy_(torch.stack([plan.h[0], plan.p[0]]))
            plan.run(x, start, stop)
            if keep_outputs:
                plan.positions(stop - start, out=trajectory[start:stop])
        plan.resident = len(bounds) - 1  # the chunk whose trajectory is in the buffers
        ctx.plan, ctx.checkpoints, ctx.keep_outputs = plan, checkpoints, keep_outputs
        ctx.save_for_backward(x, frequency, dt)
        if keep_outputs:
            return trajectory.transpose(0, 1)
        K = bounds[-1][1] - bounds[-1][0]
        return plan.h[K - 1] + plan.p[K] * plan.half, plan.p[K].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, *cotangents):
        plan, checkpoints = ctx.plan, ctx.checkpoints
        x, frequency, dt = ctx.saved_tensors
        needs = ctx.needs_input_grad
        need = {"x": needs[3], "dt": needs[9]}
        bounds = plan.bounds()
        if ctx.keep_outputs:
            g_all = cotangents[0].transpose(0, 1)  # [T, batch, n]
            rho = pi = torch.zeros_like(plan.p[0])
        else:
            g_all, (rho, pi) = None, cotangents
        # the adjoint state carried in row K of a chunk: λ = ρ̃ (the cotangent of q_stop without its
        # own loss term, which the chunk adds) and μ = π − (dt/2) ρ̃, so that the first merged step
        # gives μ = π + (dt/2) ρ, the cotangent of p_stop out of the kick
        carry_m, carry_lam = pi - rho * plan.half, rho
        grads: dict = {}
        for index in reversed(range(len(bounds))):
            start, stop = bounds[index]
            K = stop - start
            if plan.resident != index:  # recompute the chunk from its checkpoint (the same code: bit-identical)
                plan.h[0].copy_(checkpoints[index, 0])
                plan.p[0].copy_(checkpoints[index, 1])
                plan.run(x, start, stop)
                plan.resident = index
            plan.m[K].copy_(carry_m)
            plan.lam[K].copy_(carry_lam)
            g = g_all[start:stop].contiguous() if g_all is not None else None
            plan.adjoint(K, g)
            plan.accumulate(grads, x, start, stop, g, need)
            carry_m, carry_lam = plan.m[0].clone(), plan.lam[0].clone()
        grad_dt = None
        if need["dt"]:
            grad_dt = grads["dt"].sum() if dt.dim() == 0 else grads["dt"]
        return (None, None, None,
                torch.cat(grads["x"][::-1]).transpose(0, 1) if need["x"] else None,
                carry_lam if needs[4] else None,  # ρ_0 = λ_0: h_0 = q_0 + (dt/2) p_0
                carry_m + carry_lam * plan.half if needs[5] else None,
                -2 * frequency * plan.dt * grads["a"] if needs[6] else None,  # ∂κ = 2κ ∂(κ²)
                grads["weight"] if needs[7] else None,
                grads["bias"] if needs[8] else None,
                grad_dt,
                grads.get("coupling") if needs[10] else None)


def _apply(kind: str, model, x: Tensor, q0: Tensor, p0: Tensor, dt: Tensor, keep_outputs: bool, chunk: int):
    coupling = model.coupling if kind == "nonlinear" else None
    return _HRUScan.apply(kind, keep_outputs, check_chunk(chunk), x, q0, p0, model.frequency,
                          model.input_weight, model.input_bias, dt, coupling)


def _fits(kind: str, model, x: Tensor, q0: Tensor, p0: Tensor, dt: Tensor) -> bool:
    """The Function's assumptions on one layer: one dtype and device, states [batch, n], dt a scalar
    (a vector per unit for the linear HRU)."""
    tensors = (q0, p0, model.frequency, model.input_weight, model.input_bias, dt)
    return not (any(t.dtype != x.dtype or t.device != x.device for t in tensors) or dt.dim() > (kind == "linear")
                or q0.shape != (x.shape[0], model.hidden_size) or p0.shape != q0.shape
                or dt.shape not in ((), (model.hidden_size,)))


def hru_scan(model, x: Tensor, dt: Tensor, keep_outputs: bool, chunk: int = DEFAULT_CHUNK,
             state: tuple[Tensor, Tensor] | None = None):
    """The differentiable run of a built-in HRU (the model is not checked) from ``state`` (default:
    its own initial state): (q_T, p_T), or the positions q_1..q_T [batch, T, n] with
    ``keep_outputs``; gradients by the closed-form adjoint, for x, the state and the parameters."""
    kind = "nonlinear" if isinstance(model, NonlinearHRU) else "linear"
    (q0, p0), = model.init_states(x) if state is None else (state,)
    return _apply(kind, model, x, q0, p0, dt, keep_outputs, chunk)


def hru_outputs(model, x: Tensor, integrator, keep_outputs: bool, chunk: int = DEFAULT_CHUNK) -> Tensor | None:
    """The outputs of a single built-in HRU under PositionVerlet with BPTT's gradients in closed
    form: the final output, or all outputs [batch, T, ...] with ``keep_outputs``; the read-out runs
    under ordinary autograd. ``None`` for any other model or integrator (take the reference path)."""
    chunk = check_chunk(chunk)
    kind = _kind(model, integrator)
    if kind is None:
        return None
    dt = integrator.step_size(model)
    with torch.enable_grad():
        (q0, p0), = model.init_states(x)
        if not _fits(kind, model, x, q0, p0, dt):
            return None
        if keep_outputs:
            return model.output(_apply(kind, model, x, q0, p0, dt, True, chunk))
        q, _ = _apply(kind, model, x, q0, p0, dt, False, chunk)
        return model.output(q)


def stack_outputs(model, x: Tensor, integrator, keep_outputs: bool, chunk: int = DEFAULT_CHUNK) -> Tensor | None:
    """The outputs of an :class:`~eqprop.models.HSSM` of built-in HRUs under PositionVerlet with
    BPTT's gradients, layer after layer over the whole sequence: the stack is feedforward in depth,
    so layer i's positions q^i_1..q^i_T come from one closed-form run (:func:`hru_scan`) on its
    whole input stream z^i [batch, T, H], and the feedforward map z^{i+1} = mix(i, z^i, q^i), the
    encoder and the decoder (row-wise) run under ordinary autograd on all T steps at once. The
    graph has O(layers) nodes instead of O(T · layers); the streams z^i and q^i are kept, memory
    O(T · H · layers) — BPTT's own order. The final output, or all outputs [batch, T, ...] with
    ``keep_outputs`` (pooling "mean": the running mean of the decoded stream). ``None`` when the
    model is not such a stack (the gate of :func:`eqprop.solvers.scan.stack_forward`: the reference
    path then unrolls ``Integrator.step``)."""
    chunk = check_chunk(chunk)
    kinds = stack_kinds(model, integrator)
    if kinds is None:
        return None
    layers = model.hamiltonian_layers()
    dts = [integrator.step_size(layer) for layer in layers]
    with torch.enable_grad():
        states = model.init_states(x)
        z = model.encode(x)  # [batch, T, H]
        if any(not _fits(kind, layer, z, q0, p0, dt) for kind, layer, (q0, p0), dt in zip(kinds, layers, states, dts)):
            return None
        for index, (kind, layer, (q0, p0), dt) in enumerate(zip(kinds, layers, states, dts)):
            z = model.mix(index, z, _apply(kind, layer, z, q0, p0, dt, True, chunk))
        steps = x.shape[1]
        if model.pooling == "mean":  # o_k = (Σ_{i ≤ k} Dec(z_i)) / (k + 1)
            out = model.decode(z)
            if not keep_outputs:
                return out.sum(1) / steps
            counts = torch.arange(1, steps + 1, dtype=out.dtype, device=out.device)
            return out.cumsum(1) / counts.view(-1, *([1] * (out.dim() - 2)))
        return model.decode(z) if keep_outputs else model.decode(z[:, -1])
