"""Equilibrium propagation (EP) and its variants: positive, negative, centered, random sign."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError
from ..estimators.base import Estimate, check_beta, check_flag, check_seed
from ..estimators.defaults import check_energy_solver
from ..estimators.energy_based import EnergyLearner, concat_states, repeat_batch, split_state
from ..solvers.relaxation import Nudge, Relaxation

__all__ = ["EP"]

VARIANTS = ("positive", "negative", "centered", "random_sign")


class EP(EnergyLearner):
    r"""Equilibrium propagation: the gradient of the loss from two relaxations of one energy.

    With the free equilibrium s⁰ = argmin E and nudged equilibria s^β = argmin [E + βC]
    (relaxed from s⁰), the two-point estimator of the loss gradient is

        ĝ(β₁, β₂) = [∂_θE(s^{β₂}) − ∂_θE(s^{β₁})] / (β₂ − β₁),  averaged over the batch,

    with (β₁, β₂) = (0, β) for ``"positive"`` (Scellier & Bengio 2017), (−β, 0) for
    ``"negative"``, (−β, β) for ``"centered"`` (Laborieux et al. 2021, "Scaling equilibrium
    propagation to deep ConvNets") and (0, ±β) with the sign drawn at every call for
    ``"random_sign"`` (same paper). Bias against dL/dθ: O(β) one-sided, O(β²) centered.
    The ± phases of the centered variant are relaxed as one batch.

    Check (tests/test_ep.py): float64, against :class:`eqprop.baselines.ImplicitDifferentiation`
    and :class:`eqprop.baselines.BPTT`; the log-log slope of the error in β is 1 one-sided and 2
    centered; centered = mean of positive and negative exactly.

    Args:
        beta: nudging strength, non-zero.
        variant: ``"positive"``, ``"negative"``, ``"centered"`` or ``"random_sign"``.
        solver: relaxation of the free phase (``None``: the model's default).
        nudged_solver: relaxation of the nudged phases (``None``: ``solver``); e.g. fewer steps.
        cost: :class:`eqprop.costs.SquaredError` (default) or :class:`eqprop.costs.CrossEntropy`.
        seed: seed of the random-sign generator (its state is in ``state_dict()``).
        batch_phases: relax the ± phases as one batch of 2B (faster on most hardware).
    """

    def __init__(
        self,
        beta: float,
        variant: str = "centered",
        solver: Relaxation | None = None,
        nudged_solver: Relaxation | None = None,
        cost: Cost | None = None,
        seed: int | None = None,
        batch_phases: bool = True,
    ) -> None:
        super().__init__(solver, cost)
        if variant not in VARIANTS:
            raise ConfigurationError(f"Unknown EP variant {variant!r}; choose one of {VARIANTS}.")
        check_energy_solver(nudged_solver, "nudged_solver")
        self.beta = check_beta("beta", beta)
        self.variant = variant
        self.nudged_solver = nudged_solver
        self.batch_phases = check_flag("batch_phases", batch_phases)
        self.seed = check_seed("seed", seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(0 if seed is None else self.seed)

    def betas(self) -> tuple[float, float]:
        """(β₁, β₂) for this call (draws the sign for ``"random_sign"``)."""
        b = self.beta
        if self.variant == "positive":
            return 0.0, b
        if self.variant == "negative":
            return -b, 0.0
        if self.variant == "centered":
            return -b, b
        sign = 1.0 if torch.randint(0, 2, (1,), generator=self.generator).item() == 1 else -1.0
        return 0.0, sign * b

    @torch.no_grad()  # EP needs no graph; the few autograd fallbacks enable grad themselves
    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        context, free, free_status, out = self.free_equilibrium(model, x, y)
        loss = self.cost.loss(out, y).detach()
        beta1, beta2 = self.betas()
        scale = 1.0 / (beta2 - beta1)
        info: dict[str, Any] = {"free": free_status, "betas": (beta1, beta2)}
        if beta1 != 0.0 and self.batch_phases:  # centered: both phases in one batch, kept stacked
            xs, ys = repeat_batch(x, 2), repeat_batch(y, 2)
            state, status = self._relax(model, xs, ys, context, free, [beta1, beta2])
            info["nudged"] = [status]
            grads = self.contrast_batched(model, xs, ys, state, [-scale, scale], [beta1, beta2])
        else:
            nudged, info["nudged"] = self.nudged_phases(model, x, y, context, free, [b for b in (beta1, beta2) if b != 0.0])
            states = dict(zip([b for b in (beta1, beta2) if b != 0.0], nudged))
            states[0.0] = free
            grads = self.contrast(model, x, y, [(states[beta2], scale, beta2), (states[beta1], -scale, beta1)])
        return Estimate(grads=grads, loss=loss, prediction=out.detach(), info=info)

    def _relax(self, model, xs, ys, context, free, betas):
        """Relax the nudged phases for ``betas`` stacked along the batch (xs, ys already repeated)."""
        solver = self.nudged_solver if self.nudged_solver is not None else self.solver_for(model)
        n, batch = len(betas), free[0].shape[0]
        beta = torch.cat([torch.full((batch,), b, dtype=free[0].real.dtype, device=xs.device) for b in betas])
        return solver.solve(
            model, xs, concat_states([free] * n), context=repeat_batch(context, n), nudge=Nudge(self.cost, ys, beta)
        )

    def nudged_phases(self, model, x, y, context, free, betas):
        """Relax s^β for each β in ``betas`` from the free state; returns (states, statuses)."""
        n = len(betas)
        if n > 1 and self.batch_phases:
            state, status = self._relax(model, repeat_batch(x, n), repeat_batch(y, n), context, free, betas)
            return split_state(state, n), [status]
        solver = self.nudged_solver if self.nudged_solver is not None else self.solver_for(model)
        results = [solver.solve(model, x, free, context=context, nudge=Nudge(self.cost, y, b)) for b in betas]
        return [r[0] for r in results], [r[1] for r in results]

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        unknown = set(state) - {"generator"}
        if unknown:
            raise ConfigurationError(f"EP.load_state_dict got unknown keys {sorted(unknown)}.")
        if "generator" in state:
            self.generator.set_state(state["generator"])

