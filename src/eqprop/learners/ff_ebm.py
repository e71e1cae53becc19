r"""Chained equilibrium propagation for feedforward-tied EBMs (Nest & Ernoult 2024).

"Towards training digitally-tied analog blocks via hybrid gradient computation": in an ff-EBM
(:class:`eqprop.models.FFEBM`, x_k = F_k(o_{k−1}, ω_k), s_k = argmin E_k(s, θ_k, x_k)) the loss
gradient is obtained by *eq-propagating* through each energy block and *backpropagating* through
each feedforward map, top block first:

1. free pass: relax every block in turn, keeping the autograd graph of each F_k only;
2. the top block L is nudged by ±β C(o_L, y) (β C per sample), relaxed from its free state;
3. for each block k, from the top:

       g_{θ_k} = [∂_θE_k(s_k^{+β}) − ∂_θE_k(s_k^{−β})] / 2β              (batch mean)
       δx_k   = [∂_xE_k(s_k^{+β}) − ∂_xE_k(s_k^{−β})] / 2β  ≈ dℓ/dx_k     (per sample)

   then the vector-Jacobian product of F_k with δx_k gives g_{ω_k} and δ_{k−1} ≈ dℓ/do_{k−1},
   and block k−1 is nudged by ±β ⟨δ_{k−1}, o_{k−1}(s)⟩ (the :class:`LinearCost`), relaxed from
   its free state.

Why centered (±β) nudging: each δ_{k−1} carries the bias of every block above it, and that bias
enters the next nudge, so errors compound down the chain; with one-sided nudges each block adds
an O(β) error, with centered nudges O(β²). Both ± phases of a block are relaxed as one batch of
2B; F_k and its input drive are computed once, in the free pass.

This module knows models only through ``FFEBM`` (its blocks and feedforward maps) and the
energy-model contract (``energy``, ``output``, ``prepare``, ``init_state``).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError, ShapeError
from ..estimators.base import Estimate, Learner, check_beta, trainable
from ..estimators.chain import chain_free_pass, check_ffebm, check_solvers, feedforward_vjp, per_block, predict_chain
from ..estimators.defaults import default_solver
from ..estimators.energy_based import concat_states, repeat_batch
from ..models.ff_ebm import FFEBM
from ..solvers.relaxation import Nudge, Relaxation

__all__ = ["ChainedEP", "LinearCost"]


class LinearCost(Cost):
    """C(o, δ) = ⟨δ, o⟩ per sample: the nudge β⟨δ, o⟩ that carries dℓ/do into a lower block.

    The "target" is the error signal δ, shaped like the output. ∂C/∂o = δ.
    """

    def __call__(self, output: Tensor, target: Tensor) -> Tensor:
        return (output * target.to(output.dtype)).sum(dim=-1)

    def grad(self, output: Tensor, target: Tensor) -> Tensor:
        return target if target.dtype == output.dtype else target.to(output.dtype)

    def check_target(self, output: Tensor, target: Tensor) -> None:
        if target.shape != output.shape:
            raise ShapeError(f"LinearCost needs δ shaped like the output {tuple(output.shape)}, got {tuple(target.shape)}.")


class ChainedEP(Learner):
    r"""Chained (centered) equilibrium propagation through an ff-EBM (Nest & Ernoult 2024).

    Per block k, from the top, with s_k^{±β} relaxed from the free state s_k under the nudge
    ±β C(o_L, y) (top block) or ±β ⟨δ_k, o_k⟩ with δ_k ≈ dℓ/do_k (the blocks below):

        g_{θ_k} = [∂_θE_k(s_k^{+β}) − ∂_θE_k(s_k^{−β})] / 2β
        δx_k   = [∂_xE_k(s_k^{+β}) − ∂_xE_k(s_k^{−β})] / 2β,    (g_{ω_k}, δ_{k−1}) = VJP of F_k with δx_k

    (plus the mean of ∂_θC(o(s^{±β})) where a block's output has parameters). With one block and
    an identity F it is centered EP exactly. Bias against dL/d(θ, ω): O(β²), the constant growing
    with depth (errors compound down the chain, hence the centered nudges).

    Check (tests/test_ff_ebm.py): float64, against :class:`eqprop.baselines.ChainedBackprop`
    (implicit differentiation per block, and BPTT through every relaxation) on 2- and 3-block
    chains: log-log slope of the error in β ≈ 2; one block = ``EP(variant="centered")`` to round-off.

    Args:
        beta: nudging strength, non-zero (the sign is irrelevant: both ±|β| are used).
        solver: relaxation of the free phase, one for all blocks or a list of one per block
            (``None``: each block's default).
        nudged_solver: relaxation of the nudged phases, likewise (``None``: ``solver``).
        cost: cost of the last block's output; :class:`eqprop.costs.SquaredError` by default.
        variant: ``"centered"`` (default; phases ±β) or ``"positive"`` (phases +β and the free
            state, one relaxation per block, bias O(β) — kept to show why centering matters).
    """

    model_kinds = ("ffebm",)

    def __init__(
        self,
        beta: float,
        solver: Relaxation | Sequence[Relaxation | None] | None = None,
        nudged_solver: Relaxation | Sequence[Relaxation | None] | None = None,
        cost: Cost | None = None,
        variant: str = "centered",
    ) -> None:
        if variant not in ("centered", "positive"):
            raise ConfigurationError(f"Unknown ChainedEP variant {variant!r}; choose 'centered' (O(β²)) or 'positive' (O(β)).")
        check_solvers(solver, "solver")
        check_solvers(nudged_solver, "nudged_solver")
        self.variant = variant
        self.beta = abs(check_beta("beta", beta))
        self.solver = solver
        self.nudged_solver = nudged_solver
        self.cost = cost if cost is not None else SquaredError()

    def _solvers(self, model: FFEBM) -> tuple[list, list]:
        n = len(model)
        free = per_block(self.solver, n, "solver")
        nudged = per_block(self.nudged_solver, n, "nudged_solver") if self.nudged_solver is not None else free
        return free, nudged

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        return predict_chain(check_ffebm(model, "ChainedEP"), x, self._solvers(model)[0])

    def phases(self) -> tuple[float, float]:
        """(β₂, β₁) of the two phases: (+β, −β) centered, (+β, 0) positive (the free state)."""
        return (self.beta, -self.beta) if self.variant == "centered" else (self.beta, 0.0)

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:
        model = check_ffebm(model, "ChainedEP")
        free_solvers, nudged_solvers = self._solvers(model)
        passes = chain_free_pass(model, x, free_solvers, "ChainedEP")
        top = model.blocks[-1].output(passes[-1].state)
        self.cost.check_target(top, y)
        loss = self.cost.loss(top, y).detach()
        batch, (high, low) = x.shape[0], self.phases()
        dtype, device = passes[-1].state[0].dtype, x.device
        betas = torch.cat([torch.full((batch,), b, dtype=dtype, device=device) for b in (high, low)])
        relaxed = [b for b in (high, low) if b != 0.0]
        grads: dict[str, Tensor] = {}
        info: dict[str, Any] = {"free": [p.status for p in passes], "nudged": [None] * len(model), "betas": (low, high)}
        cost, target = self.cost, y
        for k in reversed(range(len(model))):
            block, record = model.blocks[k], passes[k]
            solver = nudged_solvers[k] if nudged_solvers[k] is not None else default_solver(block)
            n = len(relaxed)
            state, info["nudged"][k] = solver.solve(
                block, repeat_batch(record.block_input.detach(), n), concat_states([record.state] * n),
                context=repeat_batch(record.context, n), nudge=Nudge(cost, repeat_batch(target, n), betas[: n * batch]),
            )
            if n == 1:  # one-sided: the second phase is the free state itself
                state = concat_states([state, record.state])
            block_grads, delta_x = self._contrast(block, state, record.block_input.detach(), cost, repeat_batch(target, 2), betas, high - low)
            grads.update({f"blocks.{k}.{n}": g for n, g in block_grads.items()})
            ff_grads, delta = feedforward_vjp(model, k, record, delta_x, batch)
            grads.update(ff_grads)
            if delta is not None:
                cost, target = LinearCost(), delta.detach()
        return Estimate(grads=grads, loss=loss, prediction=top.detach(), info=info)

    def _contrast(self, block, state, x_k: Tensor, cost: Cost, target: Tensor, betas: Tensor, spread: float):
        """(g_θ for the mean loss, δx_k per sample) from the two stacked phases, one autograd call.

        Σ_b w_b [E(s_b, x) + β_b C(o(s_b))] with w_b = ±1/((β₂ − β₁)B): its θ-derivative is g_θ;
        its x-derivative (x shared by both halves) is δx_k / B.
        """
        batch = x_k.shape[0]
        params = trainable(block)
        weights = torch.cat([torch.ones(batch, dtype=betas.dtype, device=betas.device), -torch.ones_like(betas[:batch])])
        weights = weights / (spread * batch)
        with torch.enable_grad():
            x_leaf = x_k.requires_grad_()
            detached = tuple(s.detach() for s in state)
            total = (block.energy(detached, repeat_batch(x_leaf, 2)) * weights).sum()
            if not block.output_is_parameter_free:
                per_sample = cost(block.output(detached), target).reshape(2 * batch, -1).sum(1)
                total = total + (per_sample * weights * betas).sum()
            grads = torch.autograd.grad(total, [p for _, p in params] + [x_leaf], allow_unused=True)
        delta_x = grads[-1] * batch if grads[-1] is not None else torch.zeros_like(x_k)
        block_grads = {n: g for (n, _), g in zip(params, grads[:-1]) if g is not None}
        return block_grads, delta_x

    def __repr__(self) -> str:
        return f"ChainedEP(beta={self.beta}, variant={self.variant!r}, solver={self.solver!r}, nudged_solver={self.nudged_solver!r}, cost={self.cost!r})"
