"""BPTT through a time integrator: the reference gradient for Hamiltonian models and stacks.

``bptt_through_integrator`` unrolls the same integrator step that RHEL uses (position Verlet by
default, with the model's own dt) with the autograd graph kept, and differentiates the loss:
the batch mean of the final-step cost, or of the per-step costs summed over time. Memory grows
linearly with T — this is the baseline, not the training method. ``eqprop.baselines.BPTT``
dispatches here for a ``HamiltonianModel`` or when given an ``integrator``.

Check: tests/test_rhel.py compares RHEL with it (O(ε²) centered, O(ε) one-sided).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..estimators.base import Estimate, trainable
from ..estimators.sequence import check_hamiltonian, check_sequence, simulate, target_mode

__all__ = ["bptt_through_integrator", "predict_sequence"]


def _default_integrator(integrator):
    if integrator is None:
        from ..solvers.integrators import PositionVerlet

        return PositionVerlet()
    return integrator


def bptt_through_integrator(model, x: Tensor, y: Tensor, integrator=None, cost: Cost | None = None) -> Estimate:
    """dL/dθ by autograd through the unrolled integrator; L = batch mean of the cost."""
    check_hamiltonian(model)
    check_sequence(model, x)
    integrator = _default_integrator(integrator)
    cost = SquaredError() if cost is None else cost
    mode = target_mode(model, x, y, cost)
    params = dict(trainable(model))
    _, outputs = simulate(model, x, integrator, create_graph=True, keep_outputs=(mode == "per_step"))
    with torch.enable_grad():
        loss = cost.loss(outputs, y)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    grads_by_name = {n: g for n, g in zip(params, grads) if g is not None}
    return Estimate(grads=grads_by_name, loss=loss.detach(), prediction=outputs.detach(), info={"mode": mode})


def predict_sequence(model, x: Tensor, integrator=None) -> Tensor:
    """The outputs at every step, [batch, T, ...], without a graph."""
    check_hamiltonian(model)
    check_sequence(model, x)
    _, outputs = simulate(model, x, _default_integrator(integrator), create_graph=False, keep_outputs=True)
    return outputs
