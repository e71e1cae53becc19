"""RHEL: Recurrent Hamiltonian Echo Learning in discrete time (Pourcel & Ernoult 2025).

Forward: run the Hamiltonian stack from Φ_0 over u_0..u_{N−1}, keeping only the final states Φ_N.
Echo: from the time-reversed state (q_N, −p_N), replay the inputs in reverse order; before echo
step j (which replays u_{N−1−j}) add ε g to p, where g = ∂L/∂q_{N−j} reaches the layer through
its output (the loss gradient, or for a lower layer of an HSSM the upstream gradient); along the
echo accumulate G(ε) = Σ_j ∂_θS_j with S_j the integrator's generating sum (docs/theory.md, "RHEL in discrete time"):

    dL/dθ ≈ −[G(+ε) − G(−ε)] / 2ε      (variant="centered",  error O(ε²))
    dL/dθ ≈ −[G(+ε) − G(0)] / ε        (variant="one_sided", error O(ε))

The same rule covers every parameter of the Hamiltonian, trainable step sizes dt included.
The echoes are batched along the batch axis, so RHEL is three passes whatever the model size,
and keeps no trajectory: memory is independent of N. Each layer steps through its *echo kernel*
(``layer.echo_kernel``, eqprop.models.echo_kernels): closed-form forces and ∂_θS_j for the
built-in HRUs, autograd for any other Hamiltonian; the feedforward maps through the model's
*stack kernel* (closed-form VJPs for the HSSM). The whole echo runs under ``torch.no_grad``.
Under exactly ``PositionVerlet`` the built-in HRUs take fused paths (docs/rhel.md, "Fast paths"):
a single HRU's whole echo in chunks (:mod:`eqprop.models.echo_kernels.fused`), each layer's step
of a stack (:mod:`eqprop.models.echo_kernels.stepper`); a subclass of PositionVerlet takes the
sub-step kernels, the reference they are tested against (tests/test_rhel_fused.py).
With ``model.pooling == "mean"`` (time-averaged output) the loss gradient reaches step k as
Σ_{i≥k} g_i/(i+1). Input gradients dL/du_k come out of the
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
tests/test_echo_kernels.py — the closed forms vs autograd; mean pooling vs BPTT.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..estimators.base import Estimate, Learner, check_beta, trainable
from ..estimators.roundoff import contrast_roundoff, warn_roundoff
from ..estimators.sequence import (check_echo_variant, check_hamiltonian, check_reversible, check_sequence,
                                   echo_return_error, initial_state_vjp, pooling, simulate, target_mode)
from ..models.echo_kernels import contrast_rows, copy_rows, echo_rows, row_epsilons
from ..models.echo_kernels.fused import fused_verlet_echo
from ..models.echo_kernels.stepper import VerletEchoStepper
from ..models.hamiltonian import HamiltonianModel
from ..models.hru import readout_jacobian
from ..solvers.integrators import PositionVerlet
from ..solvers.scan import check_chunk

__all__ = ["RHEL"]


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
        chunk: steps per chunk of the fast paths (drives and read-outs computed a chunk at a time,
            the fused echo's buffers and its contrast summed once per chunk); memory O(chunk), an
            integer ≥ 1. Both 64 and 256 keep the extra peak flat in T; the echo's buffers take
            ~0.4 MB at 64 and ~5 MB at 256 (width 32, batch 8) for the same time, except a linear
            HRU's ``predict`` (1.05× vs 0.88× a hand-written loop: 3 operations per step).

    ``info["roundoff"]`` is the estimated relative round-off of the contrast (about u·√T with the
    closed-form kernels, which carry the difference of the ± copies as a state of its own and so
    are exact in float32 at any ε; larger for the autograd kernel, which subtracts two stored
    copies); above 0.1 a :class:`eqprop.errors.PrecisionWarning` is issued.
    """

    model_kinds = ("hamiltonian",)

    def __init__(self, epsilon: float, variant: str = "centered", integrator=None, cost: Cost | None = None,
                 check_echo: bool = False, chunk: int = 64) -> None:
        self.epsilon = check_beta("epsilon", epsilon)
        self.variant = check_echo_variant("RHEL", variant)
        self.integrator = PositionVerlet() if integrator is None else integrator
        check_reversible(self.integrator)
        self.cost = SquaredError() if cost is None else cost
        self.check_echo = bool(check_echo)
        self.chunk = check_chunk(chunk)


    # -- contract ------------------------------------------------------------------------------
    def predict(self, model, x: Tensor) -> Tensor:
        """Outputs at every step, [batch, T, ...] (the last one, ``[:, -1]``, for a final-step loss)."""
        check_hamiltonian(model)
        check_sequence(model, x)
        return simulate(model, x, self.integrator, keep_outputs=True, chunk=self.chunk)[1]

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        check_hamiltonian(model)
        check_sequence(model, x)
        mode = target_mode(model, x, y, self.cost)
        final_states, outputs = simulate(model, x, self.integrator, keep_outputs=(mode == "per_step"), chunk=self.chunk)
        loss = self.cost.loss(outputs, y).detach()
        eps = [self.epsilon, -self.epsilon] if self.variant == "centered" else [self.epsilon, 0.0]
        if self.check_echo and 0.0 not in eps:
            eps.append(0.0)
        kernels, stack, echo_states = self._echo(model, x, y, outputs, mode, final_states, eps)
        grads = self._collect(model, x, kernels, stack, echo_states, eps[0] - eps[1])
        info = {"mode": mode, "epsilon": self.epsilon, "variant": self.variant,
                "roundoff": _roundoff(kernels, final_states, outputs, y, mode, self.cost, eps[0] - eps[1], x)}
        warn_roundoff(info["roundoff"], "RHEL", "epsilon", self.epsilon, x.dtype, "float64", stacklevel=2)
        if 0.0 in eps:
            info["echo_error"] = _return_error(model, x, kernels, final_states, echo_states, _zero_copy(eps))
        return Estimate(grads=grads, loss=loss, prediction=outputs, info=info)

    def echo_error(self, model, x: Tensor) -> float:
        """Relative distance between the ε = 0 echo's end and the time-reversed initial state.

        max over layers of ‖Φ_echo − (q_0, −p_0)‖_∞ / max(‖Φ_N‖_∞, ‖Φ_0‖_∞); round-off (≈1e-15 ·
        √N in float64) for a reversible integrator, O(dt) or worse for a non-reversible one.
        """
        check_hamiltonian(model)
        check_sequence(model, x)
        final_states, _ = simulate(model, x, self.integrator, chunk=self.chunk)
        kernels, _, states = self._echo(model, x, None, None, None, final_states, [0.0, 0.0])
        return _return_error(model, x, kernels, final_states, states, 1)

    # -- the echo ------------------------------------------------------------------------------
    def _echo(self, model, x: Tensor, y, outputs, mode, final_states, eps_values: list[float]):
        """Run the batched echo copies (ε = eps_values[c]) in reverse time through echo kernels.

        ``mode`` None: no nudge at all (the self-check). Returns the layers' echo kernels (their
        contrasts Σ_c w_c ∂_θS_c), the stack kernel (feedforward VJPs) and the final echo states.
        """
        integrator, cost = self.integrator, self.cost
        layers = model.hamiltonian_layers()
        batch, steps, copies, n_layers = x.shape[0], x.shape[1], len(eps_values), len(layers)
        eps_a, eps_b = eps_values[0], eps_values[1]
        scale = -1.0 / (eps_a - eps_b) if eps_a != eps_b else 0.0
        zero = _zero_copy(eps_values)
        kernels = [layer.echo_kernel(integrator.step_size(layer), batch, copies) for layer in layers]
        stack = model.stack_kernel()
        # the nudge ε_c g per row block, in each kernel's row layout (the difference block gets ε_a − ε_b)
        eps_cols = [x.new_tensor(row_epsilons(kernel, eps_values)) for kernel in kernels]
        states = [(echo_rows(kernel, q, copies), echo_rows(kernel, -p, copies))
                  for kernel, (q, p) in zip(kernels, final_states)]
        toward_zero = eps_b / (eps_b - eps_a) if eps_a != eps_b else 0.0
        mean = pooling(model) == "mean"
        upstream = None  # mean pooling: dL/do_k = Σ_{i ≥ k} g_i / (i + 1), accumulated in reverse time
        if mode == "final":
            g_final = cost.grad(outputs, y)
            if mean:
                upstream = g_final / steps
        if not mean and self._fusable(model, kernels, copies, mode):
            fused, stack = self._fused_echo(model, x, y, outputs, mode, kernels[0], stack, states[0], eps_cols[0],
                                            g_final if mode == "final" else None, toward_zero, zero)
            return kernels, stack, fused
        steppers = [self._stepper(kernel, q) for kernel, (q, _) in zip(kernels, states)]
        eps_views = [e.reshape(copies, *([1] * q.dim())) for e, (q, _) in zip(eps_cols, states)]
        with torch.no_grad():  # no graph across steps (dt is a parameter): memory independent of N
            for j in range(steps):
                k = steps - 1 - j
                g = None
                if mode == "per_step":
                    g = cost.grad(outputs[:, k], y[:, k])
                    if mean:
                        upstream = g / (k + 1) if upstream is None else upstream.add_(g, alpha=1.0 / (k + 1))
                        g = upstream
                elif mode == "final":
                    g = upstream if mean else (g_final if j == 0 else None)
                # the top map feeds only the decoder: without a loss gradient at this step it is not needed
                mixed = n_layers if g is not None else n_layers - 1
                if zero is not None:
                    q_refs = [q[zero * batch:(zero + 1) * batch] for q, _ in states[:mixed]]
                else:  # the extrapolation of copies a, b to ε = 0 (their mean when centered)
                    q_refs = [torch.add(q[batch:2 * batch], contrast_rows(kernel, q, batch), alpha=toward_zero)
                              for kernel, (q, _) in zip(kernels[:mixed], states[:mixed])]
                x_k = x[:, k]
                z = stack.encode(x_k)
                z_in = []
                for index in range(n_layers):
                    z_in.append(z)
                    if index < mixed:
                        z = stack.mix(index, z, q_refs[index])
                delta = stack.decode_vjp(z, g) if g is not None else None
                for index in reversed(range(n_layers)):
                    q, p = states[index]
                    delta_direct = None
                    if delta is not None:
                        delta_direct, nudge = stack.mix_vjp(index, delta)
                        if nudge is not None:  # out of place: a stepper's state is a view of its buffers
                            p = torch.addcmul(p.view(copies, batch, *p.shape[1:]),
                                              eps_views[index], nudge).view_as(p)
                    kernel = kernels[index]
                    kernel.input_grad = None
                    if steppers[index] is not None:
                        states[index] = steppers[index].step(q, p, z_in[index])
                    else:
                        states[index] = integrator.echo(kernel, q, p, z_in[index])
                    delta_u = kernel.input_grad
                    if delta_u is not None:
                        delta_u = delta_u * scale
                        delta = delta_u if delta_direct is None else delta_u.add_(delta_direct)
                    else:
                        delta = delta_direct
                if delta is not None:
                    stack.encode_vjp(x_k, delta)
        for stepper in steppers:
            if stepper is not None:
                stepper.finish()
        return kernels, stack, states

    def _fusable(self, model, kernels, copies: int, mode) -> bool:
        """The fused echo (eqprop.models.echo_kernels.fused) applies: one built-in HRU whose input
        reaches it unchanged, two copies in the difference layout, exactly PositionVerlet; for a loss
        at every step, an affine read-out (its Jacobian gives every step's nudge a chunk at a time)."""
        return (type(self.integrator) is PositionVerlet and copies == 2 and len(kernels) == 1
                and model.hamiltonian_layers() == [model] and type(model).encode is HamiltonianModel.encode
                and type(model).decode is HamiltonianModel.decode and type(model).mix is HamiltonianModel.mix
                and getattr(kernels[0], "fused", False)
                and (mode != "per_step" or readout_jacobian(model) is not None))

    def _stepper(self, kernel, q: Tensor):
        """A fused step (eqprop.models.echo_kernels.stepper) for a built-in HRU kernel with two
        copies under exactly PositionVerlet, else None (the kernel's sub-steps)."""
        if type(self.integrator) is not PositionVerlet or not getattr(kernel, "fused", False) or kernel.copies != 2:
            return None
        return VerletEchoStepper(kernel, q.shape[-1], kernel.weight.shape[1], q, self.chunk)

    def _fused_echo(self, model, x, y, outputs, mode, kernel, stack, state, eps_col, g_final, toward_zero, zero):
        """The echo of a single HRU in fused chunks. A final-step loss nudges p once, at the start;
        a per-step loss before every step, by (ε_c rows) · ∂C/∂o_k · ∂o/∂q, the read-out's
        parameter gradients summed in closed form a chunk at a time at the ε → 0 positions (as the
        step-by-step echo reads them). Returns the final states and the stack kernel to collect from."""
        q, p = state
        batch, copies, steps = x.shape[0], 2, x.shape[1]
        if mode == "final":
            z = stack.mix(0, stack.encode(x[:, -1]), q[batch:2 * batch])
            delta = stack.decode_vjp(z, g_final)
            if delta is not None:
                _, nudge = stack.mix_vjp(0, delta)
                if nudge is not None:
                    p.view(copies, batch, *p.shape[1:]).addcmul_(eps_col.reshape(copies, *([1] * p.dim())), nudge)
        if mode != "per_step":
            return [fused_verlet_echo(kernel, q, p, x, self.chunk)], stack
        jacobian = readout_jacobian(model)  # identity or the nn.Linear's weight (the _fusable gate)
        readout = model.readout
        cost, loss_grads = self.cost, {}
        scales = eps_col.reshape(1, copies, 1, 1)
        sums = [] if readout is None else [(t, torch.zeros_like(t)) for t in (readout.weight, readout.bias)
                                            if t is not None]

        def nudges(start: int, count: int) -> Tensor:
            where = slice(steps - start - count, steps - start)  # echo step j reads the loss at k = T − 1 − j
            g = cost.grad(outputs[:, where], y[:, where]).flip(1).transpose(0, 1)  # [K, B, out]
            loss_grads[start] = g
            return (scales * torch.matmul(g, jacobian).unsqueeze(1)).reshape(count, copies * batch, -1)

        def on_chunk(start: int, count: int, positions: Tensor) -> None:
            """The read-out's gradient, Σ_k g_kᵀ q_k and Σ_k g_k at the ε → 0 positions q_k."""
            g = loss_grads.pop(start).reshape(count * batch, -1)
            if not sums:
                return
            rows = positions.reshape(count, copies, batch, -1)
            reference = rows[:, zero] if zero is not None else torch.add(rows[:, 1], rows[:, 0], alpha=toward_zero)
            sums[0][1].addmm_(g.t(), reference.reshape(count * batch, -1))
            if len(sums) > 1:
                sums[1][1].add_(g.sum(0))

        states = [fused_verlet_echo(kernel, q, p, x, self.chunk, nudges, on_chunk)]
        return states, _WithGrads(stack, sums)

    def _collect(self, model, x, kernels, stack, states, denominator: float) -> dict[str, Tensor]:
        """dL/dθ = feedforward VJPs − (contrast of the Hamiltonian layers)/(ε_a − ε_b), batch mean."""
        batch = x.shape[0]
        params = [p for _, p in trainable(model)]
        direct = {id(p): torch.zeros_like(p) for p in params}
        for p, g in stack.grads():
            if id(p) in direct:
                direct[id(p)] += g
        for kernel in kernels:
            for p, g in kernel.grads():
                if id(p) in direct:
                    direct[id(p)] -= g / denominator
        # a parameter-dependent init_states: the echo ends at (q_0 + ελ_p, −p_0 + ελ_q), λ = dL/dΦ_0
        with torch.enable_grad():
            initial = model.init_states(x)
        lambdas = [(contrast_rows(kernel, p, batch) / denominator, contrast_rows(kernel, q, batch) / denominator)
                   for kernel, (q, p) in zip(kernels, states)]
        for p, g in zip(params, initial_state_vjp(initial, lambdas, params)):
            if g is not None:
                direct[id(p)] += g
        return {name: direct[id(p)] / batch for name, p in trainable(model)}


