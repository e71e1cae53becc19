"""BPTT through a time integrator: the reference gradient for Hamiltonian models and stacks.

``bptt_through_integrator`` differentiates the loss (the batch mean of the final-step cost, or
of the per-step costs summed over time) through the same integrator step that RHEL uses
(position Verlet by default, with the model's own dt). ``eqprop.baselines.BPTT`` dispatches here
for a ``HamiltonianModel`` or when given an ``integrator``.

Three paths, the same gradient:

* a single built-in ``LinearHRU`` / ``NonlinearHRU`` (physics not rewritten, "last" pooling)
  under exactly ``PositionVerlet`` takes the closed-form adjoint of the step
  (:func:`eqprop.solvers.scan_vjp.hru_outputs`): no graph per step, chunks recomputed from
  checkpoints, memory O(T/chunk + chunk); the read-out stays under autograd;
* an ``HSSM`` of such HRUs (its own encode / mix / decode) under exactly ``PositionVerlet`` runs
  layer after layer over the whole sequence (:func:`eqprop.solvers.scan_vjp.stack_outputs`):
  each layer by the closed-form adjoint, the row-wise feedforward maps under autograd on all T
  steps at once; a graph of O(layers) nodes, memory O(T·H) for the kept streams;
* anything else — user stacks and Hamiltonians, other integrators, and a *subclass* of
  PositionVerlet, which is how the reference is reached on an HRU or HSSM — unrolls
  ``Integrator.step`` with the autograd graph kept (memory O(T)): the reference.

Check: tests/test_rhel.py compares RHEL with it (O(ε²) centered, O(ε) one-sided);
tests/test_bptt_fast.py and tests/test_bptt_stack.py the closed-form paths with the reference
(round-off).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..costs import Cost, SquaredError
from ..estimators.base import Estimate, trainable
from ..estimators.sequence import check_hamiltonian, check_sequence, simulate, target_mode
from ..solvers.scan import DEFAULT_CHUNK
from ..solvers.scan_vjp import hru_outputs, stack_outputs

__all__ = ["bptt_through_integrator", "predict_sequence"]


def _default_integrator(integrator):
    if integrator is None:
        from ..solvers.integrators import PositionVerlet

        return PositionVerlet()
    return integrator


def bptt_through_integrator(model, x: Tensor, y: Tensor, integrator=None, cost: Cost | None = None, *,
                            chunk: int = DEFAULT_CHUNK) -> Estimate:
    """dL/dθ through the unrolled integrator; L = batch mean of the cost. ``chunk``: steps between
    the checkpoints of the closed-form path (>= T: the whole trajectory kept, nothing recomputed)."""
    check_hamiltonian(model)
    check_sequence(model, x)
    integrator = _default_integrator(integrator)
    cost = SquaredError() if cost is None else cost
    mode = target_mode(model, x, y, cost)
    params = dict(trainable(model))
    keep = mode == "per_step"
    outputs = hru_outputs(model, x, integrator, keep, chunk)  # None: not a built-in HRU under PositionVerlet
    if outputs is None:  # an HSSM of built-in HRUs: layer after layer, each by the closed-form adjoint
        outputs = stack_outputs(model, x, integrator, keep, chunk)
    if outputs is None:
        _, outputs = simulate(model, x, integrator, create_graph=True, keep_outputs=keep)
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
