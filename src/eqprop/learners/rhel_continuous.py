"""Continuous-time RHEL (Pourcel & Ernoult 2025), discretised so that it equals autograd of its scheme.

Setting: a single Hamiltonian model on t ∈ [0, T], inputs sampled on the grid t_n = n·h,
x[:, n] = u(t_n), n = 0..N (so x has N + 1 samples and T = N·h). Loss, batch mean of

    L = ℓ_T(q(T))                          target y shaped [batch, ...]        (terminal loss), or
    L = ∫₀ᵀ ℓ_t(q(t)) dt  (trapezoid rule)  target y shaped [batch, N + 1, ...] (running loss),

with ℓ = cost(model.output(q), y). Forward: velocity Verlet (``LeapFrog()``: kick h/2 with u(t_n),
drift h, kick h/2 with u(t_{n+1})) from Φ(0), keeping only Φ(T); any exactly reversible integrator
may replace it (``PositionVerlet()`` kicks with the midpoint input), the echo then steps the same one. Two echoes σ = ±1 over s ∈ [0, T]:

    q_e(0) = q_T,  p_e(0) = −p_T + σε ∇ℓ_T(q_T)
    q̇_e = ∂_pT,    ṗ_e = −∇_qV(q_e, u(T − s)) + σε ∇_qℓ_{T−s}(q_e)     (inputs AND targets reversed)
    dL/dθ = −(1/2ε) ∫₀ᵀ [∂_θH(Φ_e⁺(s), u(T − s)) − ∂_θH(Φ_e⁻(s), u(T − s))] ds + O(ε²)

discretised with the same velocity Verlet on the reversed grid (echo step n uses u(t_{N−n}) and
u(t_{N−n−1}); never a shifted index) and the trapezoid weights of the kicks for ∫∂_θH — i.e. the
generating sum S_n = (h/2)V(q_n) + h T(p_h) + (h/2)V(q_{n+1}), which also covers parameters of T.
Then RHEL equals autograd through the discrete scheme to O(ε²), and the continuous gradient to
O(h²). Its adjoint reading: ∂_εq_e(s) = λ_p(T − s), ∂_εp_e(s) = λ_q(T − s) (the echo computes the
adjoint state physically; ``eqprop.baselines.Adjoint`` integrates it explicitly).

The echo keeps nothing per grid point (no trajectory, no list of weights): its extra memory is
independent of N. ``info``: "roundoff" (the estimated relative round-off of the contrast: u·√N with
the closed-form kernels of the built-in HRUs, which carry the difference of the ± copies as a
state of its own, and the cancellation of two stored copies otherwise; a PrecisionWarning above
0.1) and, for ``variant="one_sided"``, "echo_error" (the ε = 0 copy's return to (q_0, −p_0)).

Check: tests/test_rhel_continuous.py — equal to autograd of the scheme (O(ε²)); vs
``eqprop.baselines.Adjoint`` and ``torchdiffeq.odeint_adjoint`` with error slope ≈ 2 in h;
tests/test_rhel_float32.py — float32 and bfloat16 against float64.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..estimators.base import Estimate, Learner, check_beta, trainable
from ..estimators.continuous import (check_continuous_model, check_grid_integrator, check_step_size, grid_trajectory,
                                     trapezoid_weight, trapezoid_weights)
from ..estimators.roundoff import contrast_roundoff, warn_roundoff
from ..estimators.sequence import (check_echo_variant, check_reversible, check_sequence, echo_return_error,
                                   initial_state_vjp, target_mode)
from ..models.echo_kernels import contrast_rows, copy_rows, echo_rows, row_epsilons
from ..solvers.integrators import Integrator, LeapFrog

__all__ = ["ContinuousRHEL", "verlet_trajectory_loss"]


def verlet_trajectory_loss(model, x: Tensor, y: Tensor, h: float, cost: Cost, mode: str,
                           create_graph: bool = False, integrator: Integrator | None = None
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The scheme's run over the grid (``LeapFrog()``, velocity Verlet, by default); returns
    (q_T, p_T, loss, outputs) — autograd-able with ``create_graph``."""
    integrator = LeapFrog() if integrator is None else integrator
    q, p, out = grid_trajectory(model, x, h, integrator, create_graph, keep_outputs=(mode != "final"))
    with torch.enable_grad() if create_graph else torch.no_grad():
        if mode == "final":
            loss = cost.loss(out, y)
        else:
            per_sample = cost(out, y)  # [batch, N + 1]
            loss = (per_sample * x.new_tensor(trapezoid_weights(x.shape[1], h))).sum(dim=1).mean()
    return q, p, loss, out


