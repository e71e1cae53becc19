"""Shared machinery of the learners for static energy models: free phase and contrast.

Every static learner here is a two-point estimator (Scellier et al. 2023)

    ĝ = [∂_θF(s², β₂) − ∂_θF(s¹, β₁)] / (β₂ − β₁),     F(s, β) = E(s, θ, x) + β C(output(s), y)

averaged over the batch; ``contrast`` computes it for any list of phases with one call of the
model's ``param_grads`` on the concatenated states (all phases in one batch).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..errors import ConfigurationError
from ..solvers.relaxation import Relaxation
from .base import Learner, trainable
from .defaults import check_energy_solver, default_solver

__all__ = ["EnergyLearner", "repeat_batch", "concat_states"]


def repeat_batch(obj: Any, n: int) -> Any:
    """Repeat every tensor of a (nested) context ``n`` times along the batch axis."""
    if obj is None or n == 1:
        return obj
    if isinstance(obj, Tensor):
        return torch.cat([obj] * n, dim=0)
    if isinstance(obj, (tuple, list)):
        return type(obj)(repeat_batch(o, n) for o in obj)
    if isinstance(obj, dict):
        return {k: repeat_batch(v, n) for k, v in obj.items()}
    raise ConfigurationError(
        f"Cannot batch a model context of type {type(obj).__name__}; return tensors, tuples or dicts from prepare()."
    )


def concat_states(states: Sequence[tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    return tuple(torch.cat(layers, dim=0) for layers in zip(*states))


def split_state(state: tuple[Tensor, ...], n: int) -> list[tuple[Tensor, ...]]:
    parts = [s.chunk(n, dim=0) for s in state]
    return [tuple(p[i] for p in parts) for i in range(n)]


class EnergyLearner(Learner):
    """Base of the static-model learners: a solver, a cost, the free phase and the contrast."""

    model_kinds = ("energy",)

    def __init__(self, solver: Relaxation | None = None, cost: Cost | None = None) -> None:
        check_energy_solver(solver)
        self.solver = solver
        self.cost = cost if cost is not None else SquaredError()

    def solver_for(self, model: nn.Module) -> Relaxation:
        return self.solver if self.solver is not None else default_solver(model)

    def free_phase(self, model, x: Tensor, context: Any = None):
        """Relax from ``model.init_state(x)`` with no nudge; returns ``(state, status)``."""
        return self.solver_for(model).solve(model, x, model.init_state(x), context=context)

    def free_equilibrium(self, model, x: Tensor, y: Tensor):
        """The free phase every static estimator starts from, with the target checked against its
        output: returns ``(context, state, status, output)``; the state carries no graph."""
        context = model.prepare(x)
        state, status = self.free_phase(model, x, context)
        check = getattr(self.solver_for(model), "check_equilibrium", None)  # a user's solver may not offer it
        if check is not None:
            check(status, type(self).__name__)
        state = tuple(s.detach() for s in state)
        output = model.output(state)
        self.cost.check_target(output, y)
        return context, state, status, output

    def predict(self, model, x: Tensor) -> Tensor:
        state, _ = self.free_phase(model, x)
        return model.output(state).detach()

    def contrast(
        self,
        model,
        x: Tensor,
        y: Tensor,
        phases: Sequence[tuple[tuple[Tensor, ...], float, float]],
    ) -> dict[str, Tensor]:
        """Σ_phase coefficient · mean_b ∂_θF(s_phase, β_phase) for phases (state, coefficient, β)."""
        n = len(phases)
        state = concat_states([p[0] for p in phases])
        return self.contrast_batched(
            model, repeat_batch(x, n), repeat_batch(y, n), state, [c for _, c, _ in phases], [b for _, _, b in phases]
        )

    def contrast_batched(self, model, xs: Tensor, ys: Tensor, state, coefficients, betas) -> dict[str, Tensor]:
        """:meth:`contrast` for phases already stacked along the batch (block i: coefficients[i], betas[i])."""
        n = len(coefficients)
        batch = xs.shape[0] // n
        dtype = state[0].real.dtype

        def per_sample(values):
            return torch.cat([torch.full((batch,), v / batch, dtype=dtype, device=xs.device) for v in values])

        grads = model.param_grads(state, xs, per_sample(coefficients))
        nudge_values = [c * b for c, b in zip(coefficients, betas)]
        if model.output_is_parameter_free or not any(nudge_values):
            return grads
        params = dict(trainable(model))
        with torch.enable_grad():
            cost = self.cost(model.output(tuple(s.detach() for s in state)), ys)
            nudge_term = (cost * per_sample(nudge_values)).sum()
            if not nudge_term.requires_grad:  # the output has no trainable parameter after all
                return grads
            extra = torch.autograd.grad(nudge_term, list(params.values()), allow_unused=True)
        for name, g in zip(params, extra):
            if g is not None:
                grads[name] = grads[name] + g
        return grads
