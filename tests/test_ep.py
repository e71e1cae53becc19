"""EP (all variants) against implicit differentiation and BPTT, float64, on every static problem.

Theory (Scellier & Bengio 2017, Laborieux et al. 2021; docs/theory.md, "EP and its variants"): one-sided EP has bias Kβ, centered EP Kβ², with K set by third
derivatives of the energy and cost (O(1) here: measured K ≈ 0.1–5 on these problems). BPTT and
implicit differentiation agree to round-off once the relaxation has converged (tol 1e-14).
"""

import pytest
import torch

from eqprop.baselines import BPTT, ImplicitDifferentiation
from eqprop.check import beta_sweep, compare, relative_error
from eqprop.learners import EP
from eqprop.solvers import FixedPoint
from problems import PROBLEMS

BETAS = [1e-2, 3e-3, 1e-3]


@pytest.fixture(params=PROBLEMS, ids=lambda p: p.name)
def problem(request):
    return request.param


def reference(problem):
    return ImplicitDifferentiation(solver=problem.solver, cost=problem.cost)


def test_bptt_equals_implicit_differentiation(problem):
    model, (x, y) = problem.model(), problem.data()
    report = compare(BPTT(solver=problem.solver, cost=problem.cost), reference(problem), model, x, y)
    # Both differentiate the same converged equilibrium (residual ≤ 1e-14): round-off, amplified
    # by the conditioning of (I − J) (≤ 1e3 here) → 1e-9.
    assert report.relative_error < 1e-9, str(report)


def test_conjugate_gradient_equals_neumann(problem):
    model, (x, y) = problem.model(), problem.data()
    cg = ImplicitDifferentiation(solver=problem.solver, cost=problem.cost, method="cg")
    # Two solvers of the same linear system to relative tolerance 1e-12 → agreement 1e-9.
    assert compare(cg, reference(problem), model, x, y).relative_error < 1e-9


@pytest.mark.parametrize("variant,order", [("positive", 1.0), ("negative", 1.0), ("centered", 2.0)])
def test_ep_error_order(problem, variant, order):
    model, (x, y) = problem.model(), problem.data()
    sweep = beta_sweep(
        lambda b: EP(b, variant, solver=problem.solver, cost=problem.cost), reference(problem), model, x, y, BETAS
    )
    # The slope of log(error) against log(β) is the order of the bias: 1 one-sided, 2 centered.
    # Higher-order terms shift it by O(β) over this range: ±0.1.
    assert abs(sweep.order - order) < 0.1, str(sweep)
    # And the size: error ≤ 10·β^order (K ≤ 10; the measured K on these problems is 0.1–5).
    assert sweep.errors[-1] < 10 * BETAS[-1] ** order, str(sweep)
    # A learner that estimates the wrong quantity would not get below 1e-2 at all.
    assert sweep.errors[-1] < 1e-2


def test_centered_is_mean_of_positive_and_negative():
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    fixed = FixedPoint(tol=None, max_steps=400)  # the same number of steps in every phase
    kwargs = dict(solver=fixed, cost=problem.cost)
    beta = 0.05
    centered = EP(beta, "centered", **kwargs).grads(model, x, y)
    unbatched = EP(beta, "centered", batch_phases=False, **kwargs).grads(model, x, y)
    positive = EP(beta, "positive", **kwargs).grads(model, x, y)
    negative = EP(beta, "negative", **kwargs).grads(model, x, y)
    mean = {k: 0.5 * (positive[k] + negative[k]) for k in centered}
    # An algebraic identity for the same states: only round-off (1e-16), divided by β → 1e-13.
    assert relative_error(centered, mean) < 1e-12
    assert relative_error(unbatched, centered) < 1e-12


def test_random_sign_draws_both_signs_and_matches_one_sided():
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    kwargs = dict(solver=problem.solver, cost=problem.cost)
    positive = EP(0.01, "positive", **kwargs).grads(model, x, y)
    negative = EP(0.01, "negative", **kwargs).grads(model, x, y)
    learner = EP(0.01, "random_sign", seed=3, **kwargs)
    seen = []
    for _ in range(8):
        grads = learner.grads(model, x, y)
        err_pos, err_neg = relative_error(grads, positive), relative_error(grads, negative)
        # Each draw is exactly one of the one-sided estimators (same relaxations: round-off).
        assert min(err_pos, err_neg) < 1e-10
        seen.append(err_pos < err_neg)
    assert any(seen) and not all(seen), "eight draws should show both signs"


def test_random_sign_state_round_trip():
    problem = PROBLEMS[0]
    learner = EP(0.01, "random_sign", solver=problem.solver, seed=1)
    state = learner.state_dict()
    first = [learner.betas() for _ in range(6)]
    learner.load_state_dict(state)
    assert [learner.betas() for _ in range(6)] == first


def test_grads_has_no_side_effects():
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    EP(0.1, "centered", solver=problem.solver).grads(model, x, y)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
        assert p.grad is None


def test_step_writes_the_gradient_of_the_mean_loss():
    problem = PROBLEMS[0]
    model, (x, y) = problem.model(), problem.data()
    solver = FixedPoint(tol=None, max_steps=200)
    # Reference: plain autograd through the unrolled relaxation, loss = mean over the batch.
    state, _ = solver.solve(model, x, model.init_state(x), differentiable=True)
    loss = 0.5 * ((model.output(state) - y) ** 2).sum(1).mean()
    loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    out = BPTT(solver=solver).step(model, x, y)
    assert torch.allclose(out.loss, loss.detach(), rtol=1e-12, atol=0)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, expected[n], rtol=1e-10, atol=1e-14)
    # step() accumulates, as backward() does.
    BPTT(solver=solver).step(model, x, y)
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, 2 * expected[n], rtol=1e-10, atol=1e-14)
    # and EP writes its own estimate, equal to grads().
    model.zero_grad(set_to_none=True)
    ep = EP(1e-3, "centered", solver=problem.solver)
    out = ep.step(model, x, y)
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, out.grads[n])
        assert relative_error(p.grad, expected[n]) < 1e-4  # O(β²) with K ≤ 100


def test_predict_is_the_free_equilibrium_output():
    problem = PROBLEMS[0]
    model, (x, _) = problem.model(), problem.data()
    state, _ = problem.solver.solve(model, x, model.init_state(x))
    assert torch.equal(EP(0.1, solver=problem.solver).predict(model, x), model.output(state))
