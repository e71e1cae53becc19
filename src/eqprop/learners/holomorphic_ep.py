r"""Holomorphic equilibrium propagation: the exact gradient from N complex nudges.

Laborieux & Zenke (2022), "Holomorphic Equilibrium Propagation Computes Exact Gradients Through
Finite Size Oscillations". With F(s, β) = E(s, θ, x) + β C(output(s), y) complex-analytic in s
(and in β), the nudged equilibria s^β are analytic in β near 0, and so is
f(β) = ∂_θF(s^β, β). With N nudges on a circle, β_k = |β| e^{2πik/N}, k = 0..N−1,

    ĝ = Re[(1/N) Σ_k ∂_θF(s^{β_k}, β_k) / β_k] = f'(0) + O(|β|^N) = dL/dθ + O(|β|^N),

since (1/N) Σ_k β_k^{m−1} vanishes unless m ≡ 1 (mod N) (the discrete Cauchy formula). N = 2 is
centered EP exactly. |β| must lie inside the radius where s^β is analytic in β: measured on a
5-4-3 tanh net (docs/holomorphic_ep.md), |β| = 0.1 gives 8.1e-3 / 1.8e-4 / 8.8e-6 for N = 2 / 4 / 6,
while |β| = 0.5 does not converge in N — choose |β| by a sweep.

The complex relaxations run the model's own solver on complex copies of the parameters
(``torch.func.functional_call``; nn.Linear refuses complex inputs with real weights), all N
phases in one batch; ∂_θF is taken along the real parameter axis. A model whose energy is not
complex-analytic (hard-sigmoid units, abs, clamp, comparisons, ``.real``) is refused with
:class:`eqprop.errors.NotHolomorphicError`: by the activations' ``holomorphic`` flag and by a
numerical Cauchy–Riemann probe of E along a real and an imaginary direction.

Check: tests/test_holomorphic_ep.py (error vs implicit differentiation falls like |β|^N in N;
N = 2 equals centered EP; refusals).
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..costs import Cost
from ..errors import ConfigurationError, EqpropError, NotHolomorphicError
from ..estimators.base import Estimate, check_beta
from ..estimators.energy_based import EnergyLearner, concat_states, repeat_batch, split_state
from ..estimators.functional import call_with_parameters
from ..solvers.relaxation import Nudge, Relaxation

__all__ = ["HolomorphicEP", "check_holomorphic", "complex_call"]

_COMPLEX = {torch.float64: torch.complex128, torch.float32: torch.complex64}


def complex_call(model: nn.Module, fn: Callable[[nn.Module], Any], params: dict[str, Tensor] | None = None):
    """Run ``fn(model)`` with every parameter replaced by a complex copy (or by ``params``)."""
    if params is None:
        params = complex_parameters(model)
    return call_with_parameters(model, params, fn)


def complex_dtype(dtype: torch.dtype, what: str) -> torch.dtype:
    """complex64 / complex128 for float32 / float64; any other dtype is refused in one sentence."""
    if dtype not in _COMPLEX:
        raise ConfigurationError(
            f"Holomorphic EP runs in complex64/complex128; {what} is {dtype} — use float32 or float64."
        )
    return _COMPLEX[dtype]


def complex_parameters(model: nn.Module, requires_grad: bool = False) -> dict[str, Tensor]:
    return {
        name: p.detach().to(complex_dtype(p.dtype, f"parameter {name}")).requires_grad_(requires_grad and p.requires_grad)
        for name, p in model.named_parameters()
    }


def check_holomorphic(model: nn.Module, state, x: Tensor, seed: int = 0) -> None:
    """Raise :class:`NotHolomorphicError` unless E(s, x) is complex-analytic in s near ``state``.

    Declared: every activation's ``holomorphic`` flag. Measured: with central differences along a
    random real direction v and along i·v, the Cauchy–Riemann equations D_{iv}E = i·D_vE and
    D²_{iv}E = −D²_vE (the second order matters: at an equilibrium D_vE = 0), to a relative 1e-3
    in float64 (h = 1e-4: truncation O(h²) ≈ 1e-8, round-off ≈ 1e-8) and 3e-2 in float32 (h = 3e-2);
    above it, the probe is repeated at h/10: truncation error (large near a singularity such as
    tanh's saturation) falls 100-fold, a real violation stays.
    An energy that fails on complex input (clamp, comparisons) or returns a real value (abs, .real)
    is refused too.
    """
    name = type(model).__name__
    for k, activation in enumerate(getattr(model, "activations", ()) or ()):
        if not getattr(activation, "holomorphic", False):
            raise NotHolomorphicError(
                f"{name} layer {k} uses the {activation.name!r} activation, which is not complex-analytic; "
                "holomorphic EP needs smooth analytic units such as 'tanh' or 'sigmoid'."
            )
    real = state[0].dtype
    cdtype = complex_dtype(real, "the state")
    h, tol = (1e-4, 1e-3) if real == torch.float64 else (3e-2, 3e-2)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    direction = tuple(torch.randn(s.shape, generator=gen, dtype=real).to(s.device) for s in state)
    cx = x.to(cdtype) if x.is_floating_point() else x
    base = tuple(s.detach().to(cdtype) for s in state)

    def energy_at(step: complex):
        return complex_call(model, lambda m: m.energy(tuple(b + step * d for b, d in zip(base, direction)), cx))

    def mismatch(h: float) -> float:
        values = [energy_at(step) for step in (h, -h, 1j * h, -1j * h, 0.0)]
        if not all(v.is_complex() for v in values):
            raise NotHolomorphicError(
                f"{name}.energy returns a real value for a complex state (abs, .real or a norm?), so it is not "
                "complex-analytic; holomorphic EP cannot use it."
            )
        d_real, d_imag = (values[0] - values[1]) / (2 * h), (values[2] - values[3]) / (2 * h)
        dd_real = (values[0] + values[1] - 2 * values[4]) / h**2
        dd_imag = (values[2] + values[3] - 2 * values[4]) / h**2
        error = (d_imag - 1j * d_real).abs() + (dd_imag + dd_real).abs()
        scale = d_real.abs() + d_imag.abs() + dd_real.abs() + dd_imag.abs() + 1e-8 * (1 + values[4].abs())
        return float((error / scale).max())

    try:
        with torch.no_grad():
            worst = mismatch(h)
            if worst > tol:  # truncation (near a singularity) falls like h²; a violation does not
                finer = mismatch(h / 10)
                worst = finer if finer > 0.1 * worst else 0.0
    except (RuntimeError, TypeError, NotImplementedError) as error:
        raise NotHolomorphicError(
            f"{name}.energy fails on complex states ({str(error).splitlines()[0]}); holomorphic EP needs an "
            "energy written with complex-analytic operations (no clamp, abs, comparisons or .real)."
        ) from error
    if worst > tol:
        raise NotHolomorphicError(
            f"{name}.energy violates the Cauchy–Riemann equations in the state (relative mismatch {worst:.2e}); "
            "it is not complex-analytic (abs, clamp, conj or .real inside?), so holomorphic EP would be wrong."
        )


class HolomorphicEP(EnergyLearner):
    r"""Holomorphic EP: ĝ = Re[(1/N) Σ_k ∂_θF(s^{β_k}, β_k) / β_k],  β_k = |β| e^{2πik/N}; see the module doc.

    Args:
        beta: the radius |β| of the nudges (a real, non-zero number); pick it by a sweep.
        points: N ≥ 2, the number of nudges; the bias is O(|β|^N) (N = 2: centered EP).
        solver: relaxation run in complex arithmetic (``None``: the model's default).
        cost: a cost written with complex-analytic operations (squared error, the default).
        check: probe the energy for complex analyticity at each call (a few energy evaluations).
    """

    def __init__(
        self,
        beta: float,
        points: int = 4,
        solver: Relaxation | None = None,
        cost: Cost | None = None,
        check: bool = True,
    ) -> None:
        super().__init__(solver, cost)
        self.beta = abs(check_beta("beta", beta))
        if isinstance(points, bool) or not isinstance(points, int) or points < 2:
            raise ConfigurationError(
                f"points must be an integer N ≥ 2 (N = 2 is centered EP), got {points!r}."
            )
        self.points = points
        self.check = bool(check)

    def nudges(self) -> list[complex]:
        """β_k = |β| e^{2πik/N}, k = 0..N−1."""
        return [self.beta * complex(math.cos(2 * math.pi * k / self.points), math.sin(2 * math.pi * k / self.points))
                for k in range(self.points)]

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        if getattr(model, "binary", False):
            raise NotHolomorphicError(
                f"{type(model).__name__} uses binary weights α·sign(W), which are not complex-analytic; "
                "train it with EP, contrastive or coupled learning instead of holomorphic EP."
            )
        context, free, free_status, out = self.free_equilibrium(model, x, y)
        loss = self.cost.loss(out, y).detach()
        if self.check:
            check_holomorphic(model, free, x)
        cdtype = complex_dtype(free[0].dtype, "the state")
        n, batch = self.points, x.shape[0]
        betas = torch.tensor(self.nudges(), dtype=cdtype, device=x.device).repeat_interleave(batch)
        xs = repeat_batch(x, n)
        xs = xs.to(cdtype) if xs.is_floating_point() else xs
        ys = repeat_batch(y, n)
        start = tuple(s.to(cdtype) for s in concat_states([free] * n))
        params = complex_parameters(model, requires_grad=True)
        solver = self.solver_for(model)

        def relax_and_contrast(m):
            state, status = solver.solve(m, xs, start, nudge=Nudge(self.cost, ys, betas))
            state = tuple(s.detach() for s in state)
            with torch.enable_grad():
                total = m.energy(state, xs) + betas * self.cost(m.output(state), ys)
                objective = (total / (betas * n * batch)).sum().real
                trainable = [p for p in params.values() if p.requires_grad]
                grads = torch.autograd.grad(objective, trainable, allow_unused=True)
            return state, status, grads

        try:
            state, status, grads = complex_call(model, relax_and_contrast, params)
        except (RuntimeError, TypeError, NotImplementedError) as error:
            if isinstance(error, EqpropError):  # e.g. a ConvergenceError of the solver: not a complex failure
                raise
            raise NotHolomorphicError(
                f"The complex relaxation failed ({str(error).splitlines()[0]}); the energy or the cost "
                f"{self.cost!r} is not written with complex-analytic operations (CrossEntropy's softmax is not)."
            ) from error
        names = [name for name, p in params.items() if p.requires_grad]
        estimate = {name: g.real.detach() for name, g in zip(names, grads) if g is not None}
        info: dict[str, Any] = {
            "free": free_status,
            "nudged": status,
            "nudges": self.nudges(),
            "nudged_states": split_state(state, n),
        }
        return Estimate(grads=estimate, loss=loss, prediction=out.detach(), info=info)