class ContinuousRHEL(Learner):
    """Continuous-time RHEL with velocity Verlet on the grid h; O(ε²) to its scheme, O(h²) to the ODE.

    Args:
        epsilon: echo nudge ε (non-zero). step_size: the grid spacing h of the samples in x.
        variant: "centered" (±ε, O(ε²)) or "one_sided" (ε and 0, O(ε)). cost: SquaredError by default.
        integrator: an exactly reversible integrator stepping on the grid (``LeapFrog()``, velocity
            Verlet, by default; ``PositionVerlet()`` reads the midpoint input); without its own dt.
    """

    def __init__(self, epsilon: float, step_size: float, variant: str = "centered", cost: Cost | None = None,
                 integrator: Integrator | None = None) -> None:
        self.epsilon = check_beta("epsilon", epsilon)
        self.step_size = check_step_size(step_size)
        self.variant = check_echo_variant("RHEL", variant)
        self.cost = SquaredError() if cost is None else cost
        self.integrator = LeapFrog() if integrator is None else integrator
        check_reversible(self.integrator, "ContinuousRHEL")
        check_grid_integrator(self.integrator, self.step_size, "ContinuousRHEL")

    def predict(self, model, x: Tensor) -> Tensor:
        """Outputs at every grid point, [batch, N + 1, ...]."""
        check_continuous_model(model)
        check_sequence(model, x)
        return grid_trajectory(model, x, self.step_size, self.integrator)[2].detach()

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_continuous_model(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        q_final, p_final, loss, out = verlet_trajectory_loss(model, x, y, self.step_size, self.cost, mode,
                                                             integrator=self.integrator)
        info = {"mode": mode}
        grads = self._echo(model, x, y, mode, q_final, p_final, info)
        warn_roundoff(info["roundoff"], "ContinuousRHEL", "epsilon", self.epsilon, x.dtype, "float64", stacklevel=2)
        return Estimate(grads=grads, loss=loss.detach(), prediction=out.detach(), info=info)

    def _echo(self, model, x, y, mode, q_final, p_final, info: dict) -> dict[str, Tensor]:
        batch, points, h = x.shape[0], x.shape[1], self.step_size
        eps_a, eps_b = (self.epsilon, -self.epsilon) if self.variant == "centered" else (self.epsilon, 0.0)
        denominator = eps_a - eps_b
        params = [p for _, p in trainable(model)]
        direct = {id(p): torch.zeros_like(p) for p in params}
        # copies +ε, −ε (or 0) with contrast weights (+1, −1): the kernel RHEL steps this model with,
        # in its row layout (a closed form carries copy 0 − copy 1 in the first rows)
        kernel = model.echo_kernel(torch.tensor(h, dtype=x.dtype, device=x.device), batch, 2)
        eps_rows = x.new_tensor(row_epsilons(kernel, [eps_a, eps_b])).repeat_interleave(batch).unsqueeze(-1)
        nudge_size = []  # max |∇_qℓ| of the first nudge, for the round-off estimate

        def rep(t: Tensor) -> Tensor:  # one row block per echo copy
            return t.repeat(2, *([1] * (t.dim() - 1)))

        def reference(t: Tensor) -> Tensor:  # the ε → 0 extrapolation of the two copies
            return torch.add(t[batch:], contrast_rows(kernel, t, batch), alpha=eps_b / (eps_b - eps_a))

        def nudge(q: Tensor, n: int, weight: float) -> Tensor:
            """weight·∇_qℓ(q_ref) per sample (replicated ×2, scaled by ±ε) and its readout-parameter term."""
            with torch.enable_grad():
                q_ref = reference(q).detach().requires_grad_(True)
                target = y if mode == "final" else y[:, n]
                value = self.cost(model.output(q_ref), target).sum() * weight
                grads = torch.autograd.grad(value, [q_ref] + params, allow_unused=True)
            if not nudge_size:
                nudge_size.append(float(grads[0].abs().max()) / weight if weight else 0.0)
            for p, g in zip(params, grads[1:]):
                if g is not None:
                    direct[id(p)] += g
            return eps_rows * rep(grads[0])

        q, p = echo_rows(kernel, q_final, 2), echo_rows(kernel, -p_final, 2)
        if mode == "final":
            p = p + nudge(q, points - 1, 1.0)

        def kick_weight(k: int) -> float:  # each interior grid point is kicked twice, the ends once
            weight = trapezoid_weight(k, points, h)
            return weight if k in (0, points - 1) else 0.5 * weight

        for n in range(points - 1):
            k = points - 1 - n  # echo step n starts at s_n, i.e. at t_k of the forward grid
            if mode != "final":
                p = p + nudge(q, k, kick_weight(k))
            q, p = self.integrator.echo(kernel, q, p, x[:, k], x[:, k - 1])  # inputs reversed in time
            if mode != "final":
                p = p + nudge(q, k - 1, kick_weight(k - 1))
        with torch.no_grad():
            scale = max(float(q_final.abs().max()), float(p_final.abs().max()))
        info["roundoff"] = contrast_roundoff(x.dtype, points, not getattr(kernel, "difference", False), scale,
                                             denominator, nudge_size[0] if nudge_size else 0.0)
        if eps_b == 0.0:  # one_sided: copy 1 is the un-nudged echo, which returns to (q_0, −p_0)
            with torch.no_grad():
                q0, p0 = model.init_state(x)
            info["echo_error"] = echo_return_error(
                [(q0, p0, q_final, p_final, copy_rows(kernel, q, 1, batch), copy_rows(kernel, p, 1, batch))], -1.0)
        with torch.enable_grad():  # a parameter-dependent Φ(0): λ = ∂_εΦ_e(T) with its q, p swapped
            initial = model.init_state(x)
        lambdas = (contrast_rows(kernel, p, batch) / denominator, contrast_rows(kernel, q, batch) / denominator)
        for p_, g in zip(params, initial_state_vjp([initial], [lambdas], params)):
            if g is not None:
                direct[id(p_)] += g
        for p_, g in kernel.grads():
            if id(p_) in direct:
                direct[id(p_)] -= g / denominator
        return {name: direct[id(p_)] / batch for name, p_ in trainable(model)}
