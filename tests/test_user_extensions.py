"""What a user writes works with the library: a solver, an integrator, a cost and a learner (float64).

None of these classes is built into eqprop. The library asks for capabilities (a solver's
``solve``/``step``, an integrator's ``reversible`` flag and its ``echo``, a cost's
``target_encoding``, the Learner contract), never for its own classes.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from eqprop import EnergyLearner
from eqprop.baselines import BPTT, ImplicitDifferentiation
from eqprop.check import compare, log_log_slope
from eqprop.costs import Cost
from eqprop.errors import ShapeError
from eqprop.estimators import Estimate
from eqprop.learners import EP, RHEL
from eqprop.models import HopfieldMLP, NonlinearHRU
from eqprop.solvers import FixedPoint, Integrator, Nudge


def hopfield(seed: int = 0):
    torch.manual_seed(seed)
    model = HopfieldMLP([4, 6, 3], "sigmoid").double()
    x = torch.randn(5, 4, dtype=torch.float64)
    y = torch.softmax(torch.randn(5, 3, dtype=torch.float64), -1)
    return model, x, y


class HeavyBall:
    """A user's relaxation (no eqprop base class): gradient descent with momentum on E + βC."""

    def __init__(self, step_size: float = 0.1, momentum: float = 0.6, tol: float = 1e-13, max_steps: int = 20_000):
        self.step_size, self.momentum, self.tol, self.max_steps = step_size, momentum, tol, max_steps

    def _force(self, model, x, state, context, nudge):
        grads = model.energy_grad(state, x, context)
        if nudge is None:
            return grads
        return tuple(g if f is None else g + f for g, f in zip(grads, nudge.force(model, state)))

    def step(self, model, x, state, context, nudge, clamp):
        return model.project(tuple(s - self.step_size * g for s, g in zip(state, self._force(model, x, state, context, nudge))))

    def solve(self, model, x, state, context=None, nudge=None, **_):
        context = model.prepare(x) if context is None else context
        velocity = tuple(torch.zeros_like(s) for s in state)
        for steps in range(1, self.max_steps + 1):
            grads = self._force(model, x, state, context, nudge)
            velocity = tuple(self.momentum * v - self.step_size * g for v, g in zip(velocity, grads))
            state = model.project(tuple(s + v for s, v in zip(state, velocity)))
            residual = max(float(g.detach().abs().max()) for g in grads)
            if residual < self.tol:
                break
        return state, SimpleNamespace(steps=steps, residual=residual, converged=residual < self.tol)


class Cubic(Cost):
    """A user's cost C(o, y) = Σ_i |o_i − y_i|³ / 3, ∂C/∂o = (o − y)|o − y|; targets shaped like o."""

    target_encoding = "one_hot"

    def __call__(self, output, target):
        return ((output - target).abs() ** 3).sum(-1) / 3

    def grad(self, output, target):
        diff = output - target
        return diff * diff.abs()

    def check_target(self, output, target):
        if target.shape != output.shape:
            raise ShapeError(f"Cubic needs a target shaped like the output {tuple(output.shape)}, got {tuple(target.shape)}.")


class TwoHalfLeapFrogs(Integrator):
    """A user's integrator: two leapfrog steps of dt/2, kick–drift–kick twice (symmetric, so reversible)."""

    reversible = True
    order = 2

    def step(self, model, q, p, u, dt, create_graph=False, u_end=None):
        for _ in range(2):
            p = p - 0.25 * dt * model.potential_grad(q, u, create_graph)
            q = q + 0.5 * dt * model.kinetic_grad(p, create_graph)
            p = p - 0.25 * dt * model.potential_grad(q, u, create_graph)
        return q, p

    def echo(self, kernel, q, p, u, u_end=None):
        for _ in range(2):
            p = kernel.kick(p, q, u, 0.25)
            q = kernel.drift(q, p, 0.5)
            p = kernel.kick(p, q, u, 0.25)
        return q, p


