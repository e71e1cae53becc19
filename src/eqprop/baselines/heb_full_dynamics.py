"""The reference gradient for HEB: autograd through the leapfrog of the joint system (q, θ, p, π).

HEB (López-Pastor & Marquardt 2023; docs/heb.md) returns dC/dθ(0), the derivative of the
final-time cost C(q(T), θ(T)) with respect to the initial parameters, *through the full dynamics*
in which θ moves with mass m under H = T(p) + ½|π|²/m + V(q, u; θ). :class:`FullDynamicsBPTT`
unrolls exactly the joint integration HEB runs (same integrator, same step, one copy of θ per
sample, π₀ = 0) with the graph kept and differentiates the batch-mean loss. With
``mass=float('inf')`` θ is frozen and this is ``eqprop.baselines.BPTT`` with the same integrator
and a final-time loss (tests/test_heb.py checks both equalities).

This module is a baseline: it knows the joint system (eqprop.estimators.joint), not HEB.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..costs import Cost, SquaredError
from ..estimators.base import Estimate, Learner, trainable
from ..estimators.joint import JointSystem, check_joint, check_mass, check_steps, parameter_rows, prepare, run
from ..solvers.integrators import LeapFrog

__all__ = ["FullDynamicsBPTT"]


class FullDynamicsBPTT(Learner):
    """dC/dθ(0) by autograd through the joint (q, θ) dynamics; arguments as in :class:`eqprop.learners.HEB`.

    Args:
        mass: the parameters' mass m > 0 (``float('inf')``: frozen θ, i.e. plain BPTT).
        integrator: the step applied to the joint state (``LeapFrog()`` by default, the model's dt).
        steps: how many steps a static input [batch, features] is held; ``None`` for sequences.
        cost: the final-time per-sample cost (``SquaredError()`` by default); loss = batch mean.
    """

    def __init__(self, mass: float = float("inf"), integrator=None, steps: int | None = None,
                 cost: Cost | None = None) -> None:
        self.inv_mass = check_mass(mass)
        self.mass = float(mass)
        self.integrator = LeapFrog() if integrator is None else integrator
        self.steps = check_steps(steps)
        self.cost = SquaredError() if cost is None else cost

    def __repr__(self) -> str:
        return f"FullDynamicsBPTT(mass={self.mass}, integrator={self.integrator!r}, steps={self.steps}, cost={self.cost!r})"

    def _final(self, model: nn.Module, x_seq: Tensor, create_graph: bool):
        names = [n for n, _ in trainable(model)]
        context = torch.enable_grad() if create_graph else torch.no_grad()
        with context:
            q0, p0 = model.init_state(x_seq)
            dt = check_joint(model, self.integrator, names, p0)
            joint = JointSystem(model, names, self.inv_mass, q0.shape[1:])
            theta0 = parameter_rows(model, names, q0.shape[0])
            Q = joint.join(q0, theta0)
            P = joint.join(p0, torch.zeros_like(theta0))
            Q, P = run(joint, self.integrator, Q, P, [x_seq[:, k] for k in range(x_seq.shape[1])], dt,
                       create_graph=create_graph)
            return names, joint.output(*joint.split(Q))

    def predict(self, model: nn.Module, x: Tensor) -> Tensor:
        """The final-time output [batch, ...] of the joint dynamics."""
        x_seq = prepare(model, x, None, self.steps, self.cost)
        return self._final(model, x_seq, create_graph=False)[1]

    def estimate(self, model: nn.Module, x: Tensor, y: Tensor) -> Estimate:
        x_seq = prepare(model, x, y, self.steps, self.cost)
        names, output = self._final(model, x_seq, create_graph=True)
        params = dict(model.named_parameters())
        with torch.enable_grad():
            loss = self.cost.loss(output, y)
            grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
        return Estimate(grads={n: g for n, g in zip(names, grads) if g is not None}, loss=loss.detach(),
                        prediction=output.detach(), info={"mass": self.mass})
