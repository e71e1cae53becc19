"""BPTT: the loss gradient by autograd through the unrolled simulation.

Static models: autograd through every iteration of the free-phase relaxation (the solver run
with its graph kept). Sequence models (Hamiltonian): autograd through the unrolled integrator
(``eqprop.baselines.bptt_time``). Memory grows with the number of steps; this is the reference
the local learners are checked against, not a training method meant to be cheap.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..costs import Cost
from ..errors import ConfigurationError
from ..estimators.base import Estimate, trainable
from ..estimators.energy_based import EnergyLearner
from ..solvers.integrators import Integrator
from ..solvers.relaxation import Relaxation

__all__ = ["BPTT"]


class BPTT(EnergyLearner):
    """dL/dθ by backpropagation through the simulation (time or relaxation iterations).

    Args:
        solver: relaxation unrolled for a static model (``None``: the model's default).
        integrator: time integrator unrolled for a sequence model (``None``: the model's default).
        cost: the cost of the loss; :class:`eqprop.costs.SquaredError` by default.

    Sequence models: a single built-in :class:`eqprop.models.LinearHRU` / :class:`eqprop.models.NonlinearHRU`
    (physics not rewritten, "last" pooling) under exactly :class:`eqprop.solvers.PositionVerlet`
    (the default) takes the closed-form VJP of the step (:mod:`eqprop.solvers.scan_vjp`: the
    adjoint run backward chunk by chunk from checkpoints, no graph per step, memory O(T/chunk +
    chunk)); an :class:`eqprop.models.HSSM` of them runs layer after layer over the whole sequence
    through the same VJP (``scan_vjp.stack_outputs``: one autograd node per layer, memory O(T·H));
    everything else unrolls the integrator under autograd. That eager path is the reference,
    reached by passing a subclass of PositionVerlet (``class ReferenceVerlet(PositionVerlet): pass``).

    Check: it is the reference; tests/test_ep.py checks it equal to implicit differentiation
    once the relaxation has converged; tests/test_bptt_fast.py checks the closed-form VJP
    against the eager path to round-off, tests/test_bptt_stack.py the stack path.
    """

    model_kinds = ("energy", "hamiltonian")

    def __init__(self, solver: Relaxation | None = None, integrator: Any = None, cost: Cost | None = None) -> None:
        if solver is not None and integrator is not None:
            raise ConfigurationError("Give BPTT either a solver (static model) or an integrator (sequence model), not both.")
        if integrator is not None and not isinstance(integrator, Integrator):
            raise ConfigurationError(
                f"integrator must be an eqprop integrator such as eqprop.solvers.PositionVerlet(), got {integrator!r}."
            )
        super().__init__(solver, cost)
        self.integrator = integrator

    def _is_sequence_model(self, model) -> bool:
        if self.integrator is not None:
            return True
        try:
            from ..models.hamiltonian import HamiltonianModel
        except ImportError:  # pragma: no cover - the Hamiltonian core is optional at import time
            return False
        return isinstance(model, HamiltonianModel)

    def estimate(self, model, x: Tensor, y: Tensor) -> Estimate:
        if self._is_sequence_model(model):
            from .bptt_time import bptt_through_integrator

            return bptt_through_integrator(model, x, y, self.integrator, self.cost)
        params = dict(trainable(model))
        state, status = self.solver_for(model).solve(model, x, model.init_state(x), differentiable=True)
        out = model.output(state)
        self.cost.check_target(out, y)
        loss = self.cost.loss(out, y)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads_by_name = {n: g for n, g in zip(params, grads) if g is not None}
        return Estimate(grads=grads_by_name, loss=loss.detach(), prediction=out.detach(), info={"free": status})

    def predict(self, model, x: Tensor) -> Tensor:
        if self._is_sequence_model(model):
            from .bptt_time import predict_sequence

            return predict_sequence(model, x, self.integrator)
        return super().predict(model, x)

    def __repr__(self) -> str:
        return f"BPTT(solver={self.solver!r}, integrator={self.integrator!r}, cost={self.cost!r})"