class _WithGrads:
    """A stack kernel whose gradients also include sums formed outside it (the fused echo's read-out)."""

    def __init__(self, stack, extra: list[tuple[Tensor, Tensor]]) -> None:
        self.stack, self.extra = stack, extra

    def grads(self) -> list[tuple[Tensor, Tensor]]:
        return list(self.stack.grads()) + self.extra


def _roundoff(kernels, final_states, outputs, y, mode, cost, denominator: float, x: Tensor) -> float:
    """Estimated relative round-off of the contrast (:func:`eqprop.estimators.roundoff.contrast_roundoff`):
    u·√T for kernels that carry the difference of the copies as their own state (the closed forms),
    u·√T·|Φ_N|/(|ε_a − ε_b|·|∂L/∂o|) for one that subtracts two stored copies (autograd)."""
    if all(getattr(k, "difference", False) for k in kernels):
        return contrast_roundoff(x.dtype, x.shape[1])
    with torch.no_grad():
        last = outputs if mode == "final" else outputs[:, -1]
        target = y if mode == "final" else y[:, -1]
        g = float(cost.grad(last, target).abs().max())
        scale = max(float(t.abs().max()) for state in final_states for t in state)
    return contrast_roundoff(x.dtype, x.shape[1], subtracted=True, scale=scale, denominator=denominator, gradient=g)


def _zero_copy(eps_values: list[float]) -> int | None:
    """The last echo copy at ε = 0 (never copy 0, which a difference layout does not store), or None."""
    return len(eps_values) - 1 - eps_values[::-1].index(0.0) if 0.0 in eps_values else None


def _return_error(model, x, kernels, final_states, echo_states, copy: int) -> float:
    """The ε = 0 echo copy ``copy`` against the start (q_0, −p_0) of every layer."""
    batch = x.shape[0]
    with torch.no_grad():
        initial = model.init_states(x)
    return echo_return_error([(q0, p0, qn, pn, copy_rows(k, qe, copy, batch), copy_rows(k, pe, copy, batch))
                              for k, (q0, p0), (qn, pn), (qe, pe) in zip(kernels, initial, final_states, echo_states)],
                             -1.0)
