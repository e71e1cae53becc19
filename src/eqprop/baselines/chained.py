r"""The ff-EBM loss gradient by automatic differentiation: the baseline of chained EP.

For an :class:`eqprop.models.FFEBM` (x_k = F_k(o_{k−1}, ω_k), s_k = argmin E_k(s, θ_k, x_k)),
two ways of differentiating the same simulation:

- ``method="implicit"`` (default): backprop through every feedforward map, and through every
  energy block by the implicit function theorem at its free equilibrium (recurrent backprop;
  Almeida 1987, Pineda 1987). With the block's one-step solver map s ← f(s, θ, x) and the upstream
  per-sample error δ_k = dℓ/do_k,

      λ = Σ_t (Jᵀ)^t ∂_s⟨δ_k, o_k(s)⟩,   J = ∂f/∂s,     dℓ/d(θ_k, x_k) = λᵀ ∂f/∂(θ_k, x_k) + ∂_θ⟨δ_k, o_k⟩

  (a Neumann series of vector-Jacobian products; no matrix is formed), then δ_{k−1} = VJP of F_k.
- ``method="bptt"``: one autograd graph through every F_k and every unrolled relaxation.

The two agree to round-off once each relaxation has converged (tests/test_ff_ebm.py).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..estimators.base import Estimate, Learner, check_tol, positive_int, trainable
from ..estimators.chain import chain_free_pass, check_ffebm, check_solvers, feedforward_vjp, per_block, predict_chain
from ..estimators.defaults import default_solver
from ..solvers.relaxation import Relaxation
from .implicit import neumann_series

__all__ = ["ChainedBackprop"]


class ChainedBackprop(Learner):
    """dL/d(θ, ω) of an ff-EBM by autograd (implicit differentiation per block, or BPTT).

    Args:
        solver: relaxation of each block, one for all or a list of one per block (``None``: each
            block's default); with ``"implicit"`` its one-step map defines the Neumann series.
        cost: cost of the last block's output; :class:`eqprop.costs.SquaredError` by default.
        method: ``"implicit"`` (default) or ``"bptt"``.
        tol: relative tolerance of the Neumann series; ``max_iter`` its term limit. A series that
            does not reach ``tol`` raises :class:`eqprop.errors.ConvergenceError`.

    Check (tests/test_ff_ebm.py): ``"implicit"`` = ``"bptt"`` to 1e-9 on converged chains, and a
    one-block chain = :class:`eqprop.baselines.ImplicitDifferentiation`.
    """

    model_kinds = ("ffebm",)

    def __init__(
        self,
        solver: Relaxation | Sequence[Relaxation | None] | None = None,
        cost: Cost | None = None,
        method: str = "implicit",
        tol: float = 1e-12,
        max_iter: int = 10_000,
    ) -> None:
        if method not in ("implicit", "bptt"):
            raise ConfigurationError(f"Unknown method {method!r}; choose 'implicit' or 'bptt'.")
        check_solvers(solver, "solver")
        self.solver = solver
        self.cost = cost if cost is not None else SquaredError()
        self.method = method
        self.tol = check_tol("tol", tol, allow_none=False)
        self.max_iter = positive_int("max_iter", max_iter)

    def _solvers(self, model) -> list:
        solvers = per_block(self.solver, len(model), "solver")
        return [s if s is not None else default_solver(b) for s, b in zip(solvers, model.blocks)]

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        return predict_chain(check_ffebm(model, "ChainedBackprop"), x, self._solvers(model))

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:
        model = check_ffebm(model, "ChainedBackprop")
        if self.method == "bptt":
            return self._bptt(model, x, y)
        solvers = self._solvers(model)
        passes = chain_free_pass(model, x, solvers, "ChainedBackprop(method='implicit')")
        batch = x.shape[0]
        top = model.blocks[-1].output(passes[-1].state).detach()
        self.cost.check_target(top, y)
        with torch.enable_grad():
            out_leaf = top.clone().requires_grad_()
            loss = self.cost.loss(out_leaf, y)
            delta = torch.autograd.grad(loss * batch, out_leaf)[0]  # per-sample dℓ/do_L
        grads: dict[str, Tensor] = {}
        for k in reversed(range(len(model))):
            record = passes[k]
            block_grads, delta_x = self._implicit_block(model.blocks[k], solvers[k], record, delta)
            grads.update({f"blocks.{k}.{n}": g / batch for n, g in block_grads.items()})
            ff_grads, delta = feedforward_vjp(model, k, record, delta_x, batch)
            grads.update(ff_grads)
        return Estimate(grads=grads, loss=loss.detach(), prediction=top.detach(), info={"free": [p.status for p in passes]})

    def _implicit_block(self, block, solver: Relaxation, record, delta: Tensor):
        """(Σ_b dℓ_b/dθ, dℓ/dx per sample) of one block at its free equilibrium, given δ = dℓ/do."""
        params = trainable(block)
        with torch.enable_grad():
            leaves = tuple(s.clone().requires_grad_() for s in record.state)
            x_leaf = record.block_input.detach().requires_grad_()
            direct = (block.output(leaves) * delta).sum()
            direct_grads = torch.autograd.grad(direct, list(leaves) + [p for _, p in params], allow_unused=True)
            seed = tuple(torch.zeros_like(s) if g is None else g for s, g in zip(leaves, direct_grads))
            new = solver.step(block, x_leaf, leaves, block.prepare(x_leaf), None, None)
            new = tuple(n if n.requires_grad else n + 0 * l.sum() for n, l in zip(new, leaves))
            total = neumann_series(
                new, leaves, seed, self.tol, self.max_iter,
                "a block's fixed-point map is not contracting at its equilibrium — relax longer or use method='bptt'",
            )
            implicit = torch.autograd.grad(new, [p for _, p in params] + [x_leaf], total, allow_unused=True)
        grads = {}
        for (name, p), g_direct, g_implicit in zip(params, direct_grads[len(leaves):], implicit[:-1]):
            g = torch.zeros_like(p)
            for term in (g_direct, g_implicit):
                if term is not None:
                    g = g + term
            grads[name] = g
        delta_x = implicit[-1] if implicit[-1] is not None else torch.zeros_like(x_leaf)
        return grads, delta_x

    def _bptt(self, model, x: Tensor, y: Tensor) -> Estimate:
        params = trainable(model)
        statuses = []
        with torch.enable_grad():
            below = x
            for k, (block, solver) in enumerate(zip(model.blocks, self._solvers(model))):
                x_k = model.block_input(k, below)
                state, status = solver.solve(block, x_k, block.init_state(x_k.detach()), differentiable=True)
                statuses.append(status)
                below = block.output(state)
            self.cost.check_target(below, y)
            loss = self.cost.loss(below, y)
            grads = torch.autograd.grad(loss, [p for _, p in params], allow_unused=True)
        by_name = {n: g for (n, _), g in zip(params, grads) if g is not None}
        return Estimate(grads=by_name, loss=loss.detach(), prediction=below.detach(), info={"free": statuses})
