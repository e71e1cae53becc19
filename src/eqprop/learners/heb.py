"""HEB: Hamiltonian echo backpropagation (López-Pastor & Marquardt 2023).

"Self-learning machines based on Hamiltonian echo backpropagation" (Phys. Rev. X 13, 031020);
docs/heb.md and docs/theory.md ("HEB") state the protocol and its error orders. The parameters θ are positions with momenta π, all
under one time-independent Hamiltonian (see :mod:`eqprop.estimators.joint`)

    H = T(p) + ½|π|²/m + V(q, u; θ)          (1/m = 0 allowed: θ frozen, π accumulates −∫∂_θV)

Protocol, from X₀ = (q₀, θ₀, p₀, π₀ = 0), with the leapfrog step on the whole state:

1. evolve N steps → X(T);
2. nudge, **then** flip: p ← p − η∇_qC(q(T)), π ← π − η∇_θC (readout parameters), then
   (p, π) ← (−p, −π)  (kicking after the flip with the same written sign reverses the result);
3. evolve N steps (a sequence input is replayed in reverse; a static one is the same input);
4. flip all momenta again → X_η.

To first order in η, exactly for any m and step: π_η − π₀ = −η dC/dθ(0), the derivative through
the full dynamics with θ moving (and p_η − p₀ = −η ∂C/∂q(0), q_η − q₀ = +η ∂C/∂p(0)). So

    dL/dθ ≈ −(π_{+η} − π_{−η}) / 2η      (variant="centered",  error O(η²))
    dL/dθ ≈ −(π_{+η} − π₀) / η           (variant="one_sided", error O(η))

averaged over the batch (each sample is its own system with its own copy of θ). With 1/m = 0 it
is BPTT through the model's leapfrog with a final-time loss; with finite m the full-dynamics
gradient differs from the frozen one by O(T²/m). ``eqprop.baselines.heb_full_dynamics`` is the
autograd reference. The echo's θ is discarded — the model's parameters are never moved, which
is "θ restored to θ₀" (the η = 0 echo returns X₀ to round-off: :meth:`HEB.echo_error`) — and a
``torch.optim`` optimizer applies the gradient written into ``.grad``. Learner state: none (π₀ = 0
at every estimate). A θ-dependent initial state is handled by pulling λ = dC/dΦ(0), read off the
echo's end, back through ``init_state``.

Precision. With finite m the contrast is π_a − π_b of two accumulated joint states, which loses
about |X|/(|η_a − η_b|·|∇C|) of the dtype's digits; the echo (not the forward run) therefore runs
in float64 when the model is float32 or 16-bit (``echo_dtype``), which costs 1.1–1.5× on CPU and
makes the float32 gradient as exact as the frozen one (docs/heb.md, "Float32 and bfloat16"). With
1/m = 0 the model's echo kernel is stepped; the built-in HRUs' closed forms carry the difference
of the copies as a state of their own. ``info["roundoff"]`` is the estimated relative round-off
(:func:`eqprop.estimators.roundoff.contrast_roundoff`), with a PrecisionWarning above 0.1.

Check: tests/test_heb.py — HEB vs autograd of the full dynamics for m ∈ {1, 100, ∞} (centered
slope 2, one-sided 1), vs BPTT for m = ∞, the η = 0 echo, the O(T²/m) gap, errors;
tests/test_rhel_float32.py — float32 and bfloat16 against float64.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..estimators.base import Estimate, Learner, check_beta, trainable
from ..estimators.joint import JointSystem, check_joint, check_mass, check_steps, parameter_rows, prepare, run
from ..estimators.roundoff import contrast_roundoff, warn_roundoff
from ..estimators.sequence import check_echo_variant, check_reversible, echo_return_error, initial_state_vjp
from ..models.echo_kernels import contrast_rows, echo_rows, row_epsilons
from ..solvers.integrators import Integrator, LeapFrog

__all__ = ["HEB"]

class HEB(Learner):
    """Hamiltonian echo backpropagation: dL/dθ = −Δπ/η read off a time-reversed echo.

    Args:
        eta: the nudge η (non-zero); ≈ 1e-3 × 1/|∇C| in float64, larger in float32.
        variant: "centered" (echoes at ±η, O(η²)) or "one_sided" (η and 0, O(η)).
        mass: the parameters' mass m > 0; ``float('inf')`` (default) freezes θ during the
            evolution (the gradient is then exactly the frozen-parameter one, BPTT).
        integrator: an exactly reversible step applied to the joint state, ``LeapFrog()`` by
            default (the model's own scalar ``dt``); a non-reversible one raises
            :class:`eqprop.errors.NotReversibleError`.
        steps: N, the number of steps a static input [batch, features] is held for; ``None``
            for a sequence input [batch, T, features] (N = T, replayed in reverse by the echo).
        cost: the per-sample final-time cost; :class:`eqprop.costs.SquaredError` by default.
        echo_dtype: the dtype of the finite-mass echo; ``None`` (default): float64 when the model is
            float32 or 16-bit (the contrast π_a − π_b of two accumulated states would otherwise
            cancel), the model's dtype otherwise. Give the model's dtype to keep the echo in it.

    ``info`` has "roundoff", the estimated relative round-off of the contrast (u·√N when the
    difference is exact, u·√N·|X(T)|/(|η_a − η_b|·|∇C|) when two copies in the model's dtype are
    subtracted; a :class:`eqprop.errors.PrecisionWarning` above 0.1), and "echo_error" for
    ``variant="one_sided"`` (its η = 0 copy's return error).
    """

    def __init__(self, eta: float, variant: str = "centered", mass: float = float("inf"), integrator=None,
                 steps: int | None = None, cost: Cost | None = None, echo_dtype: torch.dtype | None = None) -> None:
        self.eta = check_beta("eta", eta)
        self.variant = check_echo_variant("HEB", variant)
        self.inv_mass = check_mass(mass)
        self.mass = float(mass)
        self.integrator = LeapFrog() if integrator is None else integrator
        check_reversible(self.integrator, "HEB")
        self.steps = check_steps(steps)
        self.cost = SquaredError() if cost is None else cost
        if echo_dtype is not None and not (isinstance(echo_dtype, torch.dtype) and echo_dtype.is_floating_point
                                           and not echo_dtype.is_complex):
            raise ConfigurationError(f"echo_dtype must be None or a real floating torch dtype such as torch.float64, "
                                     f"got {echo_dtype!r}.")
        self.echo_dtype = echo_dtype

    def __repr__(self) -> str:
        return (f"HEB(eta={self.eta}, variant={self.variant!r}, mass={self.mass}, integrator={self.integrator!r}, "
                f"steps={self.steps}, cost={self.cost!r}, echo_dtype={self.echo_dtype})")

    # -- contract ------------------------------------------------------------------------------
    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        """The final-time output, [batch, ...] (with θ moving during the run when m is finite)."""
        x_seq = prepare(model, x, None, self.steps, self.cost)
        joint, dt, Q, P = self._initial(model, x_seq)
        Q, P = run(joint, self.integrator, Q, P, _inputs(x_seq), dt)
        with torch.no_grad():
            return joint.output(*joint.split(Q))

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:
        x_seq = prepare(model, x, y, self.steps, self.cost)
        etas = [self.eta, -self.eta] if self.variant == "centered" else [self.eta, 0.0]
        info = {"eta": self.eta, "variant": self.variant, "mass": self.mass}
        if self.inv_mass == 0.0 and type(self.integrator).echo is not Integrator.echo:
            return self._estimate_frozen(model, x_seq, y, etas, info)
        joint, dt, Q0, P0 = self._initial(model, x_seq)
        batch = x_seq.shape[0]
        Q_T, P_T = run(joint, self.integrator, Q0, P0, _inputs(x_seq), dt)
        prediction, loss, force = self._nudge_force(joint, Q_T, y)
        echo, Q_e, P_e = self._echo(joint, dt, Q_T, P_T, force, x_seq, etas, batch)
        grads = self._read(model, echo, x_seq, Q_e, P_e, etas[0] - etas[1], batch)
        self._roundoff(info, x_seq, Q_e.dtype, [Q_T, P_T], force, etas, subtracted=True)
        if self.variant == "one_sided":
            info["echo_error"] = _return_error(Q0, P0, Q_T, P_T, Q_e[batch:], P_e[batch:])
        return Estimate(grads=grads, loss=loss, prediction=prediction, info=info)

    def _estimate_frozen(self, model, x_seq: Tensor, y: Tensor, etas: list[float], info: dict) -> Estimate:
        """1/m = 0 without per-row copies of θ: θ stays θ₀ exactly, so only Σ_rows π matters.

        Along the echo π changes by −Σ_j ∂_θS_j (S_j the integrator's generating sum: for leapfrog
        (dt/2)[V(q_j) + V(q_{j+1})]); the integrator's ``echo`` through the model's echo kernel (the
        one RHEL uses) accumulates Σ_c w_c ∂_θS_c with w = +1 on copy a and −1 on copy b, so
        −(π_a − π_b) = (η_a − η_b) Σ_rows ∇_θC − (G_a − G_b),
        the forward run's share cancelling between the copies. Same result as the joint path
        (tests/test_heb.py), at the cost of plain batched evaluations.
        """
        batch, copies = x_seq.shape[0], len(etas)
        names = [n for n, _ in trainable(model)]
        named = dict(model.named_parameters())
        params = [named[n] for n in names]
        with torch.no_grad():
            q0, p0 = model.init_state(x_seq)
            dt = check_joint(model, self.integrator, names, p0)
            q, p = q0, p0
            for u in _inputs(x_seq):
                q, p = self.integrator.step(model, q, p, u, dt)
        with torch.enable_grad():
            q_leaf = q.detach().requires_grad_(True)
            output = model.output(q_leaf)
            per_sample = self.cost(output, y)
            grad_q, *direct = torch.autograd.grad(per_sample.sum(), [q_leaf] + params, allow_unused=True)
        loss = per_sample.detach().reshape(batch, -1).sum(1).mean()
        kernel = model.echo_kernel(dt, batch, copies)  # its row layout: a closed form carries copy a − copy b
        eta_col = torch.repeat_interleave(q.new_tensor(row_epsilons(kernel, etas)), batch)
        eta_col = eta_col.reshape(-1, *([1] * (q.dim() - 1)))
        q_e = echo_rows(kernel, q, copies)
        p_e = -(echo_rows(kernel, p, copies) - eta_col * grad_q.repeat(copies, *([1] * (q.dim() - 1))))
        with torch.no_grad():
            for u in _inputs(x_seq, reverse=True):
                q_e, p_e = self.integrator.echo(kernel, q_e, p_e, u)
        p_e = -p_e
        denominator = etas[0] - etas[1]
        contrast = {id(param): g for param, g in kernel.grads()}
        grads = {}
        for name, param, d in zip(names, params, direct):
            total = torch.zeros_like(param) if d is None else d.detach().clone()
            if id(param) in contrast:
                total -= contrast[id(param)] / denominator
            grads[name] = total / batch
        self._initial_state_term(model, x_seq, grads, names, contrast_rows(kernel, q_e, batch),
                                 contrast_rows(kernel, p_e, batch), denominator, batch)
        self._roundoff(info, x_seq, q.dtype, [q, p], grad_q, etas, subtracted=not getattr(kernel, "difference", False))
        if self.variant == "one_sided":
            info["echo_error"] = _return_error(q0, p0, q, p, q_e[batch:], p_e[batch:])
        return Estimate(grads=grads, loss=loss, prediction=output.detach(), info=info)

    def echo_error(self, model: nn.Module, x: Tensor) -> float:
        """max |X_{η=0} − X₀| / max(|X₀|, |X(T)|) over (q, θ, p, π): round-off for a reversible step."""
        x_seq = prepare(model, x, None, self.steps, self.cost)
        joint, dt, Q0, P0 = self._initial(model, x_seq)
        Q_T, P_T = run(joint, self.integrator, Q0, P0, _inputs(x_seq), dt)
        _, Q_e, P_e = self._echo(joint, dt, Q_T, P_T, torch.zeros_like(P_T), x_seq, [0.0], x_seq.shape[0])
        return _return_error(Q0, P0, Q_T, P_T, Q_e, P_e)

    # -- the phases ----------------------------------------------------------------------------
    def _initial(self, model, x_seq: Tensor):
        """The joint system, its step and X₀ = (q₀, θ₀, p₀, π₀ = 0) with one row per sample."""
        names = [n for n, _ in trainable(model)]
        with torch.no_grad():
            q0, p0 = model.init_state(x_seq)
        dt = check_joint(model, self.integrator, names, p0)
        joint = JointSystem(model, names, self.inv_mass, q0.shape[1:])
        theta0 = parameter_rows(model, names, q0.shape[0]).detach()
        Q0 = joint.join(q0, theta0)
        P0 = joint.join(p0, torch.zeros_like(theta0))
        return joint, dt, Q0, P0

    def _nudge_force(self, joint: JointSystem, Q_T: Tensor, y: Tensor):
        """Final output, batch-mean loss and ∇_X C = (∇_qC, ∇_θC) per row at X(T)."""
        with torch.enable_grad():
            q, theta = (t.detach().requires_grad_(True) for t in joint.split(Q_T))
            output = joint.output(q, theta)
            per_sample = self.cost(output, y)
            grad_q, grad_theta = torch.autograd.grad(per_sample.sum(), [q, theta], allow_unused=True)
        grad_q = torch.zeros_like(q) if grad_q is None else grad_q
        grad_theta = torch.zeros_like(theta) if grad_theta is None else grad_theta
        loss = per_sample.detach().reshape(per_sample.shape[0], -1).sum(1).mean()
        return output.detach(), loss, joint.join(grad_q, grad_theta)

    def _echo_dtype(self, dtype: torch.dtype, device: torch.device) -> torch.dtype:
        """``echo_dtype``, else float64 for a float32 / 16-bit model (except on MPS, which has no float64)."""
        if self.echo_dtype is not None:
            return self.echo_dtype
        if device.type == "mps":
            return dtype
        return torch.float64 if dtype in (torch.float32, torch.bfloat16, torch.float16) else dtype

    def _echo(self, joint, dt, Q_T, P_T, force, x_seq: Tensor, etas: list[float], batch: int):
        """Copies c = 0..C−1: p ← p − η_c∇C, flip, evolve with inputs reversed, flip → X_{η_c}.

        Runs in ``_echo_dtype`` (its own joint system when that is not the model's dtype); returns
        that joint system and the echo's end (Q, P), one row block per copy.
        """
        copies = len(etas)
        dtype = self._echo_dtype(Q_T.dtype, Q_T.device)
        if dtype != Q_T.dtype:
            joint = JointSystem(joint.model, joint.names, joint.inv_mass, joint.q_shape, dtype=dtype)
            Q_T, P_T, force, dt = (t.to(dtype) for t in (Q_T, P_T, force, dt))
        eta_col = torch.repeat_interleave(Q_T.new_tensor(etas), batch).unsqueeze(1)
        Q = Q_T.repeat(copies, 1)
        P = -(P_T.repeat(copies, 1) - eta_col * force.repeat(copies, 1))  # nudge, THEN flip
        reversed_inputs = (u.to(dtype).repeat(copies, *([1] * (u.dim() - 1))) for u in _inputs(x_seq, reverse=True))
        Q, P = run(joint, self.integrator, Q, P, reversed_inputs, dt)
        return joint, Q, -P

    def _roundoff(self, info: dict, x_seq: Tensor, echo_dtype: torch.dtype, end: list[Tensor], force: Tensor,
                  etas: list[float], subtracted: bool) -> None:
        """info["roundoff"]: the forward run's u·√N, or the subtracted copies' cancellation if larger."""
        steps = x_seq.shape[1]
        with torch.no_grad():
            scale = max(float(t.abs().max()) for t in end if t.numel())
            gradient = float(force.abs().max()) if force.numel() else 0.0
        roundoff = max(contrast_roundoff(x_seq.dtype, steps),
                       contrast_roundoff(echo_dtype, steps, subtracted, scale, etas[0] - etas[1], gradient))
        info["roundoff"] = roundoff
        warn_roundoff(roundoff, "HEB", "eta", self.eta, echo_dtype, "a float64 echo", stacklevel=3)

    def _read(self, model, joint, x_seq, Q_e, P_e, denominator: float, batch: int) -> dict[str, Tensor]:
        """g = −(π_a − π_b)/(η_a − η_b), batch mean, plus λ(0) pulled back through ``init_state``;
        the differences formed in the echo's dtype, the result in the model's."""
        pi_a, pi_b = joint.split(P_e[:batch])[1], joint.split(P_e[batch:2 * batch])[1]
        flat = -(pi_a - pi_b).sum(0) / (denominator * batch)
        named = dict(model.named_parameters())
        grads, start = {}, 0
        for name, shape, size in zip(joint.names, joint.shapes, joint.sizes):
            grads[name] = flat[start:start + size].reshape(shape).to(named[name].dtype, copy=True)
            start += size
        q_e, p_e = joint.split(Q_e)[0], joint.split(P_e)[0]
        dq, dp = ((t[:batch] - t[batch:2 * batch]).to(x_seq.dtype) for t in (q_e, p_e))
        self._initial_state_term(model, x_seq, grads, joint.names, dq, dp, denominator, batch)
        return grads

    @staticmethod
    def _initial_state_term(model, x_seq, grads, names, dq: Tensor, dp: Tensor, denominator: float,
                            batch: int) -> None:
        """Add λ(0)·∂Φ₀/∂θ, λ_q = dC/dq(0) = −∂_η p_η, λ_p = dC/dp(0) = +∂_η q_η (batch mean);
        dq, dp: the echo ends' difference copy a − copy b."""
        lam_q = -dp / (denominator * batch)
        lam_p = dq / (denominator * batch)
        named = dict(model.named_parameters())
        with torch.enable_grad():
            initial = model.init_state(x_seq)
        for name, g in zip(names, initial_state_vjp([initial], [(lam_q, lam_p)], [named[n] for n in names])):
            if g is not None:
                grads[name] += g


def _inputs(x_seq: Tensor, reverse: bool = False) -> Iterator[Tensor]:
    """The inputs one step at a time (never a list of N views: memory independent of N)."""
    steps = range(x_seq.shape[1])
    return (x_seq[:, k] for k in (reversed(steps) if reverse else steps))


def _return_error(Q0: Tensor, P0: Tensor, Q_T: Tensor, P_T: Tensor, Q_e: Tensor, P_e: Tensor) -> float:
    return echo_return_error([(Q0, P0, Q_T, P_T, Q_e, P_e)], 1.0)
