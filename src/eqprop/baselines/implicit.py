"""Implicit differentiation (recurrent backpropagation) at the free equilibrium.

At a fixed point s* = f(s*, θ) of the solver's map, the implicit function theorem gives

    dL/dθ = λᵀ ∂f/∂θ,   λ = (I − ∂f/∂s)⁻ᵀ ∂C/∂s     (Almeida 1987; Pineda 1987)

and, for a smooth energy at a minimum (∂_sE = 0),

    dL/dθ = −∂²_{θs}E · λ,   ∂²_{ss}E λ = ∂C/∂s.

``method="neumann"`` solves the first with the series λ = Σ_t (Jᵀ)^t ∂C/∂s (vector-Jacobian
products through one solver step; works with the box constraints of hard-sigmoid units);
``method="cg"`` solves the second by conjugate gradient with Hessian-vector products of the
energy (needs a smooth energy with a positive-definite Hessian). No dense matrix is formed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError, ConvergenceError
from ..estimators.base import Estimate, check_tol, positive_int, trainable
from ..estimators.energy_based import EnergyLearner
from ..solvers.relaxation import Relaxation

__all__ = ["ImplicitDifferentiation", "neumann_series"]


class ImplicitDifferentiation(EnergyLearner):
    """dL/dθ at the free equilibrium by the implicit function theorem, matrix-free.

    Args:
        solver: relaxation of the free phase (``None``: the model's default); its one-step map
            is the fixed-point map of the Neumann series.
        cost: the cost of the loss.
        method: ``"neumann"`` (default) or ``"cg"``.
        tol: relative tolerance of the linear solve; ``max_iter`` its iteration limit. A solve
            that does not reach ``tol`` raises :class:`eqprop.errors.ConvergenceError`.

    Check (tests/test_ep.py): equal to BPTT once the relaxation has converged (float64).
    """

    def __init__(
        self,
        solver: Relaxation | None = None,
        cost: Cost | None = None,
        method: str = "neumann",
        tol: float = 1e-12,
        max_iter: int = 10_000,
    ) -> None:
        super().__init__(solver, cost)
        if method not in ("neumann", "cg"):
            raise ConfigurationError(f"Unknown method {method!r}; choose 'neumann' or 'cg'.")
        self.method = method
        self.tol = check_tol("tol", tol, allow_none=False)
        self.max_iter = positive_int("max_iter", max_iter)

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        _, state, status, out = self.free_equilibrium(model, x, y)
        params = dict(trainable(model))
        with torch.enable_grad():
            leaves = tuple(s.clone().requires_grad_() for s in state)
            out_leaf = model.output(leaves)
            loss = self.cost.loss(out_leaf, y)
            direct = torch.autograd.grad(loss, list(leaves) + list(params.values()), allow_unused=True)
        dc_ds = tuple(torch.zeros_like(s) if g is None else g for s, g in zip(state, direct[: len(state)]))
        direct_theta = direct[len(state):]
        if self.method == "neumann":
            implicit = self._neumann(model, x, state, dc_ds, params)
        else:
            implicit = self._cg(model, x, state, dc_ds, params)
        grads = {}
        for (name, p), g_direct, g_implicit in zip(params.items(), direct_theta, implicit):
            g = torch.zeros_like(p)
            if g_direct is not None:
                g = g + g_direct
            if g_implicit is not None:
                g = g + g_implicit
            grads[name] = g
        return Estimate(grads=grads, loss=loss.detach(), prediction=out.detach(), info={"free": status})

    def _neumann(self, model, x, state, dc_ds, params):
        solver = self.solver_for(model)
        with torch.enable_grad():
            leaves = tuple(s.clone().requires_grad_() for s in state)
            new = solver.step(model, x, leaves, model.prepare(x), None, None)
            new = tuple(n if n.requires_grad else n + 0 * l.sum() for n, l in zip(new, leaves))
            total = neumann_series(
                new, leaves, dc_ds, self.tol, self.max_iter,
                "the fixed-point map is not contracting at this state — use method='cg' or relax longer",
            )
            return torch.autograd.grad(new, list(params.values()), tuple(total), allow_unused=True)

    def _cg(self, model, x, state, dc_ds, params):
        context = model.prepare(x)
        with torch.enable_grad():
            leaves = tuple(s.clone().requires_grad_() for s in state)
            grad_s = model.energy_grad(leaves, x, context, create_graph=True)

            def hvp(v):
                out = torch.autograd.grad(grad_s, leaves, v, retain_graph=True, allow_unused=True)
                return tuple(torch.zeros_like(s) if g is None else g for s, g in zip(state, out))

            lam = tuple(torch.zeros_like(s) for s in state)
            r = tuple(b.clone() for b in dc_ds)
            p = tuple(t.clone() for t in r)
            rr = _dot(r, r)
            norm0 = math.sqrt(rr)
            for _ in range(self.max_iter):
                if math.sqrt(rr) <= self.tol * max(norm0, 1e-300):
                    break
                hp = hvp(p)
                curvature = _dot(p, hp)
                if curvature <= 0:
                    raise ConvergenceError(
                        "The energy Hessian is not positive definite at the equilibrium; use method='neumann'."
                    )
                alpha = rr / curvature
                lam = tuple(l + alpha * q for l, q in zip(lam, p))
                r = tuple(a - alpha * b for a, b in zip(r, hp))
                rr_new = _dot(r, r)
                p = tuple(a + (rr_new / rr) * b for a, b in zip(r, p))
                rr = rr_new
            else:
                raise ConvergenceError(
                    f"Conjugate gradient did not converge in {self.max_iter} iterations (residual {math.sqrt(rr):.2e})."
                )
            mixed = torch.autograd.grad(grad_s, list(params.values()), lam, allow_unused=True)
        return tuple(None if g is None else -g for g in mixed)


def neumann_series(new, leaves, seed, tol: float, max_iter: int, hint: str) -> tuple[Tensor, ...]:
    """λ = Σ_t (Jᵀ)^t seed with J = ∂new/∂leaves, by vector-Jacobian products (graph kept).

    Stops when a term falls below ``tol`` relative to ``seed``; otherwise raises
    :class:`ConvergenceError` with the last term and ``hint`` (what to do instead).
    """
    term, total = seed, [s.clone() for s in seed]
    norm0 = _norm(seed)
    for _ in range(max_iter):
        term = torch.autograd.grad(new, leaves, term, retain_graph=True, allow_unused=True)
        term = tuple(torch.zeros_like(s) if g is None else g for s, g in zip(leaves, term))
        total = [t + g for t, g in zip(total, term)]
        if _norm(term) <= tol * max(norm0, 1e-300):
            return tuple(total)
    raise ConvergenceError(
        f"The Neumann series did not converge in {max_iter} terms (last term {_norm(term):.2e}); {hint}."
    )


def _dot(a, b) -> float:
    return float(sum((u * v).sum() for u, v in zip(a, b)))


def _norm(a) -> float:
    return math.sqrt(_dot(a, a))
