"""Contrastive learning (CL) and coupled learning (CpL): output units clamped, hidden units relax.

Both need a model whose output is one of its state layers: ``model.output_layer``, or the state
layer that ``output(state)`` returns unchanged (found by identity).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError
from ..solvers.relaxation import Relaxation
from ..estimators.base import Estimate, check_beta
from ..estimators.energy_based import EnergyLearner, concat_states, repeat_batch, split_state

__all__ = ["ContrastiveLearning", "CoupledLearning"]


class _ClampedLearner(EnergyLearner):
    """Free phase, then relaxations with the output layer clamped; contrast of ∂_θE."""

    def _output_layer(self, model, state=None) -> int:
        """The clamped layer: ``model.output_layer``, or the state layer ``output(state)`` returns
        itself (found by identity on the free state); a read-out that is no state layer is refused."""
        layer = getattr(model, "output_layer", None)
        if layer is not None:
            return layer
        if state is not None:
            out = model.output(state)
            for k, s in enumerate(state):
                if out is s:
                    return k
        raise ConfigurationError(
            f"{type(self).__name__} clamps the output units, but {type(model).__name__}.output is not one "
            "of its state layers; return a state layer unchanged from output(), or set the class attribute "
            "output_layer to that layer's index, or train the model with EP."
        )

    def clamped_phases(self, model, x, context, free, values: list[Tensor]):
        """Relax the hidden units from the free state with the output layer held at each value."""
        layer = self._output_layer(model, free)
        solver = self.solver_for(model)
        n = len(values)
        state, status = solver.solve(
            model,
            repeat_batch(x, n),
            concat_states([free] * n),
            context=repeat_batch(context, n),
            clamp={layer: torch.cat(values, dim=0)},
        )
        return split_state(state, n), status

    def _free(self, model, x, y):
        context, free, status, out = self.free_equilibrium(model, x, y)
        self._output_layer(model, free)
        return context, free, out, status


class ContrastiveLearning(_ClampedLearner):
    r"""Contrastive learning (Movellan 1991; contrastive Hebbian learning).

    The output units are clamped to the value that makes the cost zero (the target for
    :class:`~eqprop.costs.SquaredError`, the one-hot target for
    :class:`~eqprop.costs.CrossEntropy`) and the hidden units relax from the free state:

        ĝ = mean_b [∂_θE(s^clamped) − ∂_θE(s⁰)]

    the exact gradient of E(clamped) − E(free) ≥ 0, not of the loss.

    Check (tests/test_contrastive.py): equals :class:`CoupledLearning` with η = 1, positive
    (squared error) to round-off; a descent direction of the loss on a small network.
    """

    def __init__(self, solver: Relaxation | None = None, cost: Cost | None = None) -> None:
        super().__init__(solver, cost)

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        context, free, out, free_status = self._free(model, x, y)
        (clamped,), status = self.clamped_phases(model, x, context, free, [self.cost.clamp_value(out, y)])
        grads = self.contrast(model, x, y, [(clamped, 1.0, 0.0), (free, -1.0, 0.0)])
        return Estimate(grads, self.cost.loss(out, y).detach(), out.detach(), {"free": free_status, "clamped": status})

    def __repr__(self) -> str:
        return f"ContrastiveLearning(solver={self.solver!r}, cost={self.cost!r})"


class CoupledLearning(_ClampedLearner):
    r"""Coupled learning (Stern et al. 2021, "Supervised learning in physical networks").

    The output units are clamped to a point nudged from the free output toward the target,

        o^η = o⁰ − η ∂C/∂o(o⁰)          (= o⁰ + η (y − o⁰) for squared error)

    and the hidden units relax; with (η₁, η₂) = (0, η) ``"positive"``, (−η, 0) ``"negative"``,
    (−η, η) ``"centered"``:

        ĝ = mean_b [∂_θE(s^{η₂}) − ∂_θE(s^{η₁})] / (η₂ − η₁)

    CpL follows no exact surrogate gradient; as η → 0 it tends to a direction correlated with,
    not equal to, dL/dθ. CL is CpL with η = 1, positive, for squared error.

    Check (tests/test_contrastive.py): the CL identity to round-off; centered = mean of
    positive and negative exactly; a descent direction of the loss.
    """

    VARIANTS = ("positive", "negative", "centered")

    def __init__(self, eta: float, variant: str = "centered", solver: Relaxation | None = None, cost: Cost | None = None) -> None:
        super().__init__(solver, cost)
        if variant not in self.VARIANTS:
            raise ConfigurationError(f"Unknown coupled-learning variant {variant!r}; choose one of {self.VARIANTS}.")
        self.eta = check_beta("eta", eta)
        self.variant = variant

    def etas(self) -> tuple[float, float]:
        return {"positive": (0.0, self.eta), "negative": (-self.eta, 0.0), "centered": (-self.eta, self.eta)}[self.variant]

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        context, free, out, free_status = self._free(model, x, y)
        eta1, eta2 = self.etas()
        step = self.cost.grad(out, y)
        nudged = [e for e in (eta1, eta2) if e != 0.0]
        states, status = self.clamped_phases(model, x, context, free, [out - e * step for e in nudged])
        by_eta: dict[float, Any] = dict(zip(nudged, states))
        by_eta[0.0] = free
        scale = 1.0 / (eta2 - eta1)
        grads = self.contrast(model, x, y, [(by_eta[eta2], scale, 0.0), (by_eta[eta1], -scale, 0.0)])
        return Estimate(grads, self.cost.loss(out, y).detach(), out.detach(), {"free": free_status, "clamped": status})

    def __repr__(self) -> str:
        return f"CoupledLearning(eta={self.eta}, variant={self.variant!r}, solver={self.solver!r}, cost={self.cost!r})"