class RichardsonEP(EnergyLearner):
    """A user's learner: one-sided EP extrapolated, 2 ĝ(β/2) − ĝ(β) = [4∂F(s^{β/2}) − ∂F(s^β) − 3∂F(s⁰)]/β."""

    def __init__(self, beta: float, solver=None, cost=None):
        super().__init__(solver, cost)
        self.beta = beta

    def estimate(self, model, x, y):
        context, free, _, out = self.free_equilibrium(model, x, y)
        solver, b = self.solver_for(model), self.beta
        half, _ = solver.solve(model, x, free, context=context, nudge=Nudge(self.cost, y, b / 2))
        full, _ = solver.solve(model, x, free, context=context, nudge=Nudge(self.cost, y, b))
        phases = [(half, 4 / b, b / 2), (full, -1 / b, b), (free, -3 / b, 0.0)]
        grads = self.contrast(model, x, y, phases)
        return Estimate(grads=grads, loss=self.cost.loss(out, y).detach(), prediction=out.detach())


def test_a_user_solver_serves_ep_and_bptt():
    model, x, y = hopfield()
    reference = ImplicitDifferentiation(solver=FixedPoint(tol=1e-14, max_steps=5000))
    report = compare(EP(1e-3, variant="centered", solver=HeavyBall()), reference, model, x, y)
    # same equilibrium (residual < 1e-13), centered EP: K β² with K = O(1) → ≲ 1e-5
    assert report.relative_error < 1e-5, str(report)
    bptt = compare(BPTT(solver=HeavyBall(max_steps=400, tol=0.0)), reference, model, x, y)
    # BPTT through 400 momentum steps of a contracting relaxation: the truncation error is what
    # is left of the state's distance to equilibrium (≈ 0.85^400 ≈ 1e-28 rel.) → round-off, 1e-8
    assert bptt.relative_error < 1e-8, str(bptt)


def test_a_user_cost_serves_ep_and_declares_its_target_encoding():
    model, x, y = hopfield(1)
    solver = FixedPoint(tol=1e-14, max_steps=5000)
    errors = [compare(EP(b, variant="centered", solver=solver, cost=Cubic()),
                      ImplicitDifferentiation(solver=solver, cost=Cubic()), model, x, y).relative_error
              for b in (4e-2, 2e-2, 1e-2)]
    # centered EP on any twice-differentiable cost: error K β², slope 2 ± 0.3
    assert abs(log_log_slope([4e-2, 2e-2, 1e-2], errors) - 2.0) < 0.3, errors
    from eqprop.train.loop import Trainer  # the training loop reads the declared encoding

    trainer = SimpleNamespace(cfg=SimpleNamespace(target="auto"), learner=SimpleNamespace(cost=Cubic()),
                              n_classes=3, dtype=torch.float64)
    assert Trainer._target(trainer, torch.tensor([0, 2])).tolist() == [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    trainer.learner.cost = SimpleNamespace(target_encoding="index")
    assert Trainer._target(trainer, torch.tensor([0, 2])).tolist() == [0, 2]


def test_a_user_integrator_serves_rhel_and_bptt():
    torch.manual_seed(2)
    model = NonlinearHRU(input_size=2, hidden_size=4, output_size=2).double()
    x = torch.randn(3, 12, 2, dtype=torch.float64)
    y = torch.randn(3, 2, dtype=torch.float64)
    reference = BPTT(integrator=TwoHalfLeapFrogs())
    errors = [compare(RHEL(e, integrator=TwoHalfLeapFrogs()), reference, model, x, y).relative_error
              for e in (4e-2, 2e-2, 1e-2)]
    # the echo retraces the user's reversible step exactly: centered RHEL = BPTT + K ε², slope 2 ± 0.3
    assert abs(log_log_slope([4e-2, 2e-2, 1e-2], errors) - 2.0) < 0.3, errors


def test_a_user_learner_under_the_contract_is_second_order():
    model, x, y = hopfield(3)
    solver = FixedPoint(tol=1e-14, max_steps=5000)
    reference = ImplicitDifferentiation(solver=solver)
    betas = [4e-2, 2e-2, 1e-2]
    errors = [compare(RichardsonEP(b, solver=solver), reference, model, x, y).relative_error for b in betas]
    # the extrapolation cancels the O(β) bias of one-sided EP: slope 2 ± 0.3
    assert abs(log_log_slope(betas, errors) - 2.0) < 0.3, errors
    step = RichardsonEP(1e-2, solver=solver).step(model, x, y)  # the contract gives step for free
    assert torch.isfinite(step.loss)
