"""RHEL: Recurrent Hamiltonian Echo Learning in discrete time (Pourcel & Ernoult 2025).

Forward: run the Hamiltonian stack from Φ_0 over u_0..u_{N−1}, keeping only the final states Φ_N.
Echo: from the time-reversed state (q_N, −p_N), replay the inputs in reverse order; before echo
step j (which replays u_{N−1−j}) add ε g to p, where g = ∂L/∂q_{N−j} reaches the layer through
its output (the loss gradient, or for a lower layer of an HSSM the upstream gradient); along the
echo accumulate G(ε) = Σ_j ∂_θS_j with S_j the integrator's generating sum (ALGORITHMS.md §2):

    dL/dθ ≈ −[G(+ε) − G(−ε)] / 2ε      (variant="centered",  error O(ε²))
    dL/dθ ≈ −[G(+ε) − G(0)] / ε        (variant="one_sided", error O(ε))

The same rule covers every parameter of the Hamiltonian, trainable step sizes dt included.
The echoes are batched along the batch axis, so RHEL is three passes whatever the model size,
and keeps no trajectory: memory is independent of N. Input gradients dL/du_k come out of the
same contrast, −[∂_uS_j(+ε) − ∂_uS_j(−ε)]/2ε, and are chained through the per-step feedforward
maps of a stack (``mix``, ``encode``, ``decode``) by vector-Jacobian products; feedforward maps
and the decoder are evaluated at the ε = 0 copy when there is one ("one_sided", or
``check_echo=True``), else at the ε → 0 extrapolation of the ±ε copies (their mean, exact to
O(ε²)), which keeps the error O(ε²) / O(ε). A
parameter-dependent initial state is handled too: the echo ends at (q_0 + ελ_p, −p_0 + ελ_q),
λ = dL/dΦ_0, which is pulled back through ``init_states``.

With ε = 0 the echo returns to the initial state to round-off: :meth:`RHEL.echo_error`.

Check: tests/test_rhel.py — RHEL vs BPTT through the same integrator on HRUs, an HSSM and a
Hamiltonian written in the test; log-log slope ≈ 2 (centered) and ≈ 1 (one-sided).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..solvers.integrators import EchoContrast, PositionVerlet
from .base import Estimate, Learner, check_beta
from .sequence import check_hamiltonian, check_reversible, check_sequence, simulate, target_mode

__all__ = ["RHEL"]

VARIANTS = ("centered", "one_sided")


class RHEL(Learner):
    """Discrete-time RHEL; gradients equal BPTT through the same reversible integrator up to O(ε²).

    Args:
        epsilon: the echo nudge ε (non-zero). Scale it with |∂L/∂q|; 1e-3 … 1e-2 in float64.
        variant: "centered" (echoes at ±ε, O(ε²)) or "one_sided" (ε and 0, O(ε)).
        integrator: an exactly reversible step (``PositionVerlet()`` by default, the model's dt);
            a non-reversible one raises :class:`eqprop.errors.NotReversibleError`.
        cost: the per-sample cost; :class:`eqprop.costs.SquaredError` by default.
        check_echo: run one more echo copy at ε = 0 (one_sided has it already) and report its
            return error in ``info["echo_error"]``.
    """

    def __init__(self, epsilon: float, variant: str = "centered", integrator=None, cost: Cost | None = None,
                 check_echo: bool = False) -> None:
        self.epsilon = check_beta("epsilon", epsilon)
        if variant not in VARIANTS:
            raise ConfigurationError(f"Unknown RHEL variant {variant!r}; choose 'centered' or 'one_sided'.")
        self.variant = variant
        self.integrator = PositionVerlet() if integrator is None else integrator
        check_reversible(self.integrator)
        self.cost = SquaredError() if cost is None else cost
        self.check_echo = bool(check_echo)

    def __repr__(self) -> str:
        return f"RHEL(epsilon={self.epsilon}, variant={self.variant!r}, integrator={self.integrator!r}, cost={self.cost!r})"

    # -- contract ------------------------------------------------------------------------------
    def predict(self, model, x: Tensor) -> Tensor:
        """Outputs at every step, [batch, T, ...] (the last one, ``[:, -1]``, for a final-step loss)."""
        check_hamiltonian(model)
        check_sequence(model, x)
        return simulate(model, x, self.integrator, keep_outputs=True)[1]

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_hamiltonian(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        final_states, outputs = simulate(model, x, self.integrator, keep_outputs=(mode == "per_step"))
        loss = self.cost.loss(outputs, y).detach()
        eps = [self.epsilon, -self.epsilon] if self.variant == "centered" else [self.epsilon, 0.0]
        if self.check_echo and 0.0 not in eps:
            eps.append(0.0)
        grads, echo_states = self._echo(model, x, y, mode, final_states, eps)
        info = {"mode": mode, "epsilon": self.epsilon, "variant": self.variant}
        if 0.0 in eps:
            info["echo_error"] = _return_error(model, x, final_states, echo_states, eps.index(0.0), x.shape[0])
        return Estimate(grads=grads, loss=loss, prediction=outputs, info=info)

    def echo_error(self, model, x: Tensor) -> float:
        """Relative distance between the ε = 0 echo's end and the time-reversed initial state.

        max over layers of ‖Φ_echo − (q_0, −p_0)‖_∞ / max(‖Φ_N‖_∞, ‖Φ_0‖_∞); round-off (≈1e-15 ·
        √N in float64) for a reversible integrator, O(dt) or worse for a non-reversible one.
        """
        check_hamiltonian(model)
        check_sequence(model, x)
        final_states, _ = simulate(model, x, self.integrator)
        layers = model.hamiltonian_layers()
        dts = [self.integrator.step_size(layer) for layer in layers]
        states = [(q.clone(), -p) for q, p in final_states]
        ones = x.new_ones(x.shape[0])
        with torch.no_grad():
            for k in reversed(range(x.shape[1])):
                z = model.encode(x[:, k])
                for index, layer in enumerate(layers):
                    q_ref = states[index][0]
                    states[index] = self.integrator.echo_step(layer, *states[index], z, dts[index], ones,
                                                              EchoContrast([]))
                    z = model.mix(index, z, q_ref)
        return _return_error(model, x, final_states, states, 0, x.shape[0])

    # -- the echo ------------------------------------------------------------------------------
    def _echo(self, model, x: Tensor, y: Tensor, mode: str, final_states, eps_values: list[float]):
        layers = model.hamiltonian_layers()
        batch, steps, copies = x.shape[0], x.shape[1], len(eps_values)
        eps_a, eps_b = eps_values[0], eps_values[1]
        denominator = eps_a - eps_b
        eps_rows = x.new_tensor(eps_values).repeat_interleave(batch)
        weight_rows = x.new_tensor([1.0, -1.0] + [0.0] * (copies - 2)).repeat_interleave(batch)
        params = [p for p in model.parameters() if p.requires_grad]
        direct = {id(p): torch.zeros_like(p) for p in params}  # feedforward VJPs, Σ over samples
        contrasts = [EchoContrast([p for p in layer.parameters() if p.requires_grad]) for layer in layers]
        dts = [self.integrator.step_size(layer) for layer in layers]
        states = [(q.repeat(copies, *([1] * (q.dim() - 1))), (-p).repeat(copies, *([1] * (p.dim() - 1))))
                  for q, p in final_states]

        zero = eps_values.index(0.0) if 0.0 in eps_values else None

        def reference(t: Tensor) -> Tensor:  # the ε = 0 copy, or the extrapolation of copies a, b to ε = 0
            if zero is not None:
                return t[zero * batch:(zero + 1) * batch]
            a, b = t[:batch], t[batch:2 * batch]
            return (eps_b * a - eps_a * b) / (eps_b - eps_a)

        def rows(t: Tensor) -> Tensor:
            return eps_rows.reshape(-1, *([1] * (t.dim() - 1))) * t.repeat(copies, *([1] * (t.dim() - 1)))

        def accumulate(grads) -> None:
            for p, g in zip(params, grads):
                if g is not None:
                    direct[id(p)] += g

        for j in range(steps):
            k = steps - 1 - j
            with torch.enable_grad():
                q_refs = [reference(q).detach().requires_grad_(True) for q, _ in states]
                z = model.encode(x[:, k])
                z_in, z_out = [], []
                for index in range(len(layers)):
                    z_leaf = z.detach().requires_grad_(True)
                    z_in.append(z_leaf)
                    z = model.mix(index, z_leaf, q_refs[index])
                    z_out.append(z)
                delta = None
                if mode == "per_step" or j == 0:
                    top = z.detach().requires_grad_(True)
                    out = model.decode(top)
                    target = y[:, k] if mode == "per_step" else y
                    g = self.cost.grad(out.detach(), target)
                    grads = torch.autograd.grad(out, [top] + params, grad_outputs=g, allow_unused=True)
                    delta = grads[0]
                    accumulate(grads[1:])
                for index in reversed(range(len(layers))):
                    delta_direct = None
                    if delta is not None:
                        grads = torch.autograd.grad(z_out[index], [z_in[index], q_refs[index]] + params,
                                                    grad_outputs=delta, allow_unused=True)
                        delta_direct, nudge = grads[0], grads[1]
                        accumulate(grads[2:])
                        if nudge is not None:
                            q, p = states[index]
                            states[index] = (q, p + rows(nudge))
                    contrast = contrasts[index]
                    contrast.input_grad = None
                    u = z_in[index].detach()
                    with torch.no_grad():  # no graph across steps (dt is a parameter): memory independent of N
                        states[index] = self.integrator.echo_step(layers[index], *states[index],
                                                                  u.repeat(copies, *([1] * (u.dim() - 1))),
                                                                  dts[index], weight_rows, contrast)
                    delta_u = None
                    if contrast.input_grad is not None:
                        delta_u = -contrast.input_grad.reshape(copies, batch, *u.shape[1:]).sum(0) / denominator
                    parts = [d for d in (delta_direct, delta_u) if d is not None]
                    delta = sum(parts) if parts else None
                if delta is not None:
                    z0 = model.encode(x[:, k])
                    if z0.requires_grad:
                        accumulate(torch.autograd.grad(z0, params, grad_outputs=delta, allow_unused=True))

        self._initial_state_term(model, x, states, batch, denominator, params, accumulate)
        for index, contrast in enumerate(contrasts):
            for p, g in zip(contrast.params, contrast.grads):
                if g is not None:
                    direct[id(p)] -= g / denominator
        grads = {name: direct[id(p)] / batch for name, p in model.named_parameters() if p.requires_grad}
        return grads, states

    @staticmethod
    def _initial_state_term(model, x, states, batch, denominator, params, accumulate) -> None:
        """Pull λ = dL/dΦ_0 (read off the echo's end) back through a parameter-dependent init_states."""
        with torch.enable_grad():
            initial = model.init_states(x)
            outs, cotangents = [], []
            for (q0, p0), (q, p) in zip(initial, states):
                lam_p = (q[:batch] - q[batch:2 * batch]) / denominator
                lam_q = (p[:batch] - p[batch:2 * batch]) / denominator
                for t, c in ((q0, lam_q), (p0, lam_p)):
                    if t.requires_grad:
                        outs.append(t)
                        cotangents.append(c)
            if outs:
                accumulate(torch.autograd.grad(outs, params, grad_outputs=cotangents, allow_unused=True))


def _return_error(model, x, final_states, echo_states, copy: int, batch: int) -> float:
    with torch.no_grad():
        initial = model.init_states(x)
        error, scale = 0.0, 0.0
        for (q0, p0), (qn, pn), (qe, pe) in zip(initial, final_states, echo_states):
            qe, pe = qe[copy * batch:(copy + 1) * batch], pe[copy * batch:(copy + 1) * batch]
            error = max(error, float((qe - q0).abs().max()), float((pe + p0).abs().max()))
            scale = max(scale, float(qn.abs().max()), float(pn.abs().max()), float(q0.abs().max()),
                        float(p0.abs().max()))
    return error / scale if scale > 0 else error
